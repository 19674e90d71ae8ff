"""Reductions with PyTorch's conventions (dim=None means all, int sums give int64)."""
from __future__ import annotations

import collections

from kiln.ir import dtypes
from kiln.ir.errors import DTypeError
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

from .functional import cast, maximum, minimum, norm_dim, reshape
from .tensor import Tensor

ValuesIndices = collections.namedtuple("ValuesIndices", ["values", "indices"])


def _axes(x: Tensor, dim) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(x.ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return tuple(sorted({norm_dim(d, x.ndim, "reduce") for d in dims}))


def _reduce(op: str, x: Tensor, dim, keepdim: bool) -> Tensor:
    if x.ndim == 0:
        return apply(op, [x], {"axes": (), "keepdim": False})
    return apply(op, [x], {"axes": _axes(x, dim), "keepdim": bool(keepdim)})


def sum(x: Tensor, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_float:
        x = cast(x, dtypes.int64)
    return _reduce("sum", x, dim, keepdim)


def mean(x: Tensor, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    if dtype is not None:
        x = cast(x, dtype)
    if not x.dtype.is_float:
        raise DTypeError(f"mean(): could not infer output dtype. Input dtype must be either a "
                         f"floating point or complex dtype. Got: {x.dtype}", loc=user_loc())
    return _reduce("mean", x, dim, keepdim)


def _extreme(op: str, pairwise, x: Tensor, dim=None, keepdim: bool = False):
    """`max(x)`, `max(x, dim)` -> (values, indices), `max(x, other)` -> elementwise."""
    if isinstance(dim, Tensor):
        return pairwise(x, dim)
    if dim is None:
        return _reduce(op, x, None, False)
    values = _reduce(op, x, dim, keepdim)
    indices = _arg(op, x, dim, keepdim)
    return ValuesIndices(values, indices)


def _arg(op: str, x: Tensor, dim, keepdim: bool) -> Tensor:
    src = x if op == "max" else apply("neg", [cast(x, dtypes.int64) if x.dtype == dtypes.bool_
                                              else x])
    return argmax(src, dim, keepdim)


def max(x: Tensor, dim=None, keepdim: bool = False):
    return _extreme("max", maximum, x, dim, keepdim)


def min(x: Tensor, dim=None, keepdim: bool = False):
    return _extreme("min", minimum, x, dim, keepdim)


def amax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return _reduce("max", x, dim, keepdim)


def amin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    return _reduce("min", x, dim, keepdim)


def argmax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    if x.dtype == dtypes.bool_:
        x = cast(x, dtypes.int64)
    if dim is None:
        flat = reshape(x, (-1,))
        return apply("argmax", [flat], {"axis": 0, "keepdim": False})
    return apply("argmax", [x], {"axis": norm_dim(dim, x.ndim, "argmax"),
                                 "keepdim": bool(keepdim)})


def argmin(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    if x.dtype == dtypes.bool_:
        x = cast(x, dtypes.int64)
    return argmax(apply("neg", [x]), dim, keepdim)
