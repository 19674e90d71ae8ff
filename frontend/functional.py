"""PyTorch-style tensor functions over the registry's primitives.

Primitives neither broadcast nor promote; this layer computes the common dtype and shape,
inserts `cast` and `expand`, and reports mismatches with both shapes and the user's line.
"""
from __future__ import annotations

import numbers

import numpy as np

from kiln.ir import dtypes
from kiln.ir.dtypes import DType
from kiln.ir.errors import DTypeError, KilnError, ShapeError, expect_tensor
from kiln.ir.ops.rules import reshape_strides
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

from .tensor import Tensor


def _is_scalar(x) -> bool:
    return isinstance(x, (numbers.Number, np.bool_, np.number))


def as_tensor(x, dtype=None, device=None) -> Tensor:
    """x as a tensor, without a copy when it already is one of `dtype` and `device`
    (PyTorch's `as_tensor`).

    >>> import kiln
    >>> kiln.frontend.functional.as_tensor([1, 2], dtype=kiln.float64)
    tensor([1., 2.], dtype=kiln.float64)
    """
    if not isinstance(x, Tensor):
        from .creation import tensor
        x = tensor(x, dtype=dtype)
    elif dtype is not None and x.dtype != dtypes.as_dtype(dtype):
        x = cast(x, dtype)
    if device is not None and x.device != device:
        x = x.to(device)
    return x


def full(shape, value, dtype: DType, like=None) -> Tensor:
    """A `full` node: inside a trace it becomes IR (foldable, fusible), else an array (on
    the device of `like`, a tensor, when given)."""
    value = float(value) if dtype.is_float else (bool(value) if dtype == dtypes.bool_
                                                 else int(value))
    # NOTE: an int out of the dtype's range is refused by full's shape rule (as PyTorch):
    # a compiled graph would wrap it silently
    return apply("full", [], {"value": value, "shape": tuple(shape), "dtype": dtype},
                 like=SOURCE if like is None else like)


class _SourceHolder:
    """Dispatch target for ops with no tensor operands (full, arange, random)."""

    _kiln_apply = staticmethod(Tensor._kiln_apply)


SOURCE = _SourceHolder()


def broadcast_shapes(op: str, *shapes) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            listed = " and ".join(f"{list(s)}" for s in shapes)
            raise ShapeError(f"{op}: shapes {listed} cannot be broadcast together "
                             f"(dimension {i - rank} is {sorted(dims)})", loc=user_loc())
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def cast(x: Tensor, dtype) -> Tensor:
    dtype = dtypes.as_dtype(dtype)
    return x if x.dtype == dtype else apply("cast", [x], {"dtype": dtype})


def expand_to(x: Tensor, shape) -> Tensor:
    shape = tuple(shape)
    return x if tuple(x.shape) == shape else apply("expand", [x], {"shape": shape})


def _prepare(op: str, operands, dtype=None):
    """Tensors of a common dtype and broadcast shape (Python scalars become `full`)."""
    tensors = [x for x in operands if isinstance(x, Tensor)]
    scalars = [x for x in operands if _is_scalar(x)]
    if len(tensors) + len(scalars) != len(operands):
        bad = [type(x).__name__ for x in operands if not isinstance(x, Tensor)
               and not _is_scalar(x)]
        raise TypeError(f"{op}: unsupported operand type(s) {bad}")
    if dtype is None:
        dtype = _operand_dtype(operands)
    shape = broadcast_shapes(op, *[tuple(t.shape) for t in tensors])
    # NOTE: a Python scalar is made where the tensors are (a CUDA tensor's device)
    like = next((t for t in tensors if t.is_cuda), None)
    out = []
    for x in operands:
        if isinstance(x, Tensor):
            if like is not None and x.ndim == 0 and not x.is_cuda:
                x = x.to("cuda")        # NOTE: a CPU scalar tensor joins, as in PyTorch
            out.append(expand_to(cast(x, dtype), shape))
        else:
            out.append(full(shape, x, dtype, like))
    return out


def _float_dtype(op: str, operands) -> DType:
    d = _operand_dtype(operands)
    return d if d.is_float else dtypes.DEFAULT_FLOAT


def binary(op: str, a, b, float_only: bool = False) -> Tensor:
    dtype = _float_dtype(op, [a, b]) if float_only else None
    x, y = _prepare(op, [a, b], dtype)
    return apply(op, [x, y])


def unary(op: str, x: Tensor, float_only: bool = True) -> Tensor:
    expect_tensor(op, x, Tensor)
    if float_only and not x.dtype.is_float:
        x = cast(x, dtypes.DEFAULT_FLOAT)
    return apply(op, [x])


def _scaled(b, alpha):
    """b * alpha, skipping the product for a plain 1 (alpha may be a 0-d tensor)."""
    if not isinstance(alpha, Tensor) and alpha == 1:
        return b
    return mul(b, alpha)


def add(a, b, alpha=1):
    return binary("add", a, _scaled(b, alpha))


def sub(a, b, alpha=1):
    return binary("sub", a, _scaled(b, alpha))


def mul(a, b):
    return binary("mul", a, b)


def div(a, b):
    return binary("div", a, b, float_only=True)


def _operand_dtype(operands) -> DType:
    """PyTorch's result type: 0-d tensors and Python scalars count only where they raise
    the category (a float32 tensor times a float64 0-d tensor is float32)."""
    tensors = [x for x in operands if isinstance(x, Tensor)]
    return dtypes.result_dtype([t.dtype for t in tensors if t.ndim],
                               [x for x in operands if _is_scalar(x)],
                               [t.dtype for t in tensors if not t.ndim])


def pow(a, b):
    """a ** b; integer operands give an integer power (`2 ** int_tensor` is int64), as in
    PyTorch."""
    if _operand_dtype([a, b]).is_float:
        return binary("pow", a, b, float_only=True)
    if _is_scalar(b) and b < 0:
        raise KilnRuntimeError("Integers to negative integer powers are not allowed.",
                               loc=user_loc())
    x, y = _prepare("pow", [a, b], _integer_dtype([a, b]))
    return apply("pow", [x, y])


def _integer_dtype(operands) -> DType:
    """bool operands of an arithmetic op compute in int64, as in PyTorch."""
    d = _operand_dtype(operands)
    return dtypes.int64 if d == dtypes.bool_ else d


class KilnRuntimeError(KilnError, RuntimeError):
    """PyTorch raises RuntimeError for these (integer division by zero, negative powers)."""


def _check_int_divisor(op: str, b) -> None:
    """PyTorch refuses integer division by zero (`RuntimeError: ZeroDivisionError`); an
    eager check, since compiled code cannot raise (it gives 0 there, as NumPy)."""
    if isinstance(b, Tensor) and (b._trace is not None or b.is_cuda):
        return
    values = np.asarray(b._data if isinstance(b, Tensor) else b)
    if values.size and not values.all():
        raise KilnRuntimeError(f"ZeroDivisionError: {op} of integers by zero",
                               loc=user_loc())


def _divide_like(op: str, a, b):
    dtype = _operand_dtype([a, b])
    if not dtype.is_float:
        dtype = _integer_dtype([a, b])
        _check_int_divisor(op, b)
    x, y = _prepare(op, [a, b], dtype)
    return apply(op, [x, y])


def floor_divide(a, b):
    """a // b rounded toward -inf, with Python's (and PyTorch's) rules for signs.

    >>> import kiln
    >>> kiln.tensor([7, -7]) // 2
    tensor([ 3, -4])
    """
    return _divide_like("floor_divide", a, b)


def remainder(a, b):
    """a % b with the sign of b (Python's and PyTorch's `%`, not C's fmod).

    >>> import kiln
    >>> kiln.tensor([7, -7]) % 3
    tensor([1, 2])
    """
    return _divide_like("remainder", a, b)


def _bitwise(op: str):
    def f(a, b):
        d = _operand_dtype([a, b])
        if d.is_float:
            raise DTypeError(f"{op}: not implemented for floating-point operands ({d}); "
                             "it needs integer or bool tensors", loc=user_loc())
        x, y = _prepare(op, [a, b], d)
        return apply(op, [x, y])
    f.__name__ = op
    f.__doc__ = f"`{op}` of integer or bool tensors (elementwise, broadcasting)."
    return f


bitwise_and, bitwise_or, bitwise_xor = (_bitwise(o) for o in
                                        ("bitwise_and", "bitwise_or", "bitwise_xor"))


def bitwise_not(x):
    """~x: bitwise not of an integer tensor, logical not of a bool one."""
    x = as_tensor(x)
    if x.dtype.is_float:
        raise DTypeError(f"bitwise_not: not implemented for floating-point tensors "
                         f"({x.dtype})", loc=user_loc())
    return apply("bitwise_not", [x])


def _as_bool(x) -> Tensor:
    x = as_tensor(x)
    return x if x.dtype == dtypes.bool_ else ne(x, 0)


def logical_and(a, b):
    return bitwise_and(_as_bool(a), _as_bool(b))


def logical_or(a, b):
    return bitwise_or(_as_bool(a), _as_bool(b))


def logical_xor(a, b):
    return bitwise_xor(_as_bool(a), _as_bool(b))


def logical_not(x):
    return bitwise_not(_as_bool(x))


def maximum(a, b):
    return binary("maximum", a, b)


def minimum(a, b):
    return binary("minimum", a, b)


def _compare(op):
    def f(a, b):
        x, y = _prepare(op, [a, b])
        return apply(op, [x, y])
    f.__name__ = op
    return f


eq, ne, lt, le, gt, ge = (_compare(o) for o in ("eq", "ne", "lt", "le", "gt", "ge"))


def where(cond, a, b):
    cond = as_tensor(cond)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        # NOTE: two Python scalars: PyTorch's dtype for them (bool, int64 or float32)
        a = full(tuple(cond.shape), a, dtypes.result_dtype([dtypes.bool_], [a, b]),
                 like=cond)
    x, y = _prepare("where", [a, b])
    if x.is_cuda and not cond.is_cuda and cond.ndim == 0:
        cond = cond.to("cuda")          # NOTE: a CPU scalar condition joins, as in PyTorch
    shape = broadcast_shapes("where", tuple(cond.shape), tuple(x.shape))
    return apply("where", [expand_to(cast(cond, dtypes.bool_), shape), expand_to(x, shape),
                           expand_to(y, shape)])


def clamp(x, min=None, max=None):
    """Limit x to [min, max]; either bound may be None, a number or a tensor (broadcast).

    >>> import kiln
    >>> kiln.tensor([-2.0, 0.5, 3.0]).clamp(min=kiln.tensor([0.0, 1.0, 0.0]), max=2.0)
    tensor([0., 1., 2.])
    """
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    # NOTE: where, not maximum/minimum: at a bound x keeps the whole gradient (maximum
    # splits ties) and a bound gets it only where it wins, as PyTorch's clamp
    if min is not None:
        x = where(lt(x, min), min, x)
    if max is not None:
        x = where(gt(x, max), max, x)
    return x


def clamp_min(x, min):
    return clamp(x, min=min)


def clamp_max(x, max):
    return clamp(x, max=max)


def _rounding(op: str):
    def rounded(x):
        expect_tensor(op, x, Tensor)
        # NOTE: integers are already whole: a copy, in their dtype (as PyTorch's)
        return apply(op, [x]) if x.dtype.is_float else clone(x)
    rounded.__name__ = op
    return rounded


floor, ceil, trunc = _rounding("floor"), _rounding("ceil"), _rounding("trunc")
_round_half_even = _rounding("round")


def round(x, decimals: int = 0):
    """To the nearest integer, halves to even (or to `decimals` places: x * 10**d rounded,
    divided back, as PyTorch)."""
    if not decimals:
        return _round_half_even(x)
    scale = 10.0 ** decimals
    return div(_round_half_even(mul(x, scale)), scale)


def frac(x):
    """x - trunc(x) (floats)."""
    return sub(x, trunc(x))


def neg(x):
    return unary("neg", x, float_only=False)


def abs(x):
    return unary("abs", x, float_only=False)


def relu(x):
    return unary("relu", x, float_only=False)


def exp(x):
    return unary("exp", x)


def log(x):
    return unary("log", x)


def sqrt(x):
    return unary("sqrt", x)


def rsqrt(x):
    return unary("rsqrt", x)


def tanh(x):
    return unary("tanh", x)


def sigmoid(x):
    return unary("sigmoid", x)


def erf(x):
    return unary("erf", x)


def sin(x):
    return unary("sin", x)


def cos(x):
    return unary("cos", x)


def log1p(x):
    """log(1 + x), accurate for small x."""
    return unary("log1p", x)


def expm1(x):
    """exp(x) - 1, accurate for small x."""
    return unary("expm1", x)


def clone(x: Tensor) -> Tensor:
    """A new tensor with x's values and (differentiably) its history; never x itself, so an
    in-place op on the clone cannot reach x."""
    return apply("copy", [x])


# ---- movement -------------------------------------------------------------------------------
def _infer_shape(numel: int, shape, src) -> tuple[int, ...]:
    shape = list(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
        else list(shape)
    shape = [int(s) for s in shape]
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: only one dimension can be -1, got {shape}", loc=user_loc())
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if known == 0 or numel % known:
            raise ShapeError(f"reshape: shape {shape} is invalid for input of shape "
                             f"{list(src)} ({numel} elements)", loc=user_loc())
        shape[shape.index(-1)] = numel // known
    return tuple(shape)


def reshape(x: Tensor, *shape) -> Tensor:
    """A view of x with `shape` when x's strides allow one, else a copy (PyTorch's rule)."""
    shape = _infer_shape(x.numel(), shape, x.shape)
    if reshape_strides(tuple(x.shape), x._elem_strides(), shape) is None:
        x = apply("copy", [x])
    return apply("reshape", [x], {"shape": shape})


def view(x: Tensor, *shape) -> Tensor:
    """A view of x with `shape`; an error when x's strides allow none (PyTorch's `view`)."""
    shape = _infer_shape(x.numel(), shape, x.shape)
    if reshape_strides(tuple(x.shape), x._elem_strides(), shape) is None:
        raise ShapeError(f"view size is not compatible with input tensor's size and stride "
                         f"(shape {list(x.shape)}, strides {list(x._elem_strides())}; at "
                         "least one dimension spans across two contiguous subspaces). Use "
                         ".reshape(...) instead.", loc=user_loc())
    return apply("reshape", [x], {"shape": shape})


def norm_dim(dim: int, rank: int, op: str = "dim") -> int:
    r = max(rank, 1)
    if not -r <= dim < r:
        raise ShapeError(f"{op}: dimension {dim} is out of range for a tensor of rank {rank} "
                         f"(expected in [{-r}, {r - 1}])", loc=user_loc())
    return dim % r


def permute(x: Tensor, *dims) -> Tensor:
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    perm = tuple(norm_dim(d, x.ndim, "permute") for d in dims)
    # NOTE: a new view even for the identity, as in PyTorch (canonicalize drops it in graphs)
    return apply("permute", [x], {"perm": perm})


def transpose(x: Tensor, d0: int, d1: int) -> Tensor:
    perm = list(range(x.ndim))
    a, b = norm_dim(d0, x.ndim, "transpose"), norm_dim(d1, x.ndim, "transpose")
    perm[a], perm[b] = perm[b], perm[a]
    return permute(x, tuple(perm))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    d = norm_dim(dim, x.ndim + 1, "unsqueeze")
    shape = list(x.shape)
    shape.insert(d, 1)
    return reshape(x, tuple(shape))


def squeeze(x: Tensor, dim=None) -> Tensor:
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    dims = {norm_dim(d, x.ndim, "squeeze") for d in dims}
    shape = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return reshape(x, shape)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = norm_dim(start_dim, x.ndim), norm_dim(end_dim, x.ndim)
    shape = tuple(x.shape[:s]) + (-1,) + tuple(x.shape[e + 1:])
    return reshape(x, shape)


def expand(x: Tensor, *sizes) -> Tensor:
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) \
        else sizes
    lead = len(sizes) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    broadcast_shapes("expand", tuple(x.shape), shape)
    return apply("expand", [x], {"shape": shape})      # NOTE: a new view, as in PyTorch


def _slice_dim(x: Tensor, dim: int, start: int, stop: int) -> Tensor:
    """x[..., start:stop, ...] on axis `dim` (a view), for 0 <= start <= stop <= size."""
    starts = tuple(start if i == dim else 0 for i in range(x.ndim))
    stops = tuple(stop if i == dim else s for i, s in enumerate(x.shape))
    return apply("slice", [x], {"starts": starts, "stops": stops, "steps": (1,) * x.ndim})


def _c_name(d) -> str:
    """PyTorch's C name of a dtype in its error messages: float, double, long, int, bool."""
    return {"float32": "float", "float64": "double", "int64": "long", "int32": "int"}.get(
        d.name, d.name)


def cat(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    dtype = dtypes.result_dtype([t.dtype for t in tensors])
    d = norm_dim(dim, tensors[0].ndim, "cat")
    return apply("concat", [cast(t, dtype) for t in tensors], {"axis": d})


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    d = norm_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([unsqueeze(t, d) for t in tensors], d)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """NumPy matmul semantics: 1-D operands, broadcasting batch dimensions."""
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both arguments need at least 1 dimension, got shapes "
                         f"{list(a.shape)} and {list(b.shape)}", loc=user_loc())
    if a.dtype != b.dtype:
        # NOTE: PyTorch does not promote in matmul (a float64 batch into a float32 Linear)
        raise DTypeError(f"expected m1 and m2 to have the same dtype, but got: "
                         f"{_c_name(a.dtype)} != {_c_name(b.dtype)}", loc=user_loc())
    x = unsqueeze(a, 0) if a.ndim == 1 else a
    y = unsqueeze(b, -1) if b.ndim == 1 else b
    if x.shape[-1] != y.shape[-2]:
        raise ShapeError(f"matmul: shapes {list(a.shape)} and {list(b.shape)} cannot be "
                         f"multiplied ({x.shape[-1]} != {y.shape[-2]})", loc=user_loc())
    batch = broadcast_shapes("matmul", tuple(x.shape[:-2]), tuple(y.shape[:-2]))
    x = expand_to(x, batch + tuple(x.shape[-2:]))
    y = expand_to(y, batch + tuple(y.shape[-2:]))
    out = apply("matmul", [x, y])
    if a.ndim == 1:
        out = squeeze(out, -2)
    if b.ndim == 1:
        out = squeeze(out, -1)
    return out
