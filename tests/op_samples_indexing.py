"""Sample inputs of the indexing ops, merged into tests/op_samples.py's table (same `Case`
conventions: seeded inputs inside each op's domain, keyed by op name).

Indices repeat and some are negative, so `index`'s gradient must accumulate duplicates and
wrap negatives; `index_put` without accumulate keeps the last of duplicate values, and only
that value gets a gradient (finite differences see the others change nothing).
"""
from __future__ import annotations

import numpy as np

f64, f32, i64, i32 = np.float64, np.float32, np.int64, np.int32

# id, x dtype, x shape, index dtype, index shape (B), number of index tensors, axis
_INDEX_CONFIGS = (
    ("f64-axis0", f64, (4, 5), i64, (6,), 1, 0),
    ("f64-two-indices-axis1", f64, (3, 4, 5), i64, (2, 3), 2, 1),
    ("f32-i32-index-axis1", f32, (4, 3), i32, (2, 2), 1, 1),
    ("f64-scalar-index", f64, (3, 4), i64, (), 1, 1),
    ("f64-empty-index", f64, (3, 4), i64, (0,), 1, 0),
    ("i64-all-axes", i64, (3, 4), i64, (5,), 2, 0),
)


def _x(g, dtype, shape):
    if dtype == i64:
        return g.ints(i64, shape)
    return g.normal(dtype, shape)


def _indices(g, dtype, shape, batch, k, axis):
    """k index tensors of shape `batch`, each in [-size, size) of the axis it indexes."""
    return [g.ints(dtype, batch, -shape[axis + j], shape[axis + j]) for j in range(k)]


def _index(g):
    return [g.case(id, [_x(g, dt, xs)] + _indices(g, it, xs, b, k, ax), {"axis": ax})
            for id, dt, xs, it, b, k, ax in _INDEX_CONFIGS]


def _index_put(g):
    cases = []
    for id, dt, xs, it, b, k, ax in _INDEX_CONFIGS:
        vs = xs[:ax] + b + xs[ax + k:]
        for accumulate in (False, True):
            name = f"{id}-{'accumulate' if accumulate else 'last-wins'}"
            cases.append(g.case(name, [_x(g, dt, xs), _x(g, dt, vs)]
                                + _indices(g, it, xs, b, k, ax),
                                {"axis": ax, "accumulate": accumulate}))
    x, v, i = g.bools((3, 2)), g.bools((4, 2)), g.ints(i64, (4,), -3, 3)
    cases.append(g.case("bool-last-wins", [x, v, i], {"axis": 0, "accumulate": False}))
    return cases


TABLE: dict = {
    "index": _index,
    "index_put": _index_put,
}
