"""Reductions down columns: the reduced axis is strided in memory, the kept one contiguous.

The row schedule (render_kernel.py) reduces one output element at a time; for a bias
gradient, `sum(g * mask, axis=0)` of a [512, 128] row-major tensor, that walks each column
with a 512-byte stride, loads that LLVM cannot vectorize (4x slower than NumPy's). Here the
loops are interchanged: for each reduction step, a vector loop over the contiguous columns
folds one row into row-sized accumulators kept on the stack; a last loop over the columns
finishes the results and stores the outputs.

    for p in outer parallel points:            (rows [lo, hi) of the outermost, as usual)
        acc[c] = init                   for c in columns
        for r in reduction points:
            acc[c] = acc[c] (+) x(p, r, c)    for c in columns     <- contiguous: vectorized
            y(p, r, c) = g(x(p, r, c))                             (elementwise outputs)
        out(p, c) = f(acc[c], ...)      for c in columns

It applies when every reduction reads only loaded values (no reduction feeds another),
every output is a row value or an elementwise value that needs no reduction's result
(stored in the fold loop: the `g * mask` of a ReLU's backward beside its bias gradient),
and the columns are the innermost parallel axis: contiguous
(or broadcast) in every access, and wide enough to fill vectors.

    >>> from kiln.ir.parser import parse
    >>> from kiln.passes.fusion import fuse_elementwise
    >>> from kiln.passes.schedule import build_schedule
    >>> from kiln.codegen.cpu.render_kernel import loop_nest
    >>> s = build_schedule(fuse_elementwise(parse('''
    ... graph @f(%x: f32[512,128]) {
    ...   %0: f32[128] = sum %x {axes=[0], keepdim=false}
    ...   return %0
    ... }''')))
    >>> k = s.kernels[0]
    >>> applies(k, loop_nest(k))
    True
"""
from __future__ import annotations

from kiln.ir.dtypes import DType
from kiln.ir.registry import get_op
from kiln.ir.schedule import Kernel

from ..scalar_builder import MLIR_TYPE, STORAGE_TYPE, Scalar, ScalarBuilder

MIN_COLUMNS = 8
MAX_ACCUMULATOR_BYTES = 64 * 1024
_REDUCTIONS = ("sum", "mean", "max", "min")


def applies(k: Kernel, nest) -> bool:
    """Does kernel `k` (with its loop nest) reduce down contiguous columns (see above)?"""
    if not nest.reduce or not k.reduce:
        return False
    cols = nest.parallel[-1]
    if cols.extent < MIN_COLUMNS or len(nest.parallel) > 2:
        return False
    n_in = len(k.loads)
    if any(s not in (0, 1) for s in cols.strides[:n_in]) or \
            any(s != 1 for s in cols.strides[n_in:]):
        return False
    strided = [j for j in range(n_in) if any(d.strides[j] for d in nest.reduce)]
    if not strided or any(cols.strides[j] != 1 for j in strided):
        return False
    reductions = [n for n in k.body.nodes if get_op(n.op).kind == "reduce"]
    if not reductions or any(n.op not in _REDUCTIONS for n in reductions):
        return False
    if any(n.outputs[0].type.dtype not in (DType.float32, DType.float64) for n in reductions):
        return False
    feeds = {v for n in reductions for v in _cone(n.inputs[0])}
    if any(n.outputs[0] in feeds for n in reductions):
        return False        # NOTE: one reduction's result feeds another: two phases
    results = {n.outputs[0] for n in reductions}
    if any(results & _cone(k.body.outputs[j]) for j in full_outputs(k, nest)):
        return False        # NOTE: an output over the whole space that needs a result: rows
    wide = 8 * cols.extent * len(reductions)
    return wide <= MAX_ACCUMULATOR_BYTES


def full_outputs(k: Kernel, nest) -> list[int]:
    """The outputs that vary along the reduction (elementwise values of the whole space, as
    `g * mask` stored beside its column sum): stored in the fold loop, where their inputs
    are loaded anyway."""
    n_in = len(k.loads)
    return [j for j in range(len(k.stores)) if any(d.strides[n_in + j] for d in nest.reduce)]


def index_expr(b: ScalarBuilder, base: str | None, ivs, dims, j: int, const_index) -> str:
    """`base + sum(iv * stride of access j)` as index arithmetic appended to b.lines."""
    terms = [] if base is None else [base]
    for iv, dim in zip(ivs, dims):
        st = dim.strides[j]
        if st == 1:
            terms.append(iv)
        elif st:
            t = b.fresh()
            b.lines.append(f"{t} = arith.muli {iv}, {const_index(st)} : index")
            terms.append(t)
    out = terms[0] if terms else "%c0"
    for t in terms[1:]:
        s = b.fresh()
        b.lines.append(f"{s} = arith.addi {out}, {t} : index")
        out = s
    return out


def _cone(v) -> set:
    seen, stack = set(), [v]
    while stack:
        u = stack.pop()
        if u in seen:
            continue
        seen.add(u)
        if u.producer is not None:
            stack.extend(u.producer.inputs)
    return seen


class ColumnEmitter:
    """Writes the interchanged loops; `lines` are the function body after the constants."""

    def __init__(self, k: Kernel, nest, memref, store_through: dict, emit_node, combine,
                 init, wide_from: int):
        self.k, self.nest = k, nest
        self.memref = memref                # j -> memref type text
        self.store_through = store_through  # store j -> load i whose pointer it writes
        self.emit_node, self.combine, self.init = emit_node, combine, init
        self.b = ScalarBuilder()
        self.ops = 0
        self.index_consts: dict[int, str] = {}
        self.reduce_extent = 1
        for d in nest.reduce:
            self.reduce_extent *= d.extent
        self.wide = self.reduce_extent >= wide_from
        self.reductions = [n for n in k.body.nodes if get_op(n.op).kind == "reduce"]
        self.full = full_outputs(k, nest)

    def const_index(self, value: int) -> str:
        if value not in self.index_consts:
            self.index_consts[value] = f"%n{len(self.index_consts)}"
        return self.index_consts[value]

    def index_lines(self) -> list[str]:
        return [f"{name} = arith.constant {v} : index" for v, name in self.index_consts.items()]

    # ---- the loops -------------------------------------------------------------------------
    def body(self) -> list[str]:
        cols = self.nest.parallel[-1]
        outer = len(self.nest.parallel) == 2
        lines = [f"{self._acc(n)} = memref.alloca() : {self._acc_type(n)}"
                 for n in self.reductions]
        start, stop = ("%c0", self.const_index(cols.extent)) if outer else ("%lo", "%hi")
        inner = []
        inner += self._column_loop(start, stop, self._init_lines())
        inner += self._reduce_loops(self._column_loop(start, stop, self._fold_lines()))
        inner += self._column_loop(start, stop, self._finish_lines())
        if outer:
            inner = (["scf.for %p0 = %lo to %hi step %c1 {"] + ["  " + s for s in inner]
                     + ["}"])
        return lines + inner

    def _column_loop(self, start: str, stop: str, body: list[str]) -> list[str]:
        iv = f"%p{len(self.nest.parallel) - 1}"
        return ([f"scf.for {iv} = {start} to {stop} step %c1 {{"] + ["  " + s for s in body]
                + ["}"])

    def _reduce_loops(self, body: list[str]) -> list[str]:
        for d in reversed(range(len(self.nest.reduce))):
            stop = self.const_index(self.nest.reduce[d].extent)
            body = ([f"scf.for %r{d} = %c0 to {stop} step %c1 {{"] + ["  " + s for s in body]
                    + ["}"])
        return body

    def _acc(self, n) -> str:
        return f"%acc{self.reductions.index(n)}"

    def _acc_dtype(self, n) -> DType:
        dtype = n.outputs[0].type.dtype
        wide = n.op in ("sum", "mean") and dtype == DType.float32 and self.wide
        return DType.float64 if wide else dtype

    def _acc_type(self, n) -> str:
        cols = self.nest.parallel[-1].extent
        return f"memref<{cols}x{STORAGE_TYPE[self._acc_dtype(n)]}>"

    def _col(self) -> str:
        return f"%p{len(self.nest.parallel) - 1}"

    # ---- loop bodies -----------------------------------------------------------------------
    def _lines(self, fn) -> list[str]:
        saved, self.b.lines = self.b.lines, []
        fn()
        out, self.b.lines = self.b.lines, saved
        return out

    def _init_lines(self) -> list[str]:
        def fill():
            for n in self.reductions:
                dt = self._acc_dtype(n)
                init = self.b.const(self.init(n.op, dt), dt)
                self.b.lines.append(f"memref.store {init.name}, {self._acc(n)}[{self._col()}] "
                                    f": {self._acc_type(n)}")
        return self._lines(fill)

    def _fold_lines(self) -> list[str]:
        def fold():
            memo: dict = {}
            for n in self.reductions:
                dt = self._acc_dtype(n)
                x = self._value(n.inputs[0], memo, True)
                if x.dtype != dt:
                    x = self.b.emit(f"arith.extf {x.name} : f32 to f64", dt)
                acc = self.b.emit(f"memref.load {self._acc(n)}[{self._col()}] : "
                                  f"{self._acc_type(n)}", dt)
                new = self.b.emit(self.combine(n.op, dt, acc.name, x.name), dt)
                self.b.lines.append(f"memref.store {new.name}, {self._acc(n)}[{self._col()}]"
                                    f" : {self._acc_type(n)}")
                self.ops += 3
            for j in self.full:
                self._store(j, self._value(self.k.body.outputs[j], memo, True), True)
        return self._lines(fold)

    def _finish_lines(self) -> list[str]:
        def finish():
            memo: dict = {}
            for n in self.reductions:
                memo[n.outputs[0]] = self._result(n)
            rows = [j for j in range(len(self.k.stores)) if j not in self.full]
            values = [self._value(self.k.body.outputs[j], memo, False) for j in rows]
            for j, v in zip(rows, values):
                self._store(j, v, False)
        return self._lines(finish)

    def _result(self, n) -> Scalar:
        dt, out_dt = self._acc_dtype(n), n.outputs[0].type.dtype
        r = self.b.emit(f"memref.load {self._acc(n)}[{self._col()}] : {self._acc_type(n)}", dt)
        if dt != out_dt:
            r = self.b.emit(f"arith.truncf {r.name} : f64 to f32", out_dt)
        if n.op == "mean":
            count = self.b.const(float(self.reduce_extent), out_dt)
            r = self.b.emit(f"arith.divf {r.name}, {count.name} : {MLIR_TYPE[out_dt]}", out_dt)
        return r

    # ---- values ----------------------------------------------------------------------------
    def _value(self, v, memo: dict, in_loop: bool) -> Scalar:
        if v in memo:
            return memo[v]
        if v.producer is None:
            out = self._load(self.k.body.inputs.index(v), in_loop)
        else:
            n = v.producer
            args = [self._value(u, memo, in_loop) for u in n.inputs]
            before = len(self.b.lines)
            out = self.emit_node(self.b, n, args)
            self.ops += len(self.b.lines) - before
        memo[v] = out
        return out

    def _index(self, j: int, in_loop: bool) -> str:
        acc = (self.k.loads + self.k.stores)[j]
        base = self.const_index(acc.offset) if acc.offset else None
        dims = list(zip([f"%p{d}" for d in range(len(self.nest.parallel))], self.nest.parallel))
        if in_loop:
            dims += list(zip([f"%r{d}" for d in range(len(self.nest.reduce))], self.nest.reduce))
        return index_expr(self.b, base, [iv for iv, _ in dims], [d for _, d in dims], j,
                          self.const_index)

    def _load(self, i: int, in_loop: bool) -> Scalar:
        dtype = self.k.body.inputs[i].type.dtype
        raw = self.b.fresh()
        self.b.lines.append(f"{raw} = memref.load %in{i}[{self._index(i, in_loop)}] : "
                            f"{self.memref(i)}")
        self.ops += 4
        if dtype != DType.bool:
            return Scalar(raw, dtype)
        return self.b.emit(f"arith.cmpi ne, {raw}, %zero_i8 : i8", DType.bool)

    def _store(self, j: int, value: Scalar, in_loop: bool) -> None:
        n_in = len(self.k.loads)
        name = value.name
        if value.dtype == DType.bool:
            name = self.b.fresh()
            self.b.lines.append(f"{name} = arith.extui {value.name} : i1 to i8")
        i = self.store_through.get(j)
        target, memref = (f"%out{j}", self.memref(n_in + j)) if i is None else \
            (f"%in{i}", self.memref(i))
        self.b.lines.append(f"memref.store {name}, {target}[{self._index(n_in + j, in_loop)}] : "
                            f"{memref}")
        self.ops += 4
