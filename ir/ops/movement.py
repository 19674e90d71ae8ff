"""Movement ops: reshape, permute, expand, slice (and its adjoint unslice), concat."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..registry import OpDef, P, register
from ..types import TensorType
from . import rules


# NOTE: reshape, permute, expand and slice are views, as in PyTorch: their `view` rule gives
# the output's strides and offset over the input's storage, and eager mode builds the output
# as a NumPy view with exactly those strides, so an in-place op on either one is seen by both.
# The functionalize pass reads the same rules to turn writes through views into pure ops.


def _reshape_view(shape, strides, offset, attrs):
    new = rules.reshape_strides(shape, strides, attrs.shape)
    return None if new is None else (new, offset)


def _permute_view(shape, strides, offset, attrs):
    return tuple(strides[p] for p in attrs.perm), offset


def _expand_unview(before, new, attrs):
    raise ShapeError("unsupported operation: a write into an expanded view (several elements "
                     "share one memory location); clone() it first")


def _expand_view(shape, strides, offset, attrs):
    lead = len(attrs.shape) - len(shape)
    out = [0] * lead
    for d, s, n in zip(shape, strides, attrs.shape[lead:]):
        out.append(0 if d == 1 and n != 1 else s)
    return tuple(out), offset


def _slice_view(shape, strides, offset, attrs):
    offset += sum(a * s for a, s in zip(attrs.starts, strides))
    return tuple(s * k for s, k in zip(strides, attrs.steps)), offset


def _reshape_infer(types, attrs):
    t = types[0]
    if any(d < 0 for d in attrs.shape):
        raise ShapeError(f"reshape: target shape {list(attrs.shape)} has a negative size")
    out = t.with_shape(attrs.shape)
    if out.numel != t.numel:
        raise ShapeError(f"reshape: cannot reshape {t} ({t.numel} elements) to "
                         f"{list(attrs.shape)} ({out.numel} elements)")
    return [out]


register(OpDef("reshape", "movement", 1, {"shape": "shape"}, _reshape_infer,
               lambda xs, a: np.reshape(xs[0], a.shape),
               lambda c, g: [P.reshape(g, shape=c.inputs[0].shape)],
               doc="Same elements in row-major order, new shape.", view=_reshape_view,
               unview=lambda before, new, a: P.reshape(new, shape=tuple(before.shape))))


def _permute_infer(types, attrs):
    t = types[0]
    if sorted(attrs.perm) != list(range(t.rank)):
        raise ShapeError(f"permute: {list(attrs.perm)} is not a permutation of the "
                         f"{t.rank} axes of {t}")
    return [t.with_shape(tuple(t.shape[p] for p in attrs.perm))]


def _inverse(perm) -> tuple:
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return tuple(inverse)


def _permute_vjp(c, g):
    return [P.permute(g, perm=_inverse(c.attrs.perm))]


register(OpDef("permute", "movement", 1, {"perm": "ints"}, _permute_infer,
               lambda xs, a: np.transpose(xs[0], a.perm),
               _permute_vjp, doc="Reorder axes: out.shape[i] = x.shape[perm[i]].",
               view=_permute_view,
               unview=lambda before, new, a: P.permute(new, perm=_inverse(a.perm))))


def _expand_infer(types, attrs):
    rules.check_broadcastable("expand", types[0].shape, attrs.shape)
    return [types[0].with_shape(attrs.shape)]


register(OpDef("expand", "movement", 1, {"shape": "shape"}, _expand_infer,
               lambda xs, a: np.broadcast_to(xs[0], a.shape),
               lambda c, g: [P.sum_to(g, c.inputs[0].shape)],
               doc="Broadcast to `shape` (NumPy rules; leading axes may be added).",
               view=_expand_view, unview=_expand_unview))

_SLICE = {"starts": "ints", "stops": "ints", "steps": "ints"}


def _check_slice(op, shape, starts, stops, steps):
    if not len(starts) == len(stops) == len(steps) == len(shape):
        raise ShapeError(f"{op}: starts/stops/steps need one entry per axis of "
                         f"{list(shape)}")
    for ax, (d, a, b, s) in enumerate(zip(shape, starts, stops, steps)):
        if s < 1 or not 0 <= a <= d or not a <= b <= d:
            raise ShapeError(f"{op}: axis {ax} of {list(shape)}: slice {a}:{b}:{s} must have "
                             "0 <= start <= stop <= size and step >= 1")


def _slice_infer(types, attrs):
    t = types[0]
    _check_slice("slice", t.shape, attrs.starts, attrs.stops, attrs.steps)
    shape = tuple(rules.slice_len(a, b, s)
                  for a, b, s in zip(attrs.starts, attrs.stops, attrs.steps))
    return [t.with_shape(shape)]


def _slices(a):
    return tuple(slice(x, y, s) for x, y, s in zip(a.starts, a.stops, a.steps))


register(OpDef("slice", "movement", 1, _SLICE, _slice_infer,
               lambda xs, a: xs[0][_slices(a)],
               lambda c, g: [P.unslice(g, shape=c.inputs[0].shape, starts=c.attrs.starts,
                                       stops=c.attrs.stops, steps=c.attrs.steps)],
               doc="x[start:stop:step] on every axis (normalized, step >= 1).", view=_slice_view,
               unview=lambda before, new, a: P.slice_update(
                   before, new, starts=a.starts, stops=a.stops, steps=a.steps)))


def _unslice_infer(types, attrs):
    t = types[0]
    _check_slice("unslice", attrs.shape, attrs.starts, attrs.stops, attrs.steps)
    want = tuple(rules.slice_len(a, b, s)
                 for a, b, s in zip(attrs.starts, attrs.stops, attrs.steps))
    if want != t.shape:
        raise ShapeError(f"unslice: input {t} does not fill slice of shape {list(want)}")
    return [t.with_shape(attrs.shape)]


def _unslice_ref(xs, a):
    out = np.zeros(a.shape, xs[0].dtype)
    out[_slices(a)] = xs[0]
    return out


register(OpDef("unslice", "movement", 1, dict(shape="shape", **_SLICE), _unslice_infer,
               _unslice_ref,
               lambda c, g: [P.slice(g, starts=c.attrs.starts, stops=c.attrs.stops,
                                     steps=c.attrs.steps)],
               doc="Zeros of `shape` with the input written at the slice (slice's adjoint)."))


def _slice_update_infer(types, attrs):
    t, v = types
    _check_slice("slice_update", t.shape, attrs.starts, attrs.stops, attrs.steps)
    want = tuple(rules.slice_len(a, b, s)
                 for a, b, s in zip(attrs.starts, attrs.stops, attrs.steps))
    if v.shape != want or v.dtype != t.dtype:
        raise ShapeError(f"slice_update: the update {v} does not fill slice "
                         f"{t.dtype.value}{list(want)} of {t}")
    return [t]


def _slice_update_ref(xs, a):
    out = xs[0].copy()
    out[_slices(a)] = xs[1]
    return out


def _slice_update_vjp(c, g):
    window = dict(starts=c.attrs.starts, stops=c.attrs.stops, steps=c.attrs.steps)
    gx = P.slice_update(g, P.zeros_like(c.inputs[1]), **window) if c.needs[0] else None
    gv = P.slice(g, **window) if c.needs[1] else None
    return [gx, gv]


register(OpDef("slice_update", "movement", 2, _SLICE, _slice_update_infer, _slice_update_ref,
               _slice_update_vjp,
               doc="x with its slice [start:stop:step] replaced by the second operand (a write "
                   "into a view, made pure by the functionalize pass)."))


def _diagonal_infer(types, attrs):
    t = types[0]
    if t.rank < 2:
        raise ShapeError(f"diagonal: needs at least 2 dimensions, got {t}")
    return [t.with_shape(t.shape[:-2] + (min(t.shape[-2:]),))]


def _diagonal_view(shape, strides, offset, attrs):
    return tuple(strides[:-2]) + (strides[-2] + strides[-1],), offset


def _diagonal_mask(like, shape):
    """bool[..., n, m]: True at (i, i) (built from aranges: no n*m literal in the IR)."""
    n, m = shape[-2:]
    rows = P.reshape(P.arange_like(like, n), shape=(n, 1))
    cols = P.reshape(P.arange_like(like, m), shape=(1, m))
    hit = P.eq(P.expand(rows, shape=(n, m)), P.expand(cols, shape=(n, m)))
    return P.expand(hit, shape=tuple(shape))


def diagonal_scatter(before, new):
    """`before` (..., n, m) with its main diagonal replaced by `new` (..., min(n, m))."""
    shape = tuple(before.shape)
    n, m = shape[-2:]
    k = min(n, m)
    lead = tuple(new.shape[:-1])
    column = P.reshape(new, shape=lead + ((k, 1) if n <= m else (1, k)))
    return P.where(_diagonal_mask(before, shape), P.expand(column, shape=shape), before)


def _diagonal_vjp(c, g):
    return [diagonal_scatter(P.zeros_like(c.inputs[0]), g)]


register(OpDef("diagonal", "movement", 1, {}, _diagonal_infer,
               lambda xs, a: np.diagonal(xs[0], axis1=-2, axis2=-1), _diagonal_vjp,
               doc="The main diagonal of the last two axes (a view), appended as the last "
                   "axis.", view=_diagonal_view,
               unview=lambda before, new, a: diagonal_scatter(before, new)))


def _concat_infer(types, attrs):
    first = types[0]
    ax = attrs.axis
    if not 0 <= ax < first.rank:
        raise ShapeError(f"concat: axis {ax} out of range for {first}")
    for t in types[1:]:
        other = t.shape[:ax] + t.shape[ax + 1:]
        if t.rank != first.rank or other != first.shape[:ax] + first.shape[ax + 1:]:
            raise ShapeError(f"concat: shapes {rules.fmt(types)} differ off axis {ax}")
        if t.dtype != first.dtype:
            raise ShapeError(f"concat: dtypes differ ({rules.fmt(types)})")
    size = sum(t.shape[ax] for t in types)
    return [TensorType(first.dtype, first.shape[:ax] + (size,) + first.shape[ax + 1:],
                       first.device)]


def _concat_vjp(c, g):
    ax, out, start = c.attrs.axis, [], 0
    for x, need in zip(c.inputs, c.needs):
        stop = start + x.shape[ax]
        if need:
            starts = tuple(start if i == ax else 0 for i in range(len(g.shape)))
            stops = tuple(stop if i == ax else d for i, d in enumerate(g.shape))
            out.append(P.slice(g, starts=starts, stops=stops, steps=(1,) * len(g.shape)))
        else:
            out.append(None)
        start = stop
    return out


register(OpDef("concat", "movement", -1, {"axis": "int"}, _concat_infer,
               lambda xs, a: np.concatenate(xs, axis=a.axis), _concat_vjp,
               doc="Join tensors along `axis`."))


def _flip_infer(types, attrs):
    t = types[0]
    rules.check_axes("flip", t, attrs.axes)
    return [t]


# NOTE: a copy, not a view (PyTorch's flip copies too: negative strides are not allowed).
register(OpDef("flip", "movement", 1, {"axes": "ints"}, _flip_infer,
               lambda xs, a: np.flip(xs[0], tuple(a.axes)).copy(),
               lambda c, g: [P.flip(g, axes=c.attrs.axes)],
               doc="Reverse the order of elements along `axes` (sorted, distinct)."))
