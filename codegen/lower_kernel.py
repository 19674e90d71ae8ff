"""A fused `kernel` node -> MLIR text (func, scf, arith, math, memref) for the CPU.

The body computes "one scalar at the current iteration point": the iteration space is the
shape of the body's outputs; every body value broadcasts to it (right-aligned NumPy rules),
so an input is loaded at the broadcast index, `expand` is the identity, `full` a constant and
an elementwise op its registry scalar body.

Calling convention of the generated function (bare pointers, static shapes):

    void @kiln_<name>(ptr in0, ..., ptr out0, ..., i64 lo, i64 hi)

It computes rows [lo, hi) of the outermost loop of the *collapsed* iteration space: adjacent
dims merge when every operand is either present in both or broadcast in both, so a
contiguous [8192, 1024] kernel is one loop of 8388608 that threads split evenly. Buffers are
C-contiguous; outputs must not overlap inputs (they are marked noalias). bool is stored as
one byte (0/1, NumPy's layout) and computed as i1.
"""
from __future__ import annotations

import dataclasses
import re

from kiln.ir.dtypes import DType
from kiln.ir.errors import KilnError, NotSupportedError, ShapeError, VerifyError
from kiln.ir.graph import Graph
from kiln.ir.registry import get_op

from .scalar_builder import STORAGE_TYPE, Scalar, ScalarBuilder

_STRUCTURAL = ("expand", "full")


@dataclasses.dataclass(frozen=True)
class OperandMap:
    """How one buffer is indexed: `present[k]` says collapsed dim k indexes it (else the
    buffer is broadcast along k); `shape` is the buffer's collapsed shape."""

    dtype: DType
    present: tuple[bool, ...]
    shape: tuple[int, ...]

    @property
    def memref(self) -> str:
        dims = "x".join(str(d) for d in self.shape)
        return f"memref<{dims}x{STORAGE_TYPE[self.dtype]}>"


@dataclasses.dataclass(frozen=True)
class KernelPlan:
    """The iteration space of a kernel and how each buffer maps onto it."""

    name: str
    space: tuple[int, ...]        # the body outputs' shape
    dims: tuple[int, ...]         # collapsed iteration space, rank >= 1
    inputs: tuple[OperandMap, ...]
    outputs: tuple[OperandMap, ...]

    @property
    def outer(self) -> int:
        """Extent of the outermost loop: the (lo, hi) range a launch splits."""
        return self.dims[0]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n


def symbol_name(name: str) -> str:
    """A valid MLIR/LLVM symbol for a kernel name."""
    return "kiln_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def plan_kernel(node) -> KernelPlan:
    """Check a kernel node's body and compute its collapsed iteration space."""
    body = _body(node)
    space = tuple(body.outputs[0].shape)
    for v in body.outputs:
        if tuple(v.shape) != space:
            raise ShapeError(f"kernel {node.attrs.name}: outputs have different shapes "
                             f"({', '.join(str(o.type) for o in body.outputs)})")
    if any(d == 0 for d in space):
        raise NotSupportedError(f"not supported yet: kernel {node.attrs.name} with empty "
                                f"iteration space {list(space)} (the runtime skips it)")
    for v in body.inputs:
        _check_broadcast(node, v.shape, space)
    kept = [k for k, d in enumerate(space) if d != 1]
    shapes = [tuple(v.shape) for v in body.inputs]
    groups = _collapse(kept, [_presence(s, space) for s in shapes])
    dims = tuple(_prod(space[k] for k in g) for g in groups) or (1,)
    ins = tuple(_operand(v.dtype, _presence(v.shape, space), groups, dims) for v in body.inputs)
    full = [True] * len(space)
    outs = tuple(_operand(v.dtype, full, groups, dims) for v in body.outputs)
    return KernelPlan(node.attrs.name, space, dims, ins, outs)


def _body(node) -> Graph:
    if node.op != "kernel":
        raise VerifyError(f"codegen expects a kernel node, got '{node.op}'", node=node)
    body = node.attrs.body
    if not body.outputs:
        raise VerifyError(f"kernel {node.attrs.name} has no outputs", loc=node.loc)
    for n in body.nodes:
        if n.op not in _STRUCTURAL and get_op(n.op).kind != "elementwise":
            raise NotSupportedError(f"not supported yet: op '{n.op}' inside CPU kernel "
                                    f"{node.attrs.name} (only elementwise, expand, full)",
                                    node=n, loc=n.loc)
    return body


def _check_broadcast(node, shape, space):
    ok = len(shape) <= len(space) and all(
        s in (1, d) for s, d in zip(reversed(shape), reversed(space)))
    if not ok:
        raise ShapeError(f"kernel {node.attrs.name}: input shape {list(shape)} does not "
                         f"broadcast to the iteration space {list(space)}", loc=node.loc)


def _presence(shape, space) -> list[bool]:
    """Per iteration dim: does this buffer have the full extent there (not broadcast)?"""
    lead = len(space) - len(shape)
    return [k >= lead and shape[k - lead] == space[k] for k in range(len(space))]


def _collapse(kept: list[int], presences: list[list[bool]]) -> list[list[int]]:
    """Group adjacent non-unit dims that every operand treats alike (present or broadcast).
    NOTE: unit dims between them are size 1 in every buffer, so contiguity is kept."""
    groups: list[list[int]] = []
    for k in kept:
        if groups and all(p[k] == p[groups[-1][-1]] for p in presences):
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def _operand(dtype, presence, groups, dims) -> OperandMap:
    present = tuple(presence[g[0]] for g in groups) or (False,)
    shape = tuple(d for d, p in zip(dims, present) if p) or (1,)
    return OperandMap(dtype, present, shape)


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


@dataclasses.dataclass(frozen=True)
class LoweredKernel:
    """A kernel's plan, its MLIR text, and a rough cost: scalar ops per iteration point
    (body instructions plus a weight per buffer access, for the launcher's thread choice)."""

    plan: KernelPlan
    mlir: str
    ops_per_element: int


# NOTE: a memory access costs about as much as several arithmetic ops in a streaming loop.
MEMORY_OP_WEIGHT = 4


def lower_kernel(node, symbol: str | None = None) -> LoweredKernel:
    """Plan and lower a kernel node; `symbol` defaults to `kiln_<name>`."""
    plan = plan_kernel(node)
    b = ScalarBuilder()
    loads = _LoadCache(b, plan)
    results = emit_body(b, node.attrs.body, loads.get)
    stores = _stores(b, plan, results)
    text = _function_text(plan, symbol or symbol_name(plan.name), b, stores)
    buffers = len(plan.inputs) + len(plan.outputs)
    return LoweredKernel(plan, text, len(b.lines) + MEMORY_OP_WEIGHT * buffers)


def lower_kernel_to_mlir(node, symbol: str | None = None) -> str:
    """MLIR text of a module with one function computing the kernel; see the module doc.

    >>> from kiln.ir.builder import GraphBuilder, make_node
    >>> from kiln.ir.types import TensorType
    >>> from kiln.ir.dtypes import float32
    >>> gb = GraphBuilder("body"); x = gb.add_input(TensorType(float32, (4,)))
    >>> body = gb.finish(gb.emit("exp", [x], {}))
    >>> k = make_node("kernel", [x], {"name": "k0", "body": body})
    >>> "scf.for" in lower_kernel_to_mlir(k)
    True
    """
    return lower_kernel(node, symbol).mlir


def emit_body(b: ScalarBuilder, body: Graph, load) -> list[Scalar]:
    """Emit the body's nodes as scalar code; `load(i)` gives body input i's scalar."""
    env: dict = {}
    for i, v in enumerate(body.inputs):
        env[v] = _Lazy(load, i)
    for n in body.nodes:
        args = [_force(env[v]) for v in n.inputs]
        env[n.outputs[0]] = _emit_node(b, n, args)
    return [_force(env[v]) for v in body.outputs]


class _Lazy:
    """A body input loaded only when used (unused inputs cost nothing)."""

    __slots__ = ("load", "index")

    def __init__(self, load, index):
        self.load = load
        self.index = index


def _force(x):
    return x.load(x.index) if isinstance(x, _Lazy) else x


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


class _LoadCache:
    """Emits each used input's load once, converting bool bytes to i1."""

    def __init__(self, b: ScalarBuilder, plan: KernelPlan):
        self.b = b
        self.plan = plan
        self.done: dict[int, Scalar] = {}

    def get(self, i: int) -> Scalar:
        if i not in self.done:
            self.done[i] = self._load(i)
        return self.done[i]

    def _load(self, i: int) -> Scalar:
        b, op = self.b, self.plan.inputs[i]
        raw = b.fresh()
        b.lines.append(f"{raw} = memref.load %in{i}[{_indices(op)}] : {op.memref}")
        if op.dtype != DType.bool:
            return Scalar(raw, op.dtype)
        return b.emit(f"arith.cmpi ne, {raw}, %zero_i8 : i8", DType.bool)


def _indices(op: OperandMap) -> str:
    ivs = [f"%i{k}" for k, p in enumerate(op.present) if p]
    return ", ".join(ivs) if ivs else "%c0"


def _stores(b: ScalarBuilder, plan: KernelPlan, results: list[Scalar]) -> list[str]:
    lines = []
    for j, (op, v) in enumerate(zip(plan.outputs, results)):
        if v.dtype != op.dtype:
            raise VerifyError(f"kernel {plan.name}: output {j} computed as {v.dtype}, "
                              f"declared {op.dtype}")
        name = v.name
        if op.dtype == DType.bool:
            name = b.fresh()
            lines.append(f"{name} = arith.extui {v.name} : i1 to i8")
        lines.append(f"memref.store {name}, %out{j}[{_indices(op)}] : {op.memref}")
    return lines


def _function_text(plan: KernelPlan, symbol: str, b: ScalarBuilder, stores) -> str:
    params = [f"%in{i}: {op.memref} {{llvm.noalias}}" for i, op in enumerate(plan.inputs)]
    params += [f"%out{j}: {op.memref} {{llvm.noalias}}" for j, op in enumerate(plan.outputs)]
    params += ["%lo: index", "%hi: index"]
    head = ["%c0 = arith.constant 0 : index", "%c1 = arith.constant 1 : index",
            "%zero_i8 = arith.constant 0 : i8"]
    head += [f"%n{k} = arith.constant {d} : index" for k, d in enumerate(plan.dims)]
    lines = [f"func.func @{symbol}({', '.join(params)}) {{"]
    lines += ["  " + s for s in head + b.const_lines]
    depth = len(plan.dims)
    for k in range(depth):
        start, stop = ("%lo", "%hi") if k == 0 else ("%c0", f"%n{k}")
        lines.append("  " * (k + 1) + f"scf.for %i{k} = {start} to {stop} step %c1 {{")
    lines += ["  " * (depth + 1) + s for s in b.lines + stores]
    lines += ["  " * (k + 1) + "}" for k in reversed(range(depth))]
    lines += ["  return", "}"]
    return "module {\n" + "\n".join("  " + s for s in lines) + "\n}\n"


def body_signature(node) -> str:
    """Canonical text of a kernel's body (ops, attrs, types; no names or source lines):
    kernels with equal signatures compile to the same code."""
    body = _body(node)
    ids = {v: f"%{i}" for i, v in enumerate(body.inputs)}
    lines = ["(" + ", ".join(str(v.type) for v in body.inputs) + ")"]
    for n in body.nodes:
        for o in n.outputs:
            ids[o] = f"%{len(ids)}"
        attrs = ", ".join(f"{k}={v!r}" for k, v in n.attrs.items() if not isinstance(v, Graph))
        outs = ", ".join(f"{ids[o]}: {o.type}" for o in n.outputs)
        lines.append(f"{outs} = {n.op} {', '.join(ids[v] for v in n.inputs)} {{{attrs}}}")
    lines.append("return " + ", ".join(ids[v] for v in body.outputs))
    return "\n".join(lines)
