"""Scans and sorting along one axis: `cumsum`, `cumprod` and `argsort`.

They run as reference steps in compiled code (no scalar lowering: an element depends on its
neighbours). `sort`, `topk` and friends are composites: `argsort`, then `gather` of the values,
so their gradients flow through gather's VJP (a scatter back to the sorted positions).

    >>> import numpy as np
    >>> from kiln.ir import get_op
    >>> op = get_op("argsort")
    >>> op.ref([np.array([3.0, 1.0, 3.0, 2.0])],
    ...        op.make_attrs({"axis": 0, "descending": True})).tolist()
    [0, 2, 3, 1]
"""
from __future__ import annotations

import numpy as np

from ..dtypes import DType
from ..registry import NOT_DIFFERENTIABLE, OpDef, P, register
from . import rules


def _check_axis(op: str, t, axis: int):
    """`axis` names an axis of t; a 0-d tensor takes axis 0 (a scan over one element)."""
    if t.rank or axis != 0:
        rules.check_axes(op, t, (axis,))


def _scan_infer(name):
    def infer(types, attrs):
        t = types[0]
        _check_axis(name, t, attrs.axis)
        rules.need_numeric(name, t)
        return [t]
    return infer


def _along(a, axis: int):
    """NumPy's axis for an array that may be 0-d (a scan over a scalar is the scalar)."""
    return axis if a.ndim else None


def _cumsum_ref(xs, a):
    x = xs[0]
    return np.cumsum(x, axis=_along(x, a.axis), dtype=x.dtype).reshape(x.shape)


def _cumprod_ref(xs, a):
    x = xs[0]
    return np.cumprod(x, axis=_along(x, a.axis), dtype=x.dtype).reshape(x.shape)


def reverse_cumsum(g, axis: int):
    """sum_{j >= i} g[j] along `axis`: cumsum's adjoint."""
    if not len(g.shape):
        return g
    flipped = P.flip(g, axes=(axis,))
    return P.flip(P.cumsum(flipped, axis=axis), axes=(axis,))


def _cumsum_vjp(c, g):
    return [reverse_cumsum(g, c.attrs.axis)]


def _moved_last(x, axis: int):
    """x with `axis` moved last, and the permutation that undoes it."""
    rank = len(x.shape)
    perm = tuple(d for d in range(rank) if d != axis) + (axis,)
    inverse = tuple(perm.index(d) for d in range(rank))
    return P.permute(x, perm=perm), inverse


def _cumprod_vjp(c, g):
    """Exact also where x has zeros (no division): with the axis last and n its size,
    grad[i] = prod(x[:i]) * sum_{j >= i} g[j] * prod(x[i+1:j+1]), from an [.., n, n] cumprod
    of x with the entries up to i replaced by 1."""
    x, axis = c.inputs[0], c.attrs.axis
    if not len(x.shape):
        return [g]
    xl, inverse = _moved_last(x, axis)
    gl, _ = _moved_last(g, axis)
    n = xl.shape[-1]
    square = tuple(xl.shape) + (n,)                 # [..., i, k]
    rows = P.expand(P.reshape(P.arange_like(x, n), shape=(n, 1)), shape=(n, n))
    cols = P.expand(P.reshape(P.arange_like(x, n), shape=(1, n)), shape=(n, n))
    after = P.expand(P.gt(cols, rows), shape=square)  # k > i
    xk = P.expand(P.reshape(xl, shape=tuple(xl.shape[:-1]) + (1, n)), shape=square)
    tail = P.cumprod(P.where(after, xk, P.full_like(xk, 1.0)), axis=len(square) - 1)
    gj = P.expand(P.reshape(gl, shape=tuple(gl.shape[:-1]) + (1, n)), shape=square)
    upper = P.expand(P.ge(cols, rows), shape=square)  # j >= i
    weighted = P.where(upper, P.mul(gj, tail), P.zeros_like(tail))
    summed = P.sum(weighted, axes=(len(square) - 1,), keepdim=False)
    return [P.permute(P.mul(_exclusive(xl), summed), perm=inverse)]


def _exclusive(xl):
    """prod(x[:i]) along the last axis: a cumprod of x shifted right by one (a 1 first)."""
    n = xl.shape[-1]
    rank = len(xl.shape)
    ones = P.full_like(P.slice(xl, starts=(0,) * rank, stops=tuple(xl.shape[:-1]) + (1,),
                               steps=(1,) * rank), 1.0)
    shifted = P.concat(ones, P.slice(xl, starts=(0,) * rank,
                                     stops=tuple(xl.shape[:-1]) + (n - 1,),
                                     steps=(1,) * rank), axis=rank - 1)
    return P.cumprod(shifted, axis=rank - 1)


register(OpDef("cumsum", "movement", 1, {"axis": "int"}, _scan_infer("cumsum"), _cumsum_ref,
               _cumsum_vjp, doc="Running sum along `axis` (in the input's dtype)."))
register(OpDef("cumprod", "movement", 1, {"axis": "int"}, _scan_infer("cumprod"),
               _cumprod_ref, _cumprod_vjp,
               doc="Running product along `axis` (in the input's dtype)."))


def _argsort_infer(types, attrs):
    t = types[0]
    _check_axis("argsort", t, attrs.axis)
    return [t.with_dtype(DType.int64)]


def _argsort_ref(xs, a):
    """A stable sort: equal values keep their order, NaN sorts last ascending and first
    descending (PyTorch's order)."""
    x = xs[0]
    if x.ndim == 0:
        return np.zeros((), np.int64)
    if not a.descending:
        return np.argsort(x, axis=a.axis, kind="stable").astype(np.int64)
    # NOTE: a stable ascending sort of the reversed axis, read backwards: ties keep their order
    n = x.shape[a.axis]
    back = np.argsort(np.flip(x, a.axis), axis=a.axis, kind="stable")
    return (n - 1 - np.flip(back, a.axis)).astype(np.int64)


register(OpDef("argsort", "movement", 1, {"axis": "int", "descending": "bool"},
               _argsort_infer, _argsort_ref, NOT_DIFFERENTIABLE,
               doc="Indices that sort along `axis` (stable; NaN last ascending)."))
