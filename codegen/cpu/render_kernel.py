"""A schedule kernel -> MLIR text (func, scf, arith, math, memref) for the CPU.

    void @kiln_<name>(ptr in0, ..., ptr out0, ..., i64 lo, i64 hi)

computes rows [lo, hi) of the outermost parallel loop. Every buffer is a flat memref indexed
through its access (`offset + sum(iv * stride)`), so broadcasts and transposes are indexing.

Loops: the parallel axes, outermost first; inside them one "row". Body values that vary along
the reduction axes (full values) are computed inside loops over those axes; values that do not
(row values: reduction results, what they feed, row-shaped inputs) are computed once per row.
Each reduction is one loop over the row that carries its accumulator; the outputs that vary
along the row are stored by one last loop. So softmax over the last axis is one kernel making
three passes over a row that stays in cache. Kernels without reduction axes are one loop nest
whose innermost body is the row.

Adjacent axes of the same kind merge when every access is contiguous across them, so a
contiguous [8192, 1024] elementwise kernel is one loop of 8388608 that threads split evenly.

`located_mlir` shows the same text with each op of a body node followed by that node's
location, `loc("model.fc1 (Linear)"("train.py":41:0))`; the compiled text has none (kernels
equal but for their names and lines share one compiled module).
"""
from __future__ import annotations

import dataclasses

import re

from kiln.ir.dtypes import DType
from kiln.ir.errors import KilnError, NotSupportedError, VerifyError
from kiln.ir.names import mlir_loc
from kiln.ir.registry import get_op
from kiln.ir.schedule import Kernel

from ..scalar_builder import MLIR_TYPE, STORAGE_TYPE, Scalar, ScalarBuilder, const_literal
from . import render_columns as columns
from . import render_warp

ROW, FULL = 0, 1
# NOTE: float32 sums over this many elements or more accumulate in float64: a running float32
# sum of millions of terms loses digits that NumPy's pairwise sum keeps.
WIDE_SUM_FROM = 1 << 16
# NOTE: a memory access costs about as much as several arithmetic ops in a streaming loop.
MEMORY_OP_WEIGHT = 4
# NOTE: a full value that two loops of a row need (softmax's exp(x - max), used by the sum
# and by the division) is kept in a row-sized scratch buffer (on the stack, so in L1/L2)
# instead of being computed twice, when it costs at least this much (an op in EXPENSIVE
# counts 10) and the row fits in SCRATCH_BYTES.
EXPENSIVE = {"exp", "log", "tanh", "sigmoid", "erf", "pow", "sqrt", "rsqrt", "div", "log1p",
             "expm1", "sin", "cos"}
RECOMPUTE_BELOW = 8
SCRATCH_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """What a target changes in the MLIR of a kernel (the CPU's defaults).

    `columns`: reductions down columns get interchanged loops (render_columns.py);
    `scratch_bytes`: the largest row-sized scratch buffer kept on the stack (0: recompute);
    `vector_ldexp`: 2**n scaling as one `ldexp` (None: where the host has an instruction);
    `flat_parallel`: [lo, hi) counts every parallel point (the parallel axes flattened,
    row-major), not rows of the outermost axis: a GPU runs one thread per point, so that
    neighbouring threads touch neighbouring elements (`LoopNest.points` of them).
    A GPU thread renders one point with neither stack buffers nor x86 instructions.
    `warp_lanes`: when not 0, that many threads (a `%lane` parameter) share each point's
    reduction loops (render_warp.py).
    `locations`: each op a body node makes ends with the node's `loc(...)` (for people:
    `located_mlir`; what is compiled has none)."""

    columns: bool = True
    scratch_bytes: int = SCRATCH_BYTES
    vector_ldexp: bool | None = None
    flat_parallel: bool = False
    warp_lanes: int = 0
    locations: bool = False


CPU_OPTIONS = RenderOptions()


@dataclasses.dataclass(frozen=True)
class Dim:
    """One loop: its extent and each access's element stride along it (loads, then stores)."""

    extent: int
    strides: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LoopNest:
    parallel: tuple[Dim, ...]     # at least one (extent 1 when the kernel has none)
    reduce: tuple[Dim, ...]

    @property
    def outer(self) -> int:
        return self.parallel[0].extent

    @property
    def points(self) -> int:
        """Parallel points: the product of the parallel extents."""
        n = 1
        for d in self.parallel:
            n *= d.extent
        return n

    @property
    def numel(self) -> int:
        n = 1
        for d in self.parallel + self.reduce:
            n *= d.extent
        return n


def loop_nest(k: Kernel) -> LoopNest:
    """The kernel's loops: unit axes dropped, mergeable neighbours merged.

    >>> from kiln.ir.parser import parse
    >>> from kiln.passes.fusion import fuse_elementwise
    >>> from kiln.passes.schedule import build_schedule
    >>> s = build_schedule(fuse_elementwise(parse('''
    ... graph @f(%x: f32[8,1,16]) {
    ...   %0: f32[8,1,1] = max %x {axes=[2], keepdim=true}
    ...   return %0
    ... }''')))
    >>> nest = loop_nest(s.kernels[0])
    >>> [d.extent for d in nest.parallel], [d.extent for d in nest.reduce]
    ([8], [16])
    """
    accesses = k.loads + k.stores
    dims = [(k.space[a], tuple(x.strides[a] for x in accesses), a in k.reduce)
            for a in range(len(k.space)) if k.space[a] != 1]
    merged: list = []
    for extent, strides, red in dims:
        if merged and merged[-1][2] == red and all(
                s0 == s1 * extent for s0, s1 in zip(merged[-1][1], strides)):
            merged[-1] = (merged[-1][0] * extent, strides, red)
        else:
            merged.append((extent, strides, red))
    par = tuple(Dim(e, s) for e, s, r in merged if not r)
    red = tuple(Dim(e, s) for e, s, r in merged if r)
    return LoopNest(par or (Dim(1, (0,) * len(accesses)),), red)


@dataclasses.dataclass(frozen=True)
class RenderedKernel:
    mlir: str
    nest: LoopNest
    ops_per_element: int


def render_kernel(k: Kernel, symbol: str,
                  options: RenderOptions = CPU_OPTIONS) -> RenderedKernel:
    """MLIR text of a module with one function computing kernel `k`."""
    nest = loop_nest(k)
    if options.columns and columns.applies(k, nest):
        return _render_columns(k, nest, symbol, options)
    em = _Emitter(k, nest, options)
    em.symbol = symbol
    em.emit()
    params = _params(k, em.memref, bool(em.lanes))
    head = ["%c0 = arith.constant 0 : index", "%c1 = arith.constant 1 : index",
            "%zero_i8 = arith.constant 0 : i8"]
    loops = (_flat_loop if options.flat_parallel else _nested_loops)(em, nest)
    lines = [f"func.func @{symbol}({', '.join(params)}) {{"]
    lines += ["  " + s for s in head + em.b.const_lines + em.index_consts + em.scratch_lines]
    depth = len(loops)
    lines += ["  " * (d + 1) + loop[0] for d, loop in enumerate(loops)]
    lines += ["  " * (depth + 1) + s for loop in loops for s in loop[1:]]
    lines += ["  " * (depth + 1) + s for s in em.row_lines]
    lines += ["  " * (d + 1) + "}" for d in reversed(range(depth))]
    lines += ["  return", "}"]
    if em.lanes:
        lines.append(render_warp.shuffle_declaration(symbol))
    text = "module {\n" + "\n".join("  " + s for s in lines) + "\n}\n"
    accesses = len(k.loads) + len(k.stores)
    return RenderedKernel(text, nest, em.ops + MEMORY_OP_WEIGHT * accesses)


def _nested_loops(em, nest: LoopNest) -> list[list[str]]:
    """One `scf.for` per parallel axis, the outermost over rows [lo, hi): each loop is its
    header line (the ivs %p<d> are the loop variables)."""
    stops = [em.const_index(dim.extent) for dim in nest.parallel]
    return [[f"scf.for %p{d} = {'%lo' if d == 0 else '%c0'} to "
             f"{'%hi' if d == 0 else stops[d]} step %c1 {{"] for d in range(len(nest.parallel))]


def _flat_loop(em, nest: LoopNest) -> list[list[str]]:
    """One `scf.for %q` over parallel points [lo, hi), the ivs %p<d> computed from it
    (row-major: the last axis varies fastest)."""
    return [["scf.for %q = %lo to %hi step %c1 {"] + unflatten(em, "%q", nest.parallel, "%p")]


def unflatten(em, flat: str, dims, ivs: str) -> list[str]:
    """Lines computing the ivs `<ivs><d>` of `dims` from their row-major flat index."""
    lines = []
    inner = 1
    for d in reversed(range(len(dims))):
        q = flat
        if inner != 1:
            lines.append(f"{flat}{d} = arith.divui {flat}, {em.const_index(inner)} : index")
            q = f"{flat}{d}"
        if d == 0:
            lines.append(f"{ivs}{d} = arith.addi {q}, %c0 : index")
        else:
            lines.append(f"{ivs}{d} = arith.remui {q}, {em.const_index(dims[d].extent)} : "
                         "index")
        inner *= dims[d].extent
    return lines


def _params(k: Kernel, memref, lane: bool = False) -> list[str]:
    # NOTE: a buffer updated in place is passed as a load and as a store, with the same
    # access (the schedule verifier checks it); the kernel stores through the load's pointer
    # and never touches the store's, so every pointer it uses is its buffer's only one:
    # noalias holds, and LLVM vectorizes without runtime overlap checks (an Adam update
    # reads and writes six buffers: with the checks it stayed scalar, 4x slower).
    params = [f"%in{i}: {memref(i)} {{llvm.noalias}}" for i in range(len(k.loads))]
    params += [f"%out{j}: {memref(len(k.loads) + j)} {{llvm.noalias}}"
               for j in range(len(k.stores))]
    return params + (["%lane: index"] if lane else []) + ["%lo: index", "%hi: index"]


def _render_columns(k: Kernel, nest: LoopNest, symbol: str,
                    options: RenderOptions) -> RenderedKernel:
    """The kernel as reductions down contiguous columns (render_columns.py)."""
    memrefs = _Emitter(k, nest)
    em = columns.ColumnEmitter(k, nest, memrefs.memref, {j: i for j, i in k.inplace},
                               _node_emitter(options), _combine, _init, WIDE_SUM_FROM)
    body = em.body()
    head = ["%c0 = arith.constant 0 : index", "%c1 = arith.constant 1 : index",
            "%zero_i8 = arith.constant 0 : i8"]
    lines = [f"func.func @{symbol}({', '.join(_params(k, memrefs.memref))}) {{"]
    lines += ["  " + s for s in head + em.b.const_lines + em.index_lines() + body]
    lines += ["  return", "}"]
    text = "module {\n" + "\n".join("  " + s for s in lines) + "\n}\n"
    accesses = len(k.loads) + len(k.stores)
    return RenderedKernel(text, nest, em.ops + MEMORY_OP_WEIGHT * accesses)


class _Emitter:
    """Emits a kernel's row: loads, body ops, reduction loops and stores."""

    def __init__(self, k: Kernel, nest: LoopNest, options: RenderOptions = CPU_OPTIONS):
        self.k, self.nest = k, nest
        self.scratch_bytes = options.scratch_bytes
        self.lanes = options.warp_lanes if nest.reduce else 0
        self.symbol = ""
        self.store_through = {j: i for j, i in k.inplace}   # store j -> load i's pointer
        self.b = ScalarBuilder(options.vector_ldexp)
        self.emit_node = _node_emitter(options)
        self.locations = options.locations
        self.level = _levels(k)
        self.row: dict = {}
        self.loop: dict | None = None
        self.row_lines: list[str] = []
        self.index_consts: list[str] = []
        self._consts: dict[int, str] = {}
        self.row_index: dict[int, str] = {}
        self.loop_index: dict[int, str] = {}
        self.ops = 0
        self.reduce_extent = 1
        for d in nest.reduce:
            self.reduce_extent *= d.extent
        self.scratch: dict = {}         # full value -> (memref name, phase that stores it)
        self.scratch_lines: list[str] = []
        self.phase = 0
        self.scratch_index: str | None = None

    # ---- buffers and indices ---------------------------------------------------------------
    def memref(self, j: int) -> str:
        acc = (self.k.loads + self.k.stores)[j]
        dtype = self._dtype(j)
        return f"memref<{max(acc.span(self.k.space), 1)}x{STORAGE_TYPE[dtype]}>"

    def _dtype(self, j: int) -> DType:
        n = len(self.k.loads)
        v = self.k.body.inputs[j] if j < n else self.k.body.outputs[j - n]
        return v.type.dtype

    def const_index(self, value: int) -> str:
        if value not in self._consts:
            name = f"%n{len(self._consts)}"
            self.index_consts.append(f"{name} = arith.constant {value} : index")
            self._consts[value] = name
        return self._consts[value]

    def _index(self, base: str | None, ivs, dims, j: int) -> str:
        return columns.index_expr(self.b, base, ivs, dims, j, self.const_index)

    def index(self, j: int, in_loop: bool) -> str:
        if j not in self.row_index:
            saved, self.b.lines = self.b.lines, self.row_lines
            acc = (self.k.loads + self.k.stores)[j]
            base = self.const_index(acc.offset) if acc.offset else None
            ivs = [f"%p{d}" for d in range(len(self.nest.parallel))]
            self.row_index[j] = self._index(base, ivs, self.nest.parallel, j)
            self.b.lines = saved
        if not in_loop or not any(d.strides[j] for d in self.nest.reduce):
            return self.row_index[j]
        if j not in self.loop_index:
            ivs = [f"%r{d}" for d in range(len(self.nest.reduce))]
            self.loop_index[j] = self._index(self.row_index[j], ivs, self.nest.reduce, j)
        return self.loop_index[j]

    # ---- values -----------------------------------------------------------------------------
    def get(self, v, in_loop: bool) -> Scalar:
        memo = self.row if self.level[v] == ROW else self.loop
        if v in memo:
            return memo[v]
        if self.level[v] == ROW and in_loop:
            raise VerifyError(f"kernel {self.k.name}: row value {v.type} needed inside a "
                              "loop before it was computed (internal ordering error)")
        kept = self.scratch.get(v)
        if kept is not None and self.phase > kept[1]:
            out = self.b.emit(f"memref.load {kept[0]}[{self._scratch_index()}] : "
                              f"{self._scratch_type(v)}", v.type.dtype)
            self.ops += MEMORY_OP_WEIGHT
        elif v.producer is None:
            out = self._load(self.k.body.inputs.index(v), in_loop)
        else:
            n = v.producer
            if get_op(n.op).kind == "reduce":
                raise VerifyError(f"kernel {self.k.name}: {n.op} used before its loop")
            out = self._node(n, [self.get(u, in_loop) for u in n.inputs])
            if kept is not None and self.phase == kept[1]:
                self.b.lines.append(f"memref.store {out.name}, {kept[0]}"
                                    f"[{self._scratch_index()}] : {self._scratch_type(v)}")
                self.ops += MEMORY_OP_WEIGHT
        memo[v] = out
        return out

    def _scratch_type(self, v) -> str:
        return f"memref<{self.reduce_extent}x{STORAGE_TYPE[v.type.dtype]}>"

    def _scratch_index(self) -> str:
        """The position in the row of the current reduction-loop iteration."""
        if self.scratch_index is None:
            step, terms = 1, []
            for d in reversed(range(len(self.nest.reduce))):
                terms.append((f"%r{d}", step))
                step *= self.nest.reduce[d].extent
            out = None
            for iv, st in terms:
                t = iv
                if st != 1:
                    t = self.b.fresh()
                    self.b.lines.append(f"{t} = arith.muli {iv}, {self.const_index(st)} : index")
                if out is None:
                    out = t
                else:
                    u = self.b.fresh()
                    self.b.lines.append(f"{u} = arith.addi {out}, {t} : index")
                    out = u
            self.scratch_index = out or "%c0"
        return self.scratch_index

    def _plan_scratch(self, phases: list):
        """Choose the full values two or more loops need and that are worth keeping (see
        EXPENSIVE); each is stored by the first loop that computes it."""
        if not self.nest.reduce:
            return
        cones = [self._full_cone(targets) for targets in phases]
        first: dict = {}
        count: dict = {}
        for i, cone in enumerate(cones):
            for v in cone:
                first.setdefault(v, i)
                count[v] = count.get(v, 0) + 1
        shared = [v for v in count if count[v] > 1 and v.producer is not None
                  and v.type.dtype != DType.bool and self._cost(v) >= RECOMPUTE_BELOW]
        # NOTE: keep the outermost shared values only: what they read is then not recomputed
        inner = {u for v in shared for u in self._full_cone([v]) if u is not v}
        for v in shared:
            size = self.reduce_extent * v.type.dtype.itemsize
            if v in inner or size > self.scratch_bytes:
                continue
            name = f"%scratch{len(self.scratch)}"
            self.scratch[v] = (name, first[v])
            self.scratch_lines.append(f"{name} = memref.alloca() : {self._scratch_type(v)}")

    def _full_cone(self, targets) -> set:
        seen: set = set()
        stack = list(targets)
        while stack:
            v = stack.pop()
            if v in seen or self.level[v] != FULL:
                continue
            seen.add(v)
            if v.producer is not None:
                stack.extend(v.producer.inputs)
        return seen

    def _cost(self, v) -> int:
        return sum(10 if u.producer.op in EXPENSIVE else 1
                   for u in self._full_cone([v]) if u.producer is not None)

    def _load(self, i: int, in_loop: bool) -> Scalar:
        dtype = self.k.body.inputs[i].type.dtype
        raw = self.b.fresh()
        idx = self.index(i, in_loop)
        self.b.lines.append(f"{raw} = memref.load %in{i}[{idx}] : {self.memref(i)}")
        self.ops += MEMORY_OP_WEIGHT
        if dtype != DType.bool:
            return Scalar(raw, dtype)
        return self.b.emit(f"arith.cmpi ne, {raw}, %zero_i8 : i8", DType.bool)

    def _node(self, n, args: list[Scalar]) -> Scalar:
        before = len(self.b.lines)
        out = self.emit_node(self.b, n, args)
        self.ops += len(self.b.lines) - before
        return out

    def _row_deps(self, targets) -> list:
        """Row values the full values `targets` read, in body order."""
        seen, out = set(), []

        def walk(v):
            if v in seen:
                return
            seen.add(v)
            if self.level[v] == ROW:
                out.append(v)
            elif v.producer is not None:
                for u in v.producer.inputs:
                    walk(u)
        for t in targets:
            walk(t)
        order = {v: i for i, v in enumerate(_all_values(self.k.body))}
        return sorted(out, key=order.__getitem__)

    # ---- the row ----------------------------------------------------------------------------
    def emit(self):
        self.b.lines = self.row_lines
        reduced = bool(self.k.reduce)
        n_in = len(self.k.loads)
        in_loop, at_row = [], []
        for j, v in enumerate(self.k.body.outputs):
            varies = any(d.strides[n_in + j] for d in self.nest.reduce)
            (in_loop if reduced and varies else at_row).append(j)
        reductions = [n for n in self.k.body.nodes if get_op(n.op).kind == "reduce"]
        self._plan_scratch([[n.inputs[0]] for n in reductions]
                           + [[self.k.body.outputs[j] for j in in_loop]])
        for n in reductions:
            self.row[n.outputs[0]] = self._reduction(n)
            self.phase += 1
        if in_loop:
            self._loop([self.k.body.outputs[j] for j in in_loop], None, in_loop)
        values = [self.get(self.k.body.outputs[j], False) for j in at_row]
        for j, v in zip(at_row, values):
            self._store(j, v, False)

    def _store(self, j: int, value: Scalar, in_loop: bool):
        n_in = len(self.k.loads)
        dtype = self.k.body.outputs[j].type.dtype
        if value.dtype != dtype:
            raise VerifyError(f"kernel {self.k.name}: output {j} computed as {value.dtype}, "
                              f"declared {dtype}")
        name = value.name
        if dtype == DType.bool:
            name = self.b.fresh()
            self.b.lines.append(f"{name} = arith.extui {value.name} : i1 to i8")
        idx = self.index(n_in + j, in_loop)
        i = self.store_through.get(j)
        target, memref = (f"%out{j}", self.memref(n_in + j)) if i is None else \
            (f"%in{i}", self.memref(i))
        self.b.lines.append(f"memref.store {name}, {target}[{idx}] : {memref}")
        self.ops += MEMORY_OP_WEIGHT

    def _reduction(self, n) -> Scalar:
        x = n.inputs[0]
        dtype = n.outputs[0].type.dtype
        acc_dtype = dtype
        if n.op in ("sum", "mean") and dtype == DType.float32 and (
                self.reduce_extent >= WIDE_SUM_FROM):
            acc_dtype = DType.float64
        init = self.b.const(_init(n.op, acc_dtype), acc_dtype)
        result = self._loop([x], (n.op, init, acc_dtype, n), [])
        if self.lanes:
            result = render_warp.allreduce(self, n.op, result, _combine)
        if acc_dtype != dtype:
            result = self.b.emit(f"arith.truncf {result.name} : f64 to f32{self._where(n)}",
                                 dtype)
        if n.op == "mean":
            count = self.b.const(float(self.reduce_extent), dtype)
            result = self.b.emit(f"arith.divf {result.name}, {count.name} : "
                                 f"{MLIR_TYPE[dtype]}{self._where(n)}", dtype)
        return result

    def _where(self, n) -> str:
        """` loc(...)` of node n when rendering with locations, else nothing."""
        return " " + mlir_loc(n.loc) if self.locations else ""

    def _loop(self, values, reduction, stores: list[int]):
        """A loop nest over the reduction axes computing `values` (full values); with
        `reduction` = (op, init, acc dtype, node) it folds values[0] and returns the result,
        else it stores outputs `stores`."""
        for u in self._row_deps(values):
            self.get(u, False)
        outer_lines = self.b.lines
        self.b.lines, self.loop, self.loop_index = [], {}, {}
        self.scratch_index = None
        dims = self.nest.reduce
        accs = [f"%acc{self.b.fresh()[2:]}_{d}" for d in range(len(dims))]
        if reduction is not None:
            op, init, acc_dtype, node = reduction
            x = self.get(values[0], True)
            if x.dtype != acc_dtype:
                x = self.b.emit(f"arith.extf {x.name} : f32 to f64", acc_dtype)
            current = accs[-1] if dims else init.name
            new = self.b.emit(_combine(op, acc_dtype, current, x.name) + self._where(node),
                              acc_dtype)
        else:
            # NOTE: every value first, then the stores: a store may write over an input a
            # later value still loads (an update in place)
            values = [self.get(self.k.body.outputs[j], True) for j in stores]
            for j, v in zip(stores, values):
                self._store(j, v, True)
            new = None
        inner, self.b.lines, self.loop = self.b.lines, outer_lines, None
        if not dims:
            self.b.lines.extend(inner)
            return new
        ty = MLIR_TYPE[reduction[2]] if reduction is not None else None
        if self.lanes:
            return self._lane_loop(inner, reduction, accs[-1], new)
        text = inner
        for d in reversed(range(len(dims))):
            stop = self.const_index(dims[d].extent)
            if ty is None:
                text = ([f"scf.for %r{d} = %c0 to {stop} step %c1 {{"]
                        + ["  " + s for s in text] + ["}"])
                continue
            start = reduction[1].name if d == 0 else accs[d - 1]
            res = self.b.fresh()
            yielded = new.name if d == len(dims) - 1 else prev
            text = ([f"{res} = scf.for %r{d} = %c0 to {stop} step %c1 iter_args({accs[d]} = "
                     f"{start}) -> ({ty}) {{"] + ["  " + s for s in text]
                    + [f"  scf.yield {yielded} : {ty}", "}"])
            prev = res
        self.b.lines.extend(text)
        return Scalar(prev, reduction[2]) if ty is not None else None

    def _lane_loop(self, inner: list[str], reduction, acc: str, new):
        """This lane's share of a loop over the reduction axes (render_warp.py)."""
        if reduction is None:
            self.b.lines.extend(render_warp.flat_reduce_loop(self, inner, None) + ["}"])
            return None
        ty = MLIR_TYPE[reduction[2]]
        res = self.b.fresh()
        header = f"iter_args({acc} = {reduction[1].name}) -> ({ty})"
        loop = render_warp.flat_reduce_loop(self, inner, header)
        self.b.lines.extend([f"{res} = {loop[0]}"] + loop[1:]
                            + [f"  scf.yield {new.name} : {ty}", "}"])
        return Scalar(res, reduction[2])


def _all_values(body):
    return list(body.inputs) + [o for n in body.nodes for o in n.outputs]


def _levels(k: Kernel) -> dict:
    """Body value -> ROW or FULL (see the module docstring)."""
    level: dict = {}
    for i, v in enumerate(k.body.inputs):
        level[v] = FULL if any(k.loads[i].strides[a] for a in k.reduce
                               if k.space[a] != 1) else ROW
    for n in k.body.nodes:
        if get_op(n.op).kind == "reduce" or n.op == "full":
            lv = ROW
        else:
            lv = max((level[u] for u in n.inputs), default=ROW)
        for o in n.outputs:
            level[o] = lv
    return level


def _init(op: str, dtype: DType):
    if op in ("sum", "mean"):
        return 0
    big = float("inf") if dtype.is_float else (2 ** (dtype.itemsize * 8 - 1) - 1)
    if op == "max":
        return -big if dtype.is_float else -big - 1
    return big


def _combine(op: str, dtype: DType, acc: str, x: str) -> str:
    ty = MLIR_TYPE[dtype]
    if op in ("sum", "mean"):
        if dtype.is_float:
            # NOTE: reassoc lets LLVM keep several partial sums in vector lanes.
            return f"arith.addf {acc}, {x} fastmath<reassoc,contract> : {ty}"
        return f"arith.addi {acc}, {x} : {ty}"
    if dtype.is_float:
        return f"arith.{'maximumf' if op == 'max' else 'minimumf'} {acc}, {x} : {ty}"
    return f"arith.{'maxsi' if op == 'max' else 'minsi'} {acc}, {x} : {ty}"


def _emit_node(b: ScalarBuilder, n, args: list[Scalar]) -> Scalar:
    if n.op == "expand":
        return args[0]
    if n.op == "full":
        return b.const(n.attrs.value, n.attrs.dtype)
    scalar = get_op(n.op).scalar
    if scalar is None:
        raise NotSupportedError(f"not supported yet: elementwise op '{n.op}' declares no "
                                "scalar body, so codegen cannot emit it", node=n, loc=n.loc)
    try:
        return scalar(b, n.attrs, *args)
    except KilnError as e:
        types = ", ".join(str(v.type) for v in n.inputs)
        raise type(e)(f"codegen of {n.op}({types}): {e.message}", node=n, loc=n.loc) from e


def _node_emitter(options: RenderOptions):
    return _emit_located if options.locations else _emit_node


def _emit_located(b: ScalarBuilder, n, args: list[Scalar]) -> Scalar:
    """`_emit_node`, each line it adds ending with the node's location."""
    lines = b.lines
    before = len(lines)
    out = _emit_node(b, n, args)
    where = " " + mlir_loc(n.loc)
    for i in range(before, len(lines)):
        lines[i] += where
    return out


# NOTE: ` loc(...)` at the end of a line, its strings holding any character but an unescaped
# quote, nested one level (`loc("name"("file":1:0))`)
_STRING = r'"(?:[^"\\]|\\.)*"'
_LOCATION = re.compile(rf' loc\((?:[^()"]|{_STRING}|\((?:[^()"]|{_STRING})*\))*\)$',
                       re.MULTILINE)
_SYMBOL = re.compile(r"func\.func @([\w$.-]+)\(")


def strip_locations(mlir: str) -> str:
    """MLIR text without the `loc(...)` that end its lines (what `located_mlir` adds)."""
    return _LOCATION.sub("", mlir)


def located_mlir(k: Kernel, mlir: str, options: RenderOptions = CPU_OPTIONS) -> str:
    """`mlir`, the compiled text of kernel `k` (rendered with `options`), with every op that
    a body node made followed by that node's location. The locations are `k`'s own: kernels
    that differ only in names and lines share one compiled text.

    >>> from kiln.ir.parser import parse
    >>> from kiln.passes.fusion import fuse_elementwise
    >>> from kiln.passes.schedule import build_schedule
    >>> k = build_schedule(fuse_elementwise(parse('''
    ... graph @f(%x: f32[8]) {
    ...   %0: f32[8] = relu %x   # model.act (ReLU) at train.py:7
    ...   return %0
    ... }'''))).kernels[0]
    >>> text = render_kernel(k, "kiln_f").mlir
    >>> [line.strip() for line in located_mlir(k, text).splitlines() if "loc(" in line]
    ['%v1 = arith.maximumf %v0, %k0 : f32 loc("model.act (ReLU)"("train.py":7:0))']
    """
    symbol = _SYMBOL.search(mlir)
    if symbol is None:
        raise KilnError(f"located_mlir: no `func.func @symbol(` in the MLIR of kernel {k.name}")
    located = render_kernel(k, symbol.group(1), dataclasses.replace(options, locations=True))
    if strip_locations(located.mlir) != mlir:
        raise KilnError(f"located_mlir: kernel {k.name} does not render to the MLIR given "
                        "(rendered with other options?)")
    return located.mlir


__all__ = ["render_kernel", "loop_nest", "LoopNest", "RenderedKernel", "const_literal",
           "located_mlir", "strip_locations"]
