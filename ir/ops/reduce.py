"""Reductions over sorted, distinct axes, with keepdim."""
from __future__ import annotations

import numpy as np

from ..dtypes import DType
from ..errors import ShapeError
from ..registry import NOT_DIFFERENTIABLE, OpDef, P, register
from . import rules

_AXES = {"axes": "ints", "keepdim": "bool"}


def _infer(name, float_only=False):
    def infer(types, attrs):
        t = types[0]
        rules.check_axes(name, t, attrs.axes)
        if float_only:
            rules.need_float(name, t)
        else:
            rules.need_numeric(name, t)
        if name in ("max", "min"):
            for a in attrs.axes:
                if t.shape[a] == 0:
                    raise ShapeError(f"{name}: cannot reduce over empty axis {a} of {t}")
        return [t.with_shape(rules.reduced_shape(t.shape, attrs.axes, attrs.keepdim))]
    return infer


def _sum_vjp(c, g):
    x = c.inputs[0]
    return [P.unreduce(g, x.shape, c.attrs.axes, c.attrs.keepdim)]


def _mean_vjp(c, g):
    x = c.inputs[0]
    n = 1
    for a in c.attrs.axes:
        n *= x.shape[a]
    return [P.unreduce(P.scale(g, 1.0 / n), x.shape, c.attrs.axes, c.attrs.keepdim)]


def _extreme_vjp(c, g):
    """Ties share the cotangent evenly (like PyTorch's amax/amin)."""
    x = c.inputs[0]
    axes, keep = c.attrs.axes, c.attrs.keepdim
    hit = P.cast(P.eq(x, P.unreduce(c.out, x.shape, axes, keep)), dtype=x.dtype)
    count = P.sum(hit, axes=axes, keepdim=True)
    share = P.div(P.reshape(g, shape=P.keepdim_shape(x.shape, axes)), count)
    return [P.mul(hit, P.expand(share, shape=x.shape))]


def _tuple_axes(a):
    return tuple(a.axes)


register(OpDef("sum", "reduce", 1, _AXES, _infer("sum"),
               lambda xs, a: np.sum(xs[0], axis=_tuple_axes(a), keepdims=a.keepdim,
                                    dtype=xs[0].dtype),
               _sum_vjp, doc="Sum over `axes`."))
register(OpDef("mean", "reduce", 1, _AXES, _infer("mean", float_only=True),
               lambda xs, a: np.mean(xs[0], axis=_tuple_axes(a), keepdims=a.keepdim,
                                     dtype=xs[0].dtype),
               _mean_vjp, doc="Mean over `axes`."))
register(OpDef("max", "reduce", 1, _AXES, _infer("max"),
               lambda xs, a: np.max(xs[0], axis=_tuple_axes(a), keepdims=a.keepdim),
               _extreme_vjp, doc="Maximum over `axes`."))
register(OpDef("min", "reduce", 1, _AXES, _infer("min"),
               lambda xs, a: np.min(xs[0], axis=_tuple_axes(a), keepdims=a.keepdim),
               _extreme_vjp, doc="Minimum over `axes`."))


def _argmax_infer(types, attrs):
    t = types[0]
    rules.need_numeric("argmax", t)
    rules.check_axes("argmax", t, (attrs.axis,))
    if t.shape[attrs.axis] == 0:
        raise ShapeError(f"argmax: cannot reduce over empty axis {attrs.axis} of {t}")
    shape = rules.reduced_shape(t.shape, (attrs.axis,), attrs.keepdim)
    return [t.with_shape(shape).with_dtype(DType.int64)]


register(OpDef("argmax", "reduce", 1, {"axis": "int", "keepdim": "bool"}, _argmax_infer,
               lambda xs, a: np.argmax(xs[0], axis=a.axis, keepdims=a.keepdim)
               .astype(np.int64),
               NOT_DIFFERENTIABLE, doc="Index of the first maximum along `axis`."))
