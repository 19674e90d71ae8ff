"""Ops that make tensors: full, constant, arange, and seeded random numbers."""
from __future__ import annotations

import numpy as np

from ..dtypes import DType
from ..errors import DTypeError, ShapeError
from ..registry import NOT_DIFFERENTIABLE, OpDef, register
from ..types import TensorType
from . import rules



def _full_infer(types, attrs):
    if any(d < 0 for d in attrs.shape):
        raise ShapeError(f"full: negative size in shape {list(attrs.shape)}")
    rules.check_value_fits("full", attrs.value, attrs.dtype)
    return [TensorType(attrs.dtype, attrs.shape)]


register(OpDef("full", "source", 0, {"value": "scalar", "shape": "shape", "dtype": "dtype"},
               _full_infer, lambda xs, a: np.full(a.shape, a.value, a.dtype.np),
               NOT_DIFFERENTIABLE, doc="A tensor of `shape` filled with `value`."))


def _flat(data):
    if isinstance(data, (list, tuple)):
        for x in data:
            yield from _flat(x)
    else:
        yield data


def _constant_infer(types, attrs):
    for x in _flat(attrs.data):
        rules.check_value_fits("constant", x, attrs.dtype)
    arr = np.array(attrs.data, dtype=attrs.dtype.np)
    if arr.shape != attrs.shape:
        raise ShapeError(f"constant: data has shape {list(arr.shape)}, attribute says "
                         f"{list(attrs.shape)}")
    return [TensorType(attrs.dtype, attrs.shape)]


register(OpDef("constant", "source", 0, {"data": "data", "shape": "shape", "dtype": "dtype"},
               _constant_infer,
               lambda xs, a: np.array(a.data, dtype=a.dtype.np).reshape(a.shape),
               NOT_DIFFERENTIABLE, doc="A small literal tensor written in the IR."))


def _arange_len(a) -> int:
    n = int(np.ceil((a.stop - a.start) / a.step)) if a.step else -1
    return max(n, 0)


def _arange_infer(types, attrs):
    if attrs.step == 0:
        raise ShapeError("arange: step must not be zero")
    return [TensorType(attrs.dtype, (_arange_len(attrs),))]


register(OpDef("arange", "source", 0,
               {"start": "scalar", "stop": "scalar", "step": "scalar", "dtype": "dtype"},
               _arange_infer,
               lambda xs, a: (a.start + a.step * np.arange(_arange_len(a))).astype(a.dtype.np),
               NOT_DIFFERENTIABLE, doc="start, start+step, ... below stop."))


def _random_infer(types, attrs):
    seed = types[0]
    if seed.dtype != DType.int64 or seed.shape != ():
        raise DTypeError(f"random: the seed must be i64[], got {seed}")
    if not attrs.dtype.is_float:
        raise DTypeError(f"random: dtype must be floating point, got {attrs.dtype}")
    return [TensorType(attrs.dtype, attrs.shape)]


def _generator(seed) -> np.random.Generator:
    # NOTE: a counter-based generator keyed by the seed value: the same seed gives the same
    # numbers in eager mode, the interpreter and compiled code.
    return np.random.Generator(np.random.Philox(key=int(seed) & (2**64 - 1)))


_RANDOM = {"shape": "shape", "dtype": "dtype"}
register(OpDef("random_normal", "random", 1, _RANDOM, _random_infer,
               lambda xs, a: _generator(xs[0]).standard_normal(a.shape).astype(a.dtype.np),
               NOT_DIFFERENTIABLE, doc="Standard normal numbers drawn from the seed input."))
register(OpDef("random_uniform", "random", 1, _RANDOM, _random_infer,
               lambda xs, a: _generator(xs[0]).random(a.shape).astype(a.dtype.np),
               NOT_DIFFERENTIABLE, doc="Uniform numbers in [0, 1) drawn from the seed input."))
