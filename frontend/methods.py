"""Tensor operators and methods, bound from the functional layer (one definition each)."""
from __future__ import annotations

from kiln.ir.errors import NotSupportedError, ShapeError
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

from . import composite as C
from . import functional as F
from . import reductions as R
from .indexing import getitem, setitem
from .inplace import INPLACE, detach_
from .tensor import Tensor


def _swap(f):
    return lambda a, b: f(b, a)


def _narrow(x, dim: int, start: int, length: int):
    """`x.narrow(dim, start, length)`: a view of `length` entries of `dim` from `start`."""
    d = F.norm_dim(dim, x.ndim, "narrow")
    size = x.shape[d]
    begin = start + size if start < 0 else start
    if not 0 <= begin <= size or length < 0 or begin + length > size:
        raise ShapeError(f"narrow: start {start} and length {length} do not fit dimension "
                         f"{d} of size {size}", loc=user_loc())
    index = [slice(None)] * x.ndim
    index[d] = slice(begin, begin + length)
    return getitem(x, tuple(index))


def _diagonal(x, offset: int = 0, dim1: int = 0, dim2: int = 1):
    """`x.diagonal(offset, dim1, dim2)`: a view of the diagonal, appended as the last dim."""
    d1, d2 = F.norm_dim(dim1, x.ndim, "diagonal"), F.norm_dim(dim2, x.ndim, "diagonal")
    if d1 == d2:
        raise ShapeError(f"diagonal: dimensions {dim1} and {dim2} are the same",
                         loc=user_loc())
    rest = [d for d in range(x.ndim) if d not in (d1, d2)]
    y = F.permute(x, tuple(rest) + (d1, d2))
    n, m = y.shape[-2:]
    start_row, start_col = max(-offset, 0), max(offset, 0)
    if start_row or start_col:
        y = y[..., min(start_row, n):, min(start_col, m):]
    return apply("diagonal", [y])


def _stride(x, dim=None):
    """Strides in elements, like PyTorch's `stride()` (NumPy's, or the traced ones)."""
    strides = x._elem_strides()
    return strides if dim is None else strides[F.norm_dim(dim, x.ndim, "stride")]


def _is_contiguous(x) -> bool:
    """Row-major with no gaps (size-1 dims may have any stride, as in PyTorch)."""
    if x.numel() == 0:
        return True
    expected = 1
    for size, stride in zip(reversed(tuple(x.shape)), reversed(x._elem_strides())):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _contiguous(x):
    """x itself when it is contiguous, else a row-major copy (PyTorch's `contiguous()`)."""
    return x if _is_contiguous(x) else F.clone(x)


def _masked_fill(x, mask, value):
    return F.where(mask, F.as_tensor(value, x.dtype) if not F._is_scalar(value) else
                   F.full((), value, x.dtype), x)


def _select(x, dim: int, index: int):
    d = F.norm_dim(dim, x.ndim, "select")
    return getitem(x, (slice(None),) * d + (index,))


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "int32": "IntTensor",
               "int64": "LongTensor", "bool": "BoolTensor"}


def _type(x, dtype=None, non_blocking: bool = False):
    """`x.type()`: the tensor type's name ('kiln.FloatTensor'); `x.type(dtype)`: x cast to
    dtype (x itself when it has that dtype already), as in PyTorch."""
    if dtype is None:
        prefix = "kiln.cuda." if x.is_cuda else "kiln."
        return prefix + _TYPE_NAMES[x.dtype.np.name]
    if isinstance(dtype, str) and dtype.endswith("Tensor"):
        names = {v: k for k, v in _TYPE_NAMES.items()}
        dtype = names[dtype.rsplit(".", 1)[-1]]
    return F.cast(x, dtype)


_OPERATORS = {
    "__add__": F.add, "__radd__": _swap(F.add), "__sub__": F.sub, "__rsub__": _swap(F.sub),
    "__mul__": F.mul, "__rmul__": _swap(F.mul), "__truediv__": F.div,
    "__rtruediv__": _swap(F.div), "__pow__": F.pow, "__rpow__": _swap(F.pow),
    "__matmul__": F.matmul, "__rmatmul__": _swap(F.matmul), "__neg__": F.neg,
    "__pos__": lambda x: x, "__abs__": F.abs,
    "__eq__": F.eq, "__ne__": F.ne, "__lt__": F.lt, "__le__": F.le, "__gt__": F.gt,
    "__ge__": F.ge, "__getitem__": getitem, "__setitem__": setitem,
    "__floordiv__": F.floor_divide, "__rfloordiv__": _swap(F.floor_divide),
    "__mod__": F.remainder, "__rmod__": _swap(F.remainder),
    "__and__": F.bitwise_and, "__rand__": _swap(F.bitwise_and),
    "__or__": F.bitwise_or, "__ror__": _swap(F.bitwise_or),
    "__xor__": F.bitwise_xor, "__rxor__": _swap(F.bitwise_xor), "__invert__": F.bitwise_not,
}

_METHODS = {
    "add": F.add, "sub": F.sub, "mul": F.mul, "div": F.div, "pow": F.pow, "neg": F.neg,
    "exp": F.exp, "log": F.log, "sqrt": F.sqrt, "rsqrt": F.rsqrt, "tanh": F.tanh,
    "sigmoid": F.sigmoid, "relu": F.relu, "abs": F.abs, "erf": F.erf, "floor": F.floor,
    "ceil": F.ceil, "trunc": F.trunc, "round": F.round, "frac": F.frac,
    "maximum": F.maximum, "minimum": F.minimum, "matmul": F.matmul,
    "eq": F.eq, "ne": F.ne, "lt": F.lt, "le": F.le, "gt": F.gt, "ge": F.ge,
    "sum": R.sum, "mean": R.mean, "max": R.max, "min": R.min, "amax": R.amax,
    "amin": R.amin, "argmax": R.argmax, "argmin": R.argmin,
    "reshape": F.reshape, "view": F.view, "narrow": _narrow, "select": _select,
    "diagonal": _diagonal, "stride": _stride, "is_contiguous": _is_contiguous,
    "contiguous": _contiguous, "masked_fill": _masked_fill, "permute": F.permute, "transpose": F.transpose,
    "unsqueeze": F.unsqueeze, "squeeze": F.squeeze, "flatten": F.flatten,
    "expand": F.expand, "expand_as": lambda x, o: F.expand(x, tuple(o.shape)),
    "view_as": lambda x, o: F.view(x, tuple(o.shape)),
    "reshape_as": lambda x, o: F.reshape(x, tuple(o.shape)),
    "clamp": F.clamp, "clip": F.clamp, "detach_": detach_,
    "sin": F.sin, "cos": F.cos, "log1p": F.log1p, "expm1": F.expm1,
    "floor_divide": F.floor_divide, "remainder": F.remainder,
    "bitwise_and": F.bitwise_and, "bitwise_or": F.bitwise_or, "bitwise_xor": F.bitwise_xor,
    "bitwise_not": F.bitwise_not, "logical_and": F.logical_and, "logical_or": F.logical_or,
    "logical_xor": F.logical_xor, "logical_not": F.logical_not,
    "clamp_min": F.clamp_min, "clamp_max": F.clamp_max, "type": _type,
    "std": R.std, "var": R.var, "any": R.any, "all": R.all, "norm": R.norm,
    "logsumexp": R.logsumexp, "cumsum": R.cumsum, "cumprod": R.cumprod, "sort": R.sort,
    "prod": R.prod,
    "argsort": R.argsort, "topk": R.topk,
    "tril": C.tril, "triu": C.triu, "flip": C.flip, "roll": C.roll, "repeat": C.repeat,
    "repeat_interleave": C.repeat_interleave, "chunk": C.chunk, "split": C.split,
    "outer": C.outer, "bmm": C.bmm,
}


def _t(x):
    if x.ndim > 2:
        raise NotSupportedError(f"t() expects a tensor with <= 2 dimensions, got {x.ndim}")
    return F.transpose(x, 0, 1) if x.ndim == 2 else F.permute(x, tuple(range(x.ndim)))


def install():
    for name, fn in {**_OPERATORS, **_METHODS, **INPLACE}.items():
        setattr(Tensor, name, fn)
    Tensor.T = property(lambda x: F.permute(x, tuple(reversed(range(x.ndim)))))
    Tensor.mT = property(lambda x: F.transpose(x, -2, -1))
    Tensor.t = _t


install()
