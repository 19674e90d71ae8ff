"""Shape and dtype rules shared by op declarations; errors name the op, shapes and dtypes."""
from __future__ import annotations

import numpy as np

from ..dtypes import DType
from ..errors import DTypeError, ShapeError
from ..types import TensorType


def fmt(types) -> str:
    return ", ".join(str(t) for t in types)


def same_types(op: str, types: list[TensorType]) -> TensorType:
    """Primitives do not broadcast or promote: all operands share shape and dtype."""
    first = types[0]
    for t in types[1:]:
        if t.shape != first.shape:
            raise ShapeError(f"{op}: operand shapes differ ({fmt(types)}); primitives do "
                             "not broadcast, insert `expand`")
        if t.dtype != first.dtype:
            raise DTypeError(f"{op}: operand dtypes differ ({fmt(types)}); primitives do "
                             "not promote, insert `cast`")
    return first


def need_float(op: str, t: TensorType):
    if not t.dtype.is_float:
        raise DTypeError(f"{op}: needs a floating-point operand, got {t}")


def need_numeric(op: str, t: TensorType):
    if t.dtype == DType.bool:
        raise DTypeError(f"{op}: needs a numeric operand, got {t}")


def check_axes(op: str, t: TensorType, axes) -> tuple[int, ...]:
    for a in axes:
        if not 0 <= a < t.rank:
            raise ShapeError(f"{op}: axis {a} is out of range for {t} (rank {t.rank})")
    if len(set(axes)) != len(axes) or list(axes) != sorted(axes):
        raise ShapeError(f"{op}: axes {list(axes)} must be sorted and distinct")
    return tuple(axes)


def reduced_shape(shape, axes, keepdim: bool) -> tuple[int, ...]:
    if keepdim:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def check_broadcastable(op: str, src: tuple, dst: tuple):
    """`src` expands to `dst` (NumPy rules, leading dims may be added)."""
    ok = len(src) <= len(dst)
    if ok:
        for s, d in zip(reversed(src), reversed(dst)):
            if s != d and s != 1:
                ok = False
    if not ok:
        raise ShapeError(f"{op}: cannot expand shape {list(src)} to {list(dst)}")


def slice_len(start: int, stop: int, step: int) -> int:
    return max(0, (stop - start + step - 1) // step)


def contiguous_strides(shape) -> tuple[int, ...]:
    """Row-major strides, in elements."""
    out, step = [], 1
    for d in reversed(tuple(shape)):
        out.append(step)
        step *= max(d, 1)
    return tuple(reversed(out))


def reshape_strides(shape, strides, new_shape) -> tuple[int, ...] | None:
    """Strides that view a tensor of `shape`/`strides` as `new_shape`, or None when no
    strides can (the reshape must copy). PyTorch's rule: the new dims must split or merge
    runs of old dims that are contiguous with each other (size-1 dims never break a run)."""
    shape, strides, new_shape = tuple(shape), tuple(strides), tuple(new_shape)
    if not shape or any(d == 0 for d in shape):
        return contiguous_strides(new_shape)
    new = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    base = strides[-1] if strides else 1
    tensor_numel = view_numel = 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and strides[d - 1] != tensor_numel * base):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new[view_d] = view_numel * base
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                base = strides[d - 1]
                tensor_numel = view_numel = 1
    if view_d != -1:
        return None
    return tuple(new)


def check_value_fits(op: str, value, dtype: DType) -> None:
    """A literal written into a tensor of `dtype` must be representable there: an integer
    dtype takes integers in its range (never 1.5, NaN or inf), bool takes 0/1/true/false."""
    if dtype.is_float:
        return
    if isinstance(value, float) and not value.is_integer():
        raise DTypeError(f"{op}: value {value!r} is not an integer, so it cannot be "
                         f"converted to type {dtype.name}")
    if dtype == DType.bool:
        if value not in (0, 1):
            raise DTypeError(f"{op}: value {value!r} cannot be converted to type bool")
        return
    info = np.iinfo(dtype.np)
    if not info.min <= int(value) <= info.max:
        raise DTypeError(f"{op}: value cannot be converted to type {dtype.name} without "
                         f"overflow ({value})")
