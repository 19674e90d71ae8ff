"""Everyday PyTorch functions made of registry ops: mm, dot, eye, diag, square, isnan,
isinf, isfinite, sign, allclose, equal, unbind, and the `new_*` tensor constructors.

    >>> import kiln
    >>> kiln.eye(2).tolist(), kiln.dot(kiln.tensor([1.0, 2.0]), kiln.tensor([3.0, 4.0])).item()
    ([[1.0, 0.0], [0.0, 1.0]], 11.0)
"""
from __future__ import annotations

from kiln.ir import dtypes
from kiln.ir.errors import DTypeError, ShapeError, expect_tensor
from kiln.ir.types import user_loc

from . import functional as F
from . import reductions as R
from .tensor import Tensor


def mm(a: Tensor, b: Tensor) -> Tensor:
    """The product of two matrices (no broadcasting, as PyTorch's `mm`)."""
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: self must be a matrix and mat2 must be a matrix, got shapes "
                         f"{list(a.shape)} and {list(b.shape)}", loc=user_loc())
    return F.matmul(a, b)


def dot(a: Tensor, b: Tensor) -> Tensor:
    """The inner product of two 1-D tensors of one size and dtype."""
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"1D tensors expected, but got {a.ndim}D and {b.ndim}D tensors",
                         loc=user_loc())
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src "
                         f"[{b.shape[0]}] to have the same number of elements",
                         loc=user_loc())
    if a.dtype != b.dtype:
        raise DTypeError(f"dot : expected both vectors to have same dtype, but found "
                         f"{a.dtype} and {b.dtype}", loc=user_loc())
    return F.matmul(a, b)


def eye(n: int, m: int | None = None, dtype=None, device=None,
        requires_grad: bool = False) -> Tensor:
    """An n x m matrix with ones on the diagonal."""
    from .creation import arange
    m = n if m is None else m
    rows = F.unsqueeze(arange(n, device=device), 1)
    cols = F.unsqueeze(arange(m, device=device), 0)
    out = F.cast(F.eq(rows, cols), dtypes.as_dtype(dtype or dtypes.DEFAULT_FLOAT))
    return out.requires_grad_() if requires_grad else out


def diag(x: Tensor, diagonal: int = 0) -> Tensor:
    """A 1-D tensor's diagonal matrix, or a matrix's diagonal (`diagonal` > 0: above)."""
    from .methods import _diagonal
    if x.ndim == 2:
        return _diagonal(x, diagonal)
    if x.ndim != 1:
        raise ShapeError(f"diag(): Supports 1D or 2D tensors. Got {x.ndim}D", loc=user_loc())
    n = x.shape[0] + abs(diagonal)
    from .creation import arange
    rows = F.unsqueeze(arange(n, device=x.device), 1)
    cols = F.unsqueeze(arange(n, device=x.device), 0)
    on = F.eq(cols - rows, diagonal)
    # NOTE: entry (i, i + diagonal) reads x[min(i, j)], clipped where off the diagonal
    pick = F.clamp(F.minimum(rows, cols), max=x.shape[0] - 1)
    values = x[F.expand_to(pick, (n, n))]
    return F.where(on, values, F.full((), 0, x.dtype, like=x))


def square(x: Tensor) -> Tensor:
    expect_tensor("square", x, Tensor)
    return x * x


def isnan(x: Tensor) -> Tensor:
    expect_tensor("isnan", x, Tensor)
    return F.ne(x, x)


def isinf(x: Tensor) -> Tensor:
    expect_tensor("isinf", x, Tensor)
    if not x.dtype.is_float:
        return F.full(tuple(x.shape), False, dtypes.bool_, like=x)
    return F.eq(F.abs(x), float("inf"))


def isfinite(x: Tensor) -> Tensor:
    expect_tensor("isfinite", x, Tensor)
    if not x.dtype.is_float:
        return F.full(tuple(x.shape), True, dtypes.bool_, like=x)
    return F.lt(F.abs(x), float("inf"))     # NOTE: NaN compares False


def sign(x: Tensor) -> Tensor:
    """-1, 0 or 1 in x's dtype (NaN gives 0, as PyTorch's CPU kernel); gradient 0."""
    expect_tensor("sign", x, Tensor)
    if x.dtype == dtypes.bool_:
        return x
    one = F.full((), 1, x.dtype, like=x)
    zero = F.full((), 0, x.dtype, like=x)
    return F.where(F.gt(x, 0), one, F.where(F.lt(x, 0), F.neg(one), zero))


def isclose(a: Tensor, b: Tensor, rtol: float = 1e-5, atol: float = 1e-8,
            equal_nan: bool = False) -> Tensor:
    close = F.le(F.abs(a - b), atol + rtol * F.abs(b))
    close = F.logical_or(close, F.eq(a, b))       # NOTE: equal infinities
    if equal_nan:
        close = F.logical_or(close, F.logical_and(isnan(a), isnan(b)))
    return close


def allclose(a: Tensor, b: Tensor, rtol: float = 1e-5, atol: float = 1e-8,
             equal_nan: bool = False) -> bool:
    return bool(R.all(isclose(a, b, rtol, atol, equal_nan)).item())


def equal(a: Tensor, b: Tensor) -> bool:
    """The same shape and the same values (PyTorch's `torch.equal`)."""
    return tuple(a.shape) == tuple(b.shape) and bool(R.all(F.eq(a, b)).item())


def unbind(x: Tensor, dim: int = 0) -> tuple:
    """The slices along `dim`, each without that dim (views)."""
    d = F.norm_dim(dim, x.ndim, "unbind")
    return tuple(x.select(d, i) for i in range(x.shape[d]))


def _new(fill):
    def make(x: Tensor, *size, dtype=None, device=None, requires_grad: bool = False):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) \
            else tuple(size)
        out = F.full(shape, fill, dtypes.as_dtype(dtype) if dtype is not None else x.dtype,
                     like=x if device is None else None)
        out = out if device is None else out.to(device)
        return out.requires_grad_() if requires_grad else out
    return make


def _new_full(x: Tensor, size, fill_value, dtype=None, device=None,
              requires_grad: bool = False):
    return _new(fill_value)(x, tuple(size), dtype=dtype, device=device,
                            requires_grad=requires_grad)


def _new_tensor(x: Tensor, data, dtype=None, device=None, requires_grad: bool = False):
    from .creation import tensor
    out = tensor(data, dtype=dtype or x.dtype, device=device or x.device)
    return out.requires_grad_() if requires_grad else out


def install() -> None:
    """The Tensor methods of this module (PyTorch's names)."""
    from .composite import log_softmax, softmax
    methods = {
        "mm": mm, "dot": dot, "diag": diag, "square": square, "isnan": isnan,
        "isinf": isinf, "isfinite": isfinite, "sign": sign, "isclose": isclose,
        "allclose": allclose, "equal": equal, "unbind": unbind,
        "new_zeros": _new(0), "new_ones": _new(1), "new_empty": _new(0),
        "new_full": _new_full, "new_tensor": _new_tensor,
        "is_floating_point": lambda x: x.dtype.is_float,
        "softmax": lambda x, dim, dtype=None: softmax(x if dtype is None else
                                                      F.cast(x, dtype), dim),
        "log_softmax": lambda x, dim, dtype=None: log_softmax(x if dtype is None else
                                                              F.cast(x, dtype), dim),
    }
    for name, fn in methods.items():
        setattr(Tensor, name, fn)


install()
