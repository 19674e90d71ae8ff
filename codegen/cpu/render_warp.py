"""The warp schedule of a reduction kernel (GPU only): one warp of `lanes` threads per row.

Lane l of a row's warp runs every loop over the reduction axes with the flat reduction index
f = l, l + lanes, l + 2*lanes, ... (neighbouring lanes read neighbouring elements: coalesced
loads), folding its own partial result; a butterfly of shuffles then gives every lane the
whole row's result, in the same order on every lane:

    for offset in lanes/2, ..., 2, 1:  acc = combine(acc, shuffle_xor(acc, offset))

The shuffle is an external function `<symbol>_shfl(i32 bits, i32 offset) -> i32`: the CUDA
renderer defines it with `shfl.sync.bfly` (codegen/cuda/renderer.py); the tests define it on
the CPU with one thread per lane exchanging values (tests/codegen/test_cuda_ptx.py), so the
index arithmetic and the butterfly here run there exactly as rendered. A 64-bit value is
shuffled as two 32-bit halves, a narrower one widened.
"""
from __future__ import annotations

from kiln.ir.dtypes import DType

from ..scalar_builder import MLIR_TYPE, Scalar

SHUFFLE_SUFFIX = "_shfl"


def shuffle_declaration(symbol: str) -> str:
    return f"func.func private @{symbol}{SHUFFLE_SUFFIX}(i32, i32) -> i32"


def flat_reduce_loop(em, inner: list[str], reduction_header: str | None) -> list[str]:
    """The loop over this lane's reduction points: `scf.for %f = %lane to <extent> step
    <lanes>` with the ivs %r<d> computed from %f (row-major), around the `inner` lines.
    `reduction_header`: the `iter_args(...) -> (type)` part of a folding loop's header."""
    from .render_kernel import unflatten     # NOTE: here: render_kernel imports this module
    extent = em.const_index(em.reduce_extent)
    step = em.const_index(em.lanes)
    head = f"scf.for %f = %lane to {extent} step {step}"
    lines = unflatten(em, "%f", em.nest.reduce, "%r")
    header = f"{head} {reduction_header} {{" if reduction_header else f"{head} {{"
    return [header] + ["  " + s for s in lines + inner]


def allreduce(em, op: str, acc: Scalar, combine) -> Scalar:
    """Every lane's `acc` folded over the warp with `combine(op, dtype, a, b)` (MLIR text)."""
    offset = em.lanes // 2
    while offset:
        other = _shuffle(em, acc, offset)
        acc = em.b.emit(combine(op, acc.dtype, acc.name, other.name), acc.dtype)
        offset //= 2
    return acc


def _shuffle(em, x: Scalar, offset: int) -> Scalar:
    """The value of lane (this lane xor offset)."""
    b, ty = em.b, MLIR_TYPE[x.dtype]
    off = b.const(offset, DType.int32)
    if x.dtype in (DType.float64, DType.int64):
        bits = x if x.dtype == DType.int64 else b.emit(f"arith.bitcast {x.name} : f64 to i64",
                                                        DType.int64)
        half = b.const(32, DType.int64)
        lo = b.emit(f"arith.trunci {bits.name} : i64 to i32", DType.int32)
        hi_wide = b.emit(f"arith.shrui {bits.name}, {half.name} : i64", DType.int64)
        hi = b.emit(f"arith.trunci {hi_wide.name} : i64 to i32", DType.int32)
        lo, hi = (_call(em, v, off) for v in (lo, hi))
        lo = b.emit(f"arith.extui {lo.name} : i32 to i64", DType.int64)
        hi = b.emit(f"arith.extui {hi.name} : i32 to i64", DType.int64)
        hi = b.emit(f"arith.shli {hi.name}, {half.name} : i64", DType.int64)
        got = b.emit(f"arith.ori {hi.name}, {lo.name} : i64", DType.int64)
        if x.dtype == DType.int64:
            return got
        return b.emit(f"arith.bitcast {got.name} : i64 to f64", x.dtype)
    if x.dtype == DType.float32:
        bits = b.emit(f"arith.bitcast {x.name} : f32 to i32", DType.int32)
        got = _call(em, bits, off)
        return b.emit(f"arith.bitcast {got.name} : i32 to f32", x.dtype)
    if x.dtype == DType.int32:
        return _call(em, x, off)
    wide = b.emit(f"arith.extui {x.name} : {ty} to i32", DType.int32)
    got = _call(em, wide, off)
    return b.emit(f"arith.trunci {got.name} : i32 to {ty}", x.dtype)


def _call(em, bits: Scalar, off: Scalar) -> Scalar:
    return em.b.emit(f"func.call @{em.symbol}{SHUFFLE_SUFFIX}({bits.name}, {off.name}) : "
                     "(i32, i32) -> i32", DType.int32)
