"""Data-dependent indexing: `gather` (PyTorch's `torch.gather`) and its adjoint `scatter_add`.

    gather(x, index)                 -> scatter_add(g, index)   (index gets no cotangent)
    scatter_add(src, index)          -> gather(h, index)

`gather(x, index, axis)[i][j][k] = x[i][index[i][j][k]][k]` for axis 1, and so on; `index` has
x's rank and no larger a size than x on the other axes. `scatter_add` adds `src` into zeros of
`shape` at the same positions. Indices must lie in [0, size): both references check that on
every call, so a bad class label or token id fails loudly in eager and compiled code alike.

    >>> import numpy as np
    >>> from kiln.ir import get_op
    >>> op = get_op("gather")
    >>> x, idx = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1], [0]])
    >>> op.ref([x, idx], op.make_attrs({"axis": 1})).tolist()
    [[2.0], [3.0]]
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..registry import OpDef, P, register
from ..types import TensorType
from . import rules


def _check_index(op: str, index: TensorType, shape, axis: int):
    """index is integer, has the rank of `shape`, and is no larger off `axis`."""
    if not index.dtype.is_int:
        raise DTypeError(f"{op}: index must be i32 or i64, got {index}")
    if index.rank != len(shape):
        raise ShapeError(f"{op}: index {index} must have the rank of {list(shape)}")
    if not 0 <= axis < max(len(shape), 1):
        raise ShapeError(f"{op}: axis {axis} is out of range for shape {list(shape)}")
    for d, (i, s) in enumerate(zip(index.shape, shape)):
        if d != axis and i > s:
            raise ShapeError(f"{op}: index {index} is larger than {list(shape)} on axis {d} "
                             f"(only the gathered axis {axis} may differ)")


def _gather_infer(types, attrs):
    x, index = types
    _check_index("gather", index, x.shape, attrs.axis)
    return [x.with_shape(index.shape)]


def _scatter_add_infer(types, attrs):
    src, index = types
    _check_index("scatter_add", index, attrs.shape, attrs.axis)
    rules.need_numeric("scatter_add", src)
    if src.shape != index.shape:
        raise ShapeError(f"scatter_add: src {src} and index {index} must have the same shape")
    return [src.with_shape(attrs.shape)]


def _positions(op: str, index: np.ndarray, size: int, axis: int) -> tuple:
    """Full coordinates for every element of `index`, after a bounds check (PyTorch's
    wording); negative indices are errors, as in `torch.gather`."""
    if index.size and (index.min() < 0 or index.max() >= size):
        bad = index.min() if index.min() < 0 else index.max()
        raise IndexError(f"{op}: index {bad} is out of bounds for dimension {axis} with "
                         f"size {size}")
    grids = list(np.indices(index.shape, sparse=True))
    grids[axis] = index
    return tuple(grids)


def _gather_ref(xs, a):
    x, index = xs
    if x.ndim == 0:
        _positions("gather", index.reshape(1), 1, 0)
        return x.copy()
    return x[_positions("gather", index, x.shape[a.axis], a.axis)]


def _scatter_add_ref(xs, a):
    src, index = xs
    out = np.zeros(a.shape, src.dtype)
    if out.ndim == 0:
        _positions("scatter_add", index.reshape(1), 1, 0)
        return out + src
    np.add.at(out, _positions("scatter_add", index, a.shape[a.axis], a.axis), src)
    return out


register(OpDef("gather", "movement", 2, {"axis": "int"}, _gather_infer, _gather_ref,
               lambda c, g: [P.scatter_add(g, c.inputs[1], shape=c.inputs[0].shape,
                                           axis=c.attrs.axis), None],
               doc="out[..., j, ...] = x[..., index[..., j, ...], ...] along `axis`."))
register(OpDef("scatter_add", "movement", 2, {"shape": "shape", "axis": "int"},
               _scatter_add_infer, _scatter_add_ref,
               lambda c, g: [P.gather(g, c.inputs[1], axis=c.attrs.axis), None],
               doc="Zeros of `shape` plus src added at the positions `index` names "
                   "(gather's adjoint)."))
