"""Matrix product. Batch dimensions must already match (the frontend expands them)."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..registry import OpDef, P, register
from . import rules


def _infer(types, attrs):
    a, b = types
    if a.rank < 2 or b.rank < 2 or a.rank != b.rank:
        raise ShapeError(f"matmul: operands must have equal rank >= 2, got {rules.fmt(types)}"
                         "; the frontend handles 1-D and broadcasting")
    if a.shape[:-2] != b.shape[:-2]:
        raise ShapeError(f"matmul: batch dimensions differ ({rules.fmt(types)})")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: inner dimensions differ: {a} @ {b} "
                         f"({a.shape[-1]} != {b.shape[-2]})")
    if a.dtype != b.dtype:
        rules.same_types("matmul", [a, b.with_shape(a.shape)])
    rules.need_numeric("matmul", a)
    return [a.with_shape(a.shape[:-1] + b.shape[-1:])]


def transpose_last(x):
    perm = tuple(range(len(x.shape) - 2)) + (len(x.shape) - 1, len(x.shape) - 2)
    return P.permute(x, perm=perm)


def _vjp(c, g):
    a, b = c.inputs
    ga = P.matmul(g, transpose_last(b)) if c.needs[0] else None
    gb = P.matmul(transpose_last(a), g) if c.needs[1] else None
    return [ga, gb]


register(OpDef("matmul", "matmul", 2, {}, _infer,
               lambda xs, a: np.matmul(xs[0], xs[1]), _vjp,
               doc="[..., m, k] @ [..., k, n] -> [..., m, n]."))
