"""Kiln's dtypes and NumPy-style type promotion.

Primitives never promote; the frontend computes a common dtype with `result_dtype` and inserts
explicit `cast` nodes.
"""
from __future__ import annotations

import enum

import numpy as np


class DType(enum.Enum):
    """A tensor element type; `.value` is the short name the IR prints (`f32`)."""

    bool = "bool"
    int32 = "i32"
    int64 = "i64"
    float32 = "f32"
    float64 = "f64"

    def __repr__(self) -> str:
        return f"kiln.{self.name}"

    __str__ = __repr__

    @property
    def np(self) -> np.dtype:
        return np.dtype(_TO_NUMPY[self])

    @property
    def is_float(self) -> bool:
        return self in (DType.float32, DType.float64)

    @property
    def is_int(self) -> bool:
        return self in (DType.int32, DType.int64)

    @property
    def itemsize(self) -> int:
        return self.np.itemsize


_TO_NUMPY = {
    DType.bool: "bool",
    DType.int32: "int32",
    DType.int64: "int64",
    DType.float32: "float32",
    DType.float64: "float64",
}
_FROM_NUMPY = {np.dtype(v): k for k, v in _TO_NUMPY.items()}
_BY_SHORT = {d.value: d for d in DType}
# NOTE: rank inside a category decides promotion: bool < ints < floats, then width.
_CATEGORY = {DType.bool: 0, DType.int32: 1, DType.int64: 1, DType.float32: 2, DType.float64: 2}

bool_ = DType.bool
int32 = DType.int32
int64 = DType.int64
float32 = DType.float32
float64 = DType.float64
DEFAULT_FLOAT = DType.float32
DEFAULT_INT = DType.int64


def from_short(name: str) -> DType:
    """`f32` -> DType.float32 (the IR's spelling)."""
    if name not in _BY_SHORT:
        raise ValueError(f"unknown dtype {name!r}; expected one of {sorted(_BY_SHORT)}")
    return _BY_SHORT[name]


def from_numpy(dt) -> DType:
    dt = np.dtype(dt)
    if dt not in _FROM_NUMPY:
        raise TypeError(f"NumPy dtype {dt} has no Kiln equivalent (bool, int32, int64, "
                        "float32, float64)")
    return _FROM_NUMPY[dt]


def as_dtype(d) -> DType:
    """Accept a DType, a short name, a NumPy dtype or a Python type."""
    if isinstance(d, DType):
        return d
    if d is float:
        return DEFAULT_FLOAT
    if d is int:
        return DEFAULT_INT
    if d is bool:
        return DType.bool
    if isinstance(d, str) and d in _BY_SHORT:
        return _BY_SHORT[d]
    return from_numpy(d)


def promote(a: DType, b: DType) -> DType:
    """The common dtype of two tensors (NumPy/PyTorch rules for these five types)."""
    if a == b:
        return a
    ca, cb = _CATEGORY[a], _CATEGORY[b]
    if ca != cb:
        return a if ca > cb else b
    return a if a.itemsize >= b.itemsize else b


def scalar_category(x) -> int:
    if isinstance(x, (bool, np.bool_)):
        return 0
    if isinstance(x, (int, np.integer)):
        return 1
    return 2


def result_dtype(tensor_dtypes: list[DType], scalars: list = (),
                 zero_dim: list[DType] = ()) -> DType:
    """PyTorch's rule (torch.result_type): tensors with dimensions decide; 0-d tensors
    (`zero_dim`) and then Python scalars only count where they raise the category (bool <
    int < float), 0-d tensors with their own width, scalars as the default int or float.

    >>> result_dtype([DType.float32], zero_dim=[DType.float64]).name
    'float32'
    >>> result_dtype([DType.int32], [2.5]).name, result_dtype([DType.int64], zero_dim=[DType.float64]).name
    ('float32', 'float64')
    """
    wrapped = _promote_all([DType.bool if scalar_category(s) == 0 else
                            DEFAULT_INT if scalar_category(s) == 1 else DEFAULT_FLOAT
                            for s in scalars])
    return _combine(_promote_all(tensor_dtypes), _combine(_promote_all(zero_dim), wrapped))


def _promote_all(ds) -> DType | None:
    out = None
    for d in ds:
        out = d if out is None else promote(out, d)
    return out


def _combine(higher: DType | None, lower: DType | None) -> DType | None:
    """c10's combine_categories: the higher-priority group's dtype unless the lower one is of
    a higher category (then the two promote)."""
    if higher is None:
        return lower
    if lower is None or higher.is_float:
        return higher
    if higher == DType.bool or lower.is_float:
        return promote(higher, lower)
    return higher
