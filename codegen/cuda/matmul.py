"""A schedule's `call matmul` as a kernel, for a device without a BLAS: the product is a sum
over k of a[m, k] * b[k, n], which the kernel renderer already knows how to write.

The kernel's space is (*batch, m, n, k), reducing k. `a` is loaded as [*batch, m, 1, k] and
`b` as [*batch, 1, n, k] (each broadcast along the axis it lacks, by a zero stride), read in
place whether the buffer holds the operand or its transpose (the call's `transpose` flags
become strides); the result is stored once per (*batch, m, n). With the GPU's one thread per
parallel point, each thread computes one element of the result (a warp per element where
both operands are read along k: render_warp.py); where b is read along n, the renderer
gives each thread a column of rows instead (matmul_tiled.py). Correct for every shape, far
from a tuned GEMM (no shared-memory tiles, no tensor cores).

    >>> from kiln.ir.schedule_text import parse_schedule
    >>> s = parse_schedule('''
    ... schedule @f(%x: f32[2,3], %w: f32[4,3]) {
    ...   buffer %0: f32[2,4] output
    ...   call matmul (%x, %w) -> (%0) {transpose=[false,true]}
    ...   return %0
    ... }''')
    >>> k = matmul_kernel(s.steps[0]).kernel
    >>> k.space, k.reduce, [a.strides for a in k.loads + k.stores]
    ((2, 4, 3), (2,), [(3, 0, 1), (0, 3, 1), (4, 1, 0)])
"""
from __future__ import annotations

from kiln.ir.builder import GraphBuilder
from kiln.ir.errors import NotSupportedError
from kiln.ir.schedule import Access, Call, Kernel, Launch


def matmul_kernel(call: Call) -> Launch:
    """The Launch computing `call` (a matmul) with a generated kernel."""
    (a_type, b_type), c = call.operand_types(), call.outs[0]
    *batch, m, k = a_type.shape
    n = b_type.shape[-1]
    if tuple(b_type.shape[:-2]) != tuple(batch):
        raise NotSupportedError(f"not supported yet: a generated matmul of {a_type} and "
                                f"{b_type} (batch axes that differ)")
    flags = tuple(call.transpose) or (False, False)
    a_load = _operand_access(batch, m, k, flags[0], "a")
    b_load = _operand_access(batch, k, n, flags[1], "b")
    if k == 0:
        return _zeros(call, batch, m, n)
    c_store = Access(tuple(_batch_strides(batch, m * n)) + (n, 1, 0))
    space = (*batch, m, n, k)
    kernel = Kernel(f"matmul_{c.name}", space, (len(space) - 1,),
                    _body(a_type.dtype, batch, m, n, k), (a_load, b_load), (c_store,))
    return Launch(kernel, list(call.ins), list(call.outs), call.loc)


def _zeros(call: Call, batch, m: int, n: int) -> Launch:
    """A product over an empty k is zeros (a reduction over nothing would launch nothing)."""
    c = call.outs[0]
    space = (*batch, m, n)
    g = GraphBuilder("matmul_zeros")
    (zero,) = g.emit("full", [], {"value": 0, "shape": space, "dtype": c.type.dtype})
    store = Access(tuple(_batch_strides(batch, m * n)) + (n, 1))
    kernel = Kernel(f"matmul_{c.name}", space, (), g.finish([zero]), (), (store,))
    return Launch(kernel, [], list(call.outs), call.loc)


def _batch_strides(batch, matrix: int) -> list[int]:
    """Element strides of the batch axes of contiguous [*batch, ...] storage."""
    out, step = [], matrix
    for d in reversed(batch):
        out.append(step)
        step *= d
    return list(reversed(out))


def _operand_access(batch, rows: int, cols: int, transposed: bool, which: str) -> Access:
    """Strides over (*batch, m, n, k) of operand `which` ([rows, cols] as the op sees it),
    stored as is or (transposed) as its [cols, rows] transpose."""
    row, col = (1, rows) if transposed else (cols, 1)
    b = _batch_strides(batch, rows * cols)
    if which == "a":                      # a[m, k]: rows are m, cols are k
        return Access(tuple(b) + (row, 0, col))
    return Access(tuple(b) + (0, col, row))    # b[k, n]: rows are k, cols are n


def _body(dtype, batch, m: int, n: int, k: int):
    from kiln.ir.types import TensorType
    g = GraphBuilder("matmul")
    full = (*batch, m, n, k)
    a = g.add_input(TensorType(dtype, (*batch, m, 1, k)))
    b = g.add_input(TensorType(dtype, (*batch, 1, n, k)))
    (ae,) = g.emit("expand", [a], {"shape": full})
    (be,) = g.emit("expand", [b], {"shape": full})
    (prod,) = g.emit("mul", [ae, be], {})
    (total,) = g.emit("sum", [prod], {"axes": (len(full) - 1,), "keepdim": False})
    return g.finish([total])
