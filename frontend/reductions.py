"""Reductions with PyTorch's conventions (dim=None means all, int sums give int64)."""
from __future__ import annotations

import builtins
import collections
import functools

from kiln.ir import dtypes
from kiln.ir.errors import DTypeError, NotSupportedError, ShapeError, expect_tensor
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

from . import autograd
from .functional import cast, maximum, minimum, norm_dim, reshape, squeeze
from .tensor import Tensor

ValuesIndices = collections.namedtuple("ValuesIndices", ["values", "indices"])


def _axes(x: Tensor, dim) -> tuple[int, ...]:
    if dim is None or (isinstance(dim, (tuple, list)) and not dim):
        return tuple(range(x.ndim))     # NOTE: dim=() reduces everything, as in PyTorch
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
    indices = _arg(op, x, dim, keepdim)
    if x._requires_grad and autograd.is_grad_enabled():
        # NOTE: read at the returned index, so the gradient goes there (PyTorch's), not
        # split among ties as the reduction's would be
        d = norm_dim(dim, x.ndim, op) if x.ndim else 0
        at = indices if keepdim or not x.ndim else apply("reshape", [indices], {
            "shape": tuple(1 if a == d else n for a, n in enumerate(x.shape))})
        values = apply("gather", [x, at], {"axis": d}) if x.ndim else x
        if not keepdim and x.ndim:
            values = reshape(values, tuple(indices.shape))
    else:
        values = _reduce(op, x, dim, keepdim)
    return ValuesIndices(values, indices)


def _arg(op: str, x: Tensor, dim, keepdim: bool) -> Tensor:
    return (argmax if op == "max" else argmin)(x, dim, keepdim)


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
    # NOTE: ~x = -x - 1 reverses the order of integers without overflowing at the minimum
    # (-x wraps there); floats negate
    flipped = apply("bitwise_not", [x]) if not x.dtype.is_float else apply("neg", [x])
    return argmax(flipped, dim, keepdim)


# ---- statistics, norms ----------------------------------------------------------------------
def _count(x: Tensor, dim) -> int:
    n = 1
    for a in (_axes(x, dim) if x.ndim else ()):
        n *= x.shape[a]
    return n


def _correction(op: str, unbiased, correction) -> float:
    if unbiased is not None and correction is not None:
        raise ValueError(f"{op}: pass either `unbiased` or `correction`, not both")
    if correction is not None:
        return float(correction)
    return 1.0 if unbiased is None or unbiased else 0.0


def var(x: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """Variance over `dim` (all dims when None), sum((x - mean)**2) / (N - correction);
    unbiased (correction=1) by default, as in PyTorch.

    >>> import kiln
    >>> kiln.tensor([1.0, 2.0, 3.0, 4.0]).var()
    tensor(1.6667)
    """
    if isinstance(dim, bool):
        dim, unbiased = None, dim         # NOTE: PyTorch's var(x, unbiased) form
    if not x.dtype.is_float:
        raise DTypeError(f"var/std: needs a floating-point tensor, got {x.dtype}",
                         loc=user_loc())
    corr = _correction("var", unbiased, correction)
    centered = x - mean(x, dim, keepdim=True)
    total = sum(centered * centered, dim, keepdim=keepdim)
    # NOTE: N - correction <= 0 divides by 0 (inf or nan), as in PyTorch
    return total / builtins.max(_count(x, dim) - corr, 0.0)


def std(x: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """Standard deviation: sqrt of `var` with the same arguments (gradient 0 where it is 0,
    as PyTorch's)."""
    from .functional import sqrt
    return _root_at_zero(var(x, dim, unbiased, keepdim, correction=correction), sqrt)


def _root_at_zero(s: Tensor, root) -> Tensor:
    """root(s), with value and gradient 0 where s == 0 (where root's derivative is
    infinite: PyTorch masks those positions in norm's and std's backward)."""
    from .functional import eq, where
    at_zero = eq(s, 0)
    return where(at_zero, 0.0, root(where(at_zero, 1.0, s)))


def var_mean(x: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    return var(x, dim, unbiased, keepdim, correction=correction), mean(x, dim, keepdim)


def std_mean(x: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    return std(x, dim, unbiased, keepdim, correction=correction), mean(x, dim, keepdim)


def any(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Whether any element (along `dim`) is nonzero; False for an empty tensor."""
    from .functional import gt, ne
    hits = sum(cast(ne(x, 0), dtypes.int64), dim, keepdim)
    return gt(hits, 0)


def all(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Whether every element (along `dim`) is nonzero; True for an empty tensor."""
    from .functional import eq
    misses = sum(cast(eq(x, 0), dtypes.int64), dim, keepdim)
    return eq(misses, 0)


def logsumexp(x: Tensor, dim, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) along `dim`, computed from x - max so it never overflows."""
    from .functional import abs, eq, exp, log, where
    if not x.dtype.is_float:
        x = cast(x, dtypes.float32)
    m = amax(x, dim, keepdim=True).detach()
    # NOTE: an all -inf (or +inf) row would give inf - inf = nan: shift by 0 there instead
    m = where(eq(abs(m), float("inf")), 0.0, m)
    out = log(sum(exp(x - m), dim, keepdim=True)) + m
    if keepdim or x.ndim == 0:
        return out
    return reshape(out, tuple(d for i, d in enumerate(x.shape) if i not in _axes(x, dim)))


def norm(x: Tensor, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """The vector p-norm over `dim` (all elements when None): p = 2 or "fro" (the default),
    1, any positive number, inf, -inf or 0 (the count of nonzeros).

    >>> import kiln
    >>> kiln.tensor([3.0, -4.0]).norm()
    tensor(5.)
    """
    import math
    from .functional import abs, eq, ne, pow, sqrt
    if dtype is not None:
        x = cast(x, dtype)
    if not x.dtype.is_float:
        raise DTypeError(f"norm(): input dtype should be floating point, got {x.dtype}",
                         loc=user_loc())
    if p == "fro" or p == 2 or p is None:
        return _root_at_zero(sum(x * x, dim, keepdim), sqrt)
    if p == "nuc" or isinstance(p, str):
        raise NotSupportedError(f"not supported yet: norm with p={p!r}", loc=user_loc())
    if p == math.inf:
        return amax(abs(x), dim, keepdim)
    if p == -math.inf:
        return amin(abs(x), dim, keepdim)
    if p == 0:
        return sum(cast(ne(x, 0), x.dtype), dim, keepdim)
    if p == 1:
        return sum(abs(x), dim, keepdim)
    # NOTE: zeros give gradient 0 (their |x|**(p-1) and the root's are infinite for small p)
    powered = _root_at_zero(abs(x), lambda a: pow(a, float(p)))
    return _root_at_zero(sum(powered, dim, keepdim), lambda s: pow(s, 1.0 / float(p)))


# ---- scans, sorting -------------------------------------------------------------------------
def _scan(op: str, x: Tensor, dim: int, dtype) -> Tensor:
    if dtype is not None:
        x = cast(x, dtype)
    elif not x.dtype.is_float:
        x = cast(x, dtypes.int64)       # NOTE: PyTorch's integer scans accumulate in int64
    return apply(op, [x], {"axis": norm_dim(dim, x.ndim, op)})


def cumsum(x: Tensor, dim: int, dtype=None) -> Tensor:
    """Running sum along `dim` (integers and bool accumulate in int64).

    >>> import kiln
    >>> kiln.tensor([1, 2, 3]).cumsum(0)
    tensor([1, 3, 6])
    """
    return _scan("cumsum", x, dim, dtype)


def cumprod(x: Tensor, dim: int, dtype=None) -> Tensor:
    """Running product along `dim`; its gradient is exact where x has zeros."""
    return _scan("cumprod", x, dim, dtype)


def prod(x: Tensor, dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """Product of the elements along `dim` (all of them when None); integers and bool multiply
    in int64, an empty product is 1.

    >>> import kiln
    >>> kiln.tensor([[1.0, 2.0], [3.0, 4.0]]).prod(dim=1)
    tensor([ 2., 12.])
    >>> kiln.tensor([2, 3, 4]).prod()
    tensor(24)
    """
    from .functional import _slice_dim
    if dim is None:
        return prod(reshape(x, (-1,)), 0, False, dtype)
    if x.ndim == 0:
        return _scan("cumprod", reshape(x, (1,)), 0, dtype)[0]
    d = norm_dim(dim, x.ndim, "prod")
    if x.shape[d] == 0:
        from .creation import ones
        shape = tuple(1 if i == d else s for i, s in enumerate(x.shape) if keepdim or i != d)
        return ones(shape, dtype=_scan("cumprod", x, d, dtype).dtype)
    # NOTE: the last running product, so the gradient is cumprod's, exact where x has zeros.
    last = _slice_dim(_scan("cumprod", x, d, dtype), d, x.shape[d] - 1, x.shape[d])
    return last if keepdim else squeeze(last, d)


def argsort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """Indices that sort x along `dim` (always a stable sort; NaN counts as largest)."""
    if x.dtype == dtypes.bool_:
        x = cast(x, dtypes.int64)
    return apply("argsort", [x], {"axis": norm_dim(dim, x.ndim, "argsort"),
                                  "descending": bool(descending)})


SortResult = collections.namedtuple("SortResult", ["values", "indices"])


def _gather(x: Tensor, indices: Tensor, dim: int) -> Tensor:
    if x.ndim == 0:
        return x * 1 if x.dtype != dtypes.bool_ else x
    return apply("gather", [x, indices], {"axis": norm_dim(dim, x.ndim, "gather")})


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices) of x sorted along `dim`; gradients reach x through the indices.

    >>> import kiln
    >>> kiln.tensor([3.0, 1.0, 2.0]).sort(descending=True).indices
    tensor([0, 2, 1])
    """
    indices = argsort(x, dim, descending)
    return SortResult(_gather(x, indices, dim), indices)


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """The k largest (or smallest) values along `dim` and their indices, in sorted order."""
    from .functional import _slice_dim
    d = norm_dim(dim, x.ndim, "topk")
    size = x.shape[d] if x.ndim else 1
    if not 0 <= k <= size:
        raise ShapeError(f"topk: k ({k}) is out of range for dimension {dim} of size {size}",
                         loc=user_loc())
    indices = argsort(x, d, descending=largest)
    if x.ndim:
        indices = _slice_dim(indices, d, 0, k)
    return SortResult(_gather(x, indices, d), indices)


def _checks_its_input(fn):
    """fn, raising PyTorch's TypeError when its first argument is not a tensor."""
    @functools.wraps(fn)
    def checked(x, *args, **kwargs):
        expect_tensor(fn.__name__, x, Tensor)
        return fn(x, *args, **kwargs)
    return checked


# NOTE: the public reductions (kiln.sum(ndarray) would fail deep inside otherwise)
for _name in ("sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "var", "std",
              "var_mean", "std_mean", "any", "all", "logsumexp", "norm", "cumsum", "cumprod",
              "argsort", "sort", "topk", "prod"):
    globals()[_name] = _checks_its_input(globals()[_name])
