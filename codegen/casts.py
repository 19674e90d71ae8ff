"""`cast` between Kiln's dtypes with NumPy `astype` semantics, as MLIR arith ops."""
from __future__ import annotations

import numpy as np

from kiln.ir.dtypes import DType

from .scalar_builder import MLIR_TYPE, Scalar, ScalarBuilder


def emit_cast(b: ScalarBuilder, x: Scalar, to: DType) -> Scalar:
    """Convert x to `to`; see `ScalarBuilder.cast` for the semantics."""
    src = x.dtype
    if src == to:
        return x
    if to == DType.bool:
        # NOTE: float `ne` is unordered-or-not-equal, so NaN -> True like NumPy.
        return b.cmp("ne", x, b.const(0, src))
    if src == DType.bool:
        op = "arith.extui" if to.is_int else "arith.uitofp"
        return _convert(b, op, x, to)
    if src.is_int and to.is_int:
        op = "arith.extsi" if to.itemsize > src.itemsize else "arith.trunci"
        return _convert(b, op, x, to)
    if src.is_int:
        return _convert(b, "arith.sitofp", x, to)
    if to.is_float:
        op = "arith.extf" if to.itemsize > src.itemsize else "arith.truncf"
        return _convert(b, op, x, to)
    return _float_to_int(b, x, to)


def _convert(b: ScalarBuilder, op: str, x: Scalar, to: DType) -> Scalar:
    return b.emit(f"{op} {x.name} : {x.type} to {MLIR_TYPE[to]}", to)


def _float_to_int(b: ScalarBuilder, x: Scalar, to: DType) -> Scalar:
    """Truncate toward zero; NaN and out-of-range give INT_MIN (x86 `cvtt*`, so NumPy).

    NOTE: LLVM's fptosi makes poison out of range, so the range test picks the value."""
    bits = 8 * to.itemsize
    low = -(2.0 ** (bits - 1))
    high = b.const(2.0 ** (bits - 1), x.dtype)
    # NOTE: -2**(n-1) - 1 is exact in f64 for n=32, so values in (-2**31-1, -2**31] truncate
    # to INT_MIN legitimately; otherwise the bound is -2**(n-1) itself.
    below = low - 1
    if float(np.asarray(below).astype(x.dtype.np)) == below:
        above_low = b.cmp("gt", x, b.const(below, x.dtype))
    else:
        above_low = b.cmp("ge", x, b.const(low, x.dtype))
    in_range = b.band(above_low, b.cmp("lt", x, high))
    raw = b.float_to_int_unchecked(x, to)
    return b.select(in_range, raw, b.const(-(2 ** (bits - 1)), to))
