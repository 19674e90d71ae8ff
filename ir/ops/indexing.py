"""Data-dependent indexing: `gather` (PyTorch's `torch.gather`) and its adjoint `scatter_add`;
`index` and `index_put` (PyTorch's advanced indexing `x[i, j]` and `x[i, j] = v`).

    gather(x, index)                 -> scatter_add(g, index)   (index gets no cotangent)
    scatter_add(src, index)          -> gather(h, index)
    index(x, i...)                   -> index_put(zeros, g, i..., accumulate=True)
    index_put(x, v, i...)            -> x: g with the written positions zeroed (g itself when
                                        accumulating); v: index(g, i...), zero for a value
                                        a later duplicate overwrote

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

from ..errors import DTypeError, KilnIndexError, ShapeError
from ..registry import OpDef, P, apply, register
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
        raise KilnIndexError(f"{op}: index {bad} is out of bounds for dimension {axis} with "
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


# ---- advanced indexing: `x[i, j]` and `x[i, j] = v` over consecutive axes ---------------------
# NOTE: PyTorch's aten::index / aten::index_put. `index(x, i_0, ..., i_{k-1}, axis=a)` reads
# x[:, ..., :, i_0, ..., i_{k-1}] with the k index tensors on axes a .. a+k-1 (one shape B,
# broadcast by the frontend): out.shape = x.shape[:a] + B + x.shape[a+k:]. The frontend
# permutes axes first where NumPy's rules put B elsewhere. Negative indices count from the
# end; an index outside [-size, size) raises PyTorch's IndexError, naming the index tensor's
# position ("dimension j"), in eager and compiled code alike.
def _check_indices(op: str, x: TensorType, indices, axis: int) -> tuple:
    """The indices' common shape B, after checking dtypes, shapes and the axes they take."""
    if not indices:
        raise ShapeError(f"{op}: needs at least one index tensor")
    for i in indices:
        if not i.dtype.is_int:
            raise DTypeError(f"{op}: index tensors must be i32 or i64, got {i}")
        if i.shape != indices[0].shape:
            raise ShapeError(f"{op}: index tensors {rules.fmt(indices)} differ in shape; "
                             "insert `expand`")
    if not 0 <= axis or axis + len(indices) > x.rank:
        raise ShapeError(f"{op}: {len(indices)} index tensors from axis {axis} do not fit "
                         f"{x}")
    return indices[0].shape


def _indexed_shape(x: TensorType, batch: tuple, axis: int, k: int) -> tuple:
    return x.shape[:axis] + tuple(batch) + x.shape[axis + k:]


def _index_infer(types, attrs):
    x, indices = types[0], types[1:]
    batch = _check_indices("index", x, indices, attrs.axis)
    return [x.with_shape(_indexed_shape(x, batch, attrs.axis, len(indices)))]


def _index_put_infer(types, attrs):
    x, v, indices = types[0], types[1], types[2:]
    batch = _check_indices("index_put", x, indices, attrs.axis)
    want = _indexed_shape(x, batch, attrs.axis, len(indices))
    if v.shape != want or v.dtype != x.dtype:
        raise ShapeError(f"index_put: values {v} must be {x.with_shape(want)} to fill "
                         f"the indexed part of {x}")
    if attrs.accumulate:
        rules.need_numeric("index_put", x)
    return [x]


def _key(shape, indices, axis: int) -> tuple:
    """A NumPy index for x[:, ..., i_0, ..., i_k-1], negatives wrapped, bounds checked."""
    key = [slice(None)] * axis
    for j, i in enumerate(indices):
        size = shape[axis + j]
        if i.size and (i.min() < -size or i.max() >= size):
            bad = i.min() if i.min() < -size else i.max()
            raise KilnIndexError(f"index {bad} is out of bounds for dimension {j} with "
                                 f"size {size}")
        key.append(np.where(i < 0, i + size, i))
    return tuple(key)


def _index_ref(xs, a):
    x, indices = xs[0], xs[1:]
    return x[_key(x.shape, indices, a.axis)]


def _index_put_ref(xs, a):
    x, v, indices = xs[0], xs[1], xs[2:]
    out = x.copy()
    key = _key(x.shape, indices, a.axis)
    if a.accumulate:
        np.add.at(out, key, v)
    else:
        out[key] = v        # NOTE: duplicate positions: the last value wins, as PyTorch's CPU
    return out


def _index_vjp(c, g):
    x, indices = c.inputs[0], c.inputs[1:]
    gx = P.index_put(P.zeros_like(x), g, *indices, axis=c.attrs.axis, accumulate=True)
    return [gx] + [None] * len(indices)


def _winners(values, indices, x_shape, axis: int):
    """bool of values' shape: True where that value is the one index_put kept (the last of
    the values written to one position), so an overwritten value gets no gradient."""
    from ..dtypes import DType
    k, batch = len(indices), tuple(indices[0].shape)
    n = int(np.prod(batch, dtype=np.int64))
    order = P.reshape(P.arange_like(values, n), shape=batch)
    slots = apply("full", [], {"value": -1, "shape": tuple(x_shape[axis:axis + k]),
                               "dtype": DType.int64}, like=values)
    owner = P.index(P.index_put(slots, order, *indices, axis=0, accumulate=False), *indices,
                    axis=0)
    won = P.eq(owner, order)
    rest = len(values.shape) - axis - len(batch)
    won = P.reshape(won, shape=(1,) * axis + batch + (1,) * rest)
    return P.expand(won, shape=tuple(values.shape))


def _index_put_vjp(c, g):
    v, indices, a = c.inputs[1], c.inputs[2:], c.attrs
    gx = gv = None
    if c.needs[0]:
        gx = g if a.accumulate else P.index_put(g, P.zeros_like(v), *indices, axis=a.axis,
                                                accumulate=False)
    if c.needs[1]:
        gv = P.index(g, *indices, axis=a.axis)
        if not a.accumulate:
            gv = P.where(_winners(v, indices, g.shape, a.axis), gv, P.zeros_like(gv))
    return [gx, gv] + [None] * len(indices)


register(OpDef("index", "movement", -1, {"axis": "int"}, _index_infer, _index_ref, _index_vjp,
               doc="x[:, ..., i_0, ..., i_k-1]: k index tensors (one shape) on axes "
                   "axis .. axis+k-1 (PyTorch's advanced indexing)."))
register(OpDef("index_put", "movement", -1, {"axis": "int", "accumulate": "bool"},
               _index_put_infer, _index_put_ref, _index_put_vjp,
               doc="x with x[:, ..., i_0, ..., i_k-1] set to (or, accumulate, added) values; "
                   "duplicate positions: the last value wins (or all add up)."))
