"""`x[index]` and `x[index] = value` with PyTorch's rules, and the index functions.

Basic indices (ints, slices with step >= 1, None, Ellipsis) make views: `slice` + `reshape`.
Advanced indices (integer tensors, lists, boolean masks) make copies through the registry's
`index` op, and writes through `index_put`, so both are differentiable and compile:

- ints are applied first, as selects (PyTorch's rule, not NumPy's: `x[0, :, [0, 1]]` has shape
  [x.shape[1], 2]); index tensors broadcast together to one shape B;
- B takes the place of the indexed dims when they are adjacent, else it goes first; a 0-d
  index tensor removes its dim like an int (and needs no value: no graph break);
- a boolean mask stands for its `nonzero()` indices over the dims it covers: the result's
  shape depends on the mask's values, so inside `@kiln.jit` reading one is a graph break;
  `x[mask] = value` with a value that does not depend on the count is `where` (no break).

    >>> import kiln
    >>> x = kiln.arange(12).reshape(3, 4)
    >>> x[[0, 2], 1:3]
    tensor([[ 1,  2],
            [ 9, 10]])
    >>> x[x > 9]
    tensor([10, 11])
"""
from __future__ import annotations

import operator

import numpy as np

from kiln.ir import dtypes
from kiln.ir.errors import KilnError, NotSupportedError, ShapeError
from kiln.ir.errors import KilnIndexError
from kiln.ir.registry import apply, get_op
from kiln.ir.types import user_loc

from . import functional as F
from .tensor import Tensor, _attach_loc

_BAD_INDEX = ("only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables "
              "are valid indices (got {})")


class _Mask:
    """A boolean mask index: a bool Tensor, or a NumPy array from a Python list of bools."""

    def __init__(self, value):
        self.value = value
        self.shape = tuple(value.shape)


def _apply(op: str, inputs, attrs) -> Tensor:
    """A registry op whose reference may raise (an index out of range): with the user's line."""
    try:
        return apply(op, inputs, attrs)
    except KilnError as e:
        raise _attach_loc(e) from None


def _on_device_of(x: Tensor, t: Tensor) -> Tensor:
    return t if t.is_cuda == x.is_cuda else t.to(x.device)


def _long_tensor(arr: np.ndarray, x: Tensor) -> Tensor:
    from .creation import tensor
    return tensor(np.asarray(arr, dtype=np.int64), device=x.device)


# ---- parsing an index ------------------------------------------------------------------------
def _as_tuple(index) -> tuple:
    """PyTorch's rule: a short list holding sequences, slices, None or ... is a tuple."""
    if isinstance(index, tuple):
        return index
    if isinstance(index, list) and len(index) < 32 and any(
            i is None or i is Ellipsis or isinstance(i, (slice, list, tuple, Tensor, np.ndarray))
            for i in index):
        return tuple(index)
    return (index,)


def _item(i, x: Tensor):
    """One index entry as None, Ellipsis, slice, int, integer Tensor or _Mask."""
    if i is None or i is Ellipsis or isinstance(i, slice):
        return i
    if isinstance(i, Tensor):
        if i.dtype == dtypes.bool_:
            return _Mask(i)
        if i.dtype.is_int and i.ndim == 0:
            # NOTE: PyTorch's select, a view (x[t][0] = 5 writes x): the index's value is
            # read, which under @kiln.jit is a graph break (replay reads it per call)
            return operator.index(i)
        if i.dtype.is_int:
            return _on_device_of(x, i)
        raise KilnIndexError("tensors used as indices must be long, int, byte or bool tensors",
                             loc=user_loc())
    if isinstance(i, (bool, np.bool_)):
        return _Mask(np.asarray(bool(i)))
    if isinstance(i, (list, tuple, np.ndarray)):
        arr = np.asarray(i)
        if arr.dtype == np.bool_ or arr.dtype == np.uint8 and isinstance(i, np.ndarray):
            return _Mask(arr.astype(np.bool_))     # NOTE: uint8 arrays are masks in PyTorch
        if arr.dtype.kind in "iu" or arr.size == 0:
            return _long_tensor(arr, x)
        raise KilnIndexError(_BAD_INDEX.format(arr.dtype), loc=user_loc())
    if hasattr(i, "__index__"):
        return operator.index(i)
    raise KilnIndexError(_BAD_INDEX.format(type(i).__name__), loc=user_loc())


def _dims_taken(i) -> int:
    if i is None or i is Ellipsis:
        return 0
    return len(i.shape) if isinstance(i, _Mask) else 1


def _parse(x: Tensor, index) -> list:
    """The index as a list of items, the Ellipsis expanded to full slices."""
    items = [_item(i, x) for i in _as_tuple(index)]
    if sum(1 for i in items if i is Ellipsis) > 1:
        raise KilnIndexError("an index can only have a single ellipsis ('...')", loc=user_loc())
    used = sum(_dims_taken(i) for i in items)
    if used > x.ndim:
        raise KilnIndexError(f"too many indices for tensor of dimension {x.ndim}",
                             loc=user_loc())
    fill = [slice(None)] * (x.ndim - used)
    k = next((k for k, i in enumerate(items) if i is Ellipsis), None)
    if k is not None:
        return items[:k] + fill + items[k + 1:]
    return items + fill


def _check_mask(x: Tensor, mask: _Mask, dim: int) -> None:
    for j, size in enumerate(mask.shape):
        if size != x.shape[dim + j]:
            raise KilnIndexError(f"The shape of the mask {list(mask.shape)} at index {j} does "
                                 f"not match the shape of the indexed tensor {list(x.shape)} "
                                 f"at index {dim + j}", loc=user_loc())


def _mask_indices(x: Tensor, mask: _Mask) -> list:
    """The mask's nonzero() positions, one index tensor per dim it covers (a 0-d mask adds a
    dim of size 1: one index [0] into it, or none)."""
    value = mask.value
    if isinstance(value, Tensor):
        value = value._array("boolean mask indexing (the result's shape depends on the mask)")
    if value.ndim == 0:
        return [_OnNewAxis(_long_tensor(np.zeros(int(bool(value)), np.int64), x))]
    return [_long_tensor(p, x) for p in np.nonzero(value)]


def _without_masks(x: Tensor, items: list) -> list:
    out, dim = [], 0
    for i in items:
        if isinstance(i, _Mask):
            _check_mask(x, i, dim)
            out.extend(_mask_indices(x, i))
        else:
            out.append(i)
        dim += _dims_taken(i)
    return out


# ---- basic indexing: views -------------------------------------------------------------------
def _window(item, size: int, dim: int) -> tuple:
    """(start, stop, step, length) of a slice or int on a dim of `size`."""
    if isinstance(item, slice):
        start, stop, step = item.indices(size)
        if step < 1:
            raise NotSupportedError("not supported yet: slices with a negative step "
                                    "(PyTorch does not allow them either)", loc=user_loc())
        stop = max(stop, start)
        return start, stop, step, (stop - start + step - 1) // step
    if not -size <= item < size:
        raise KilnIndexError(f"index {item} is out of bounds for dimension {dim} with size "
                             f"{size}", loc=user_loc())
    return item % size, item % size + 1, 1, None


class _OnNewAxis:
    """An index tensor on a dim that None adds (`x[True]`: a 0-d mask)."""

    def __init__(self, index: Tensor):
        self.index = index


def _index_of(item):
    """The index tensor of an advanced item, or None for a basic one."""
    if isinstance(item, _OnNewAxis):
        return item.index
    return item if isinstance(item, Tensor) else None


def _basic(x: Tensor, items: list, always_view: bool):
    """(y, dims, steps): x with its ints, slices and None applied (index tensors keep their
    dims), the dims of y that the index tensors index, and the view steps from x to y as
    (op, attrs, input) for a write to undo (`_unview`)."""
    starts, stops, steps, shape, tensor_dims = [], [], [], [], []
    dim = 0
    for item in items:
        if _index_of(item) is not None:
            tensor_dims.append(len(shape))
        if item is None or isinstance(item, _OnNewAxis):
            shape.append(1)
            continue
        start, stop, step, n = _window(slice(None) if isinstance(item, Tensor) else item,
                                       x.shape[dim], dim)
        if n is not None:
            shape.append(n)
        starts.append(start)
        stops.append(stop)
        steps.append(step)
        dim += 1
    out, chain = x, []
    if (tuple(starts), tuple(stops)) != ((0,) * x.ndim, tuple(x.shape)) or any(
            s != 1 for s in steps):
        attrs = {"starts": tuple(starts), "stops": tuple(stops), "steps": tuple(steps)}
        chain.append(("slice", attrs, out))
        out = apply("slice", [out], attrs)
    if always_view or tuple(shape) != tuple(out.shape):
        chain.append(("reshape", {"shape": tuple(shape)}, out))
        out = F.reshape(out, tuple(shape))
    return out, tensor_dims, chain


def _unview(chain: list, new: Tensor) -> Tensor:
    """The first input of `chain` with the last step's result replaced by `new` (the view
    ops' registry `unview` rules): a write as a pure function of the tensor written."""
    for op, attrs, before in reversed(chain):
        opdef = get_op(op)
        new = opdef.unview(before, new, opdef.make_attrs(attrs))
    return new


# ---- advanced indexing -----------------------------------------------------------------------
def _broadcast(indices: list) -> list:
    shapes = [tuple(i.shape) for i in indices]
    try:
        batch = np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(str(list(s)) for s in shapes)
        raise KilnIndexError(f"shape mismatch: indexing tensors could not be broadcast "
                             f"together with shapes {listed}", loc=user_loc()) from None
    return [F.expand_to(i, batch) for i in indices]


def _placement(ndim: int, dims: list, indices: list) -> tuple:
    """(perm, axis): permute so the indexed dims are adjacent from `axis` on, where PyTorch
    puts the indexed result: in place when the dims of the non-0-d indices are adjacent once
    the 0-d ones (selects) are gone, else first."""
    rest = [d for d in range(ndim) if d not in dims]
    selects = {d for d, i in zip(dims, indices) if i.ndim == 0}
    kept = [d for d in range(ndim) if d not in selects]
    spread = [kept.index(d) for d in dims if d not in selects]
    anchor = next((d for d in dims if d not in selects), dims[0])
    adjacent = spread == list(range(spread[0], spread[0] + len(spread))) if spread else True
    axis = sum(1 for d in rest if d < anchor) if adjacent else 0
    return tuple(rest[:axis] + list(dims) + rest[axis:]), axis


def _advanced_target(x: Tensor, items: list):
    """(z, indices, axis, chain): the tensor to index (x, or views of it: the steps in
    `chain`), the broadcast index tensors and the first of the adjacent axes they index."""
    items = _without_masks(x, items)
    y, dims, chain = _basic(x, items, always_view=False)
    given = [_index_of(i) for i in items if _index_of(i) is not None]
    perm, axis = _placement(y.ndim, dims, given)
    z = y
    if perm != tuple(range(y.ndim)):
        chain.append(("permute", {"perm": perm}, y))
        z = F.permute(y, perm)
    return z, _broadcast(given), axis, chain


def _is_advanced(items: list) -> bool:
    return any(isinstance(i, (Tensor, _Mask, _OnNewAxis)) for i in items)


def getitem(x: Tensor, index) -> Tensor:
    """`x[1]`, `x[:, 1:5:2]`, `x[..., None]`, `x[idx]`, `x[0, [0, 2]]`, `x[x > 0]`."""
    items = _parse(x, index)
    if not _is_advanced(items):
        return _basic(x, items, always_view=True)[0]
    z, indices, axis, _ = _advanced_target(x, items)
    return _apply("index", [z] + indices, {"axis": axis})


# ---- writes ----------------------------------------------------------------------------------
def _values(value, z: Tensor, shape: tuple) -> Tensor:
    """value as z's dtype on z's device, broadcast to `shape` (PyTorch first drops leading
    dims of size 1)."""
    v = F.cast(_on_device_of(z, F.as_tensor(value)), z.dtype)
    while v.ndim > len(shape) and v.shape[0] == 1:
        v = F.reshape(v, tuple(v.shape[1:]))
    try:
        ok = np.broadcast_shapes(tuple(v.shape), shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(f"shape mismatch: value tensor of shape {list(v.shape)} cannot be "
                         f"broadcast to indexing result of shape {list(shape)}", loc=user_loc())
    return F.expand_to(v, shape)


def _put(z: Tensor, indices: list, axis: int, value, accumulate: bool) -> Tensor:
    batch = tuple(indices[0].shape)
    shape = tuple(z.shape[:axis]) + batch + tuple(z.shape[axis + len(indices):])
    v = _values(value, z, shape)
    return _apply("index_put", [z, v] + indices, {"axis": axis, "accumulate": accumulate})


def _is_full(item) -> bool:
    return isinstance(item, slice) and item == slice(None)


def _mask_fill(x: Tensor, items: list, value):
    """`x[mask] = v` as where(mask, v, x) when v does not depend on the number of True
    entries (a scalar, or a value of the dims after the mask): no nonzero(), no graph break.
    None when the index or value is of another kind."""
    masks = [k for k, i in enumerate(items) if isinstance(i, _Mask)]
    if len(masks) != 1 or not all(_is_full(i) for i in items if not isinstance(i, _Mask)):
        return None
    k = masks[0]
    mask = items[k]
    trailing = tuple(x.shape[k + len(mask.shape):])
    v = F.as_tensor(value) if not F._is_scalar(value) else None
    if v is not None:
        shape = tuple(v.shape)
        while len(shape) > len(trailing) and shape[0] == 1:
            shape = shape[1:]
        if len(shape) > len(trailing) or any(a not in (1, b) for a, b in
                                             zip(shape[::-1], trailing[::-1])):
            return None
        value = F.reshape(v, shape)
    _check_mask(x, mask, k)
    m = mask.value if isinstance(mask.value, Tensor) else F.as_tensor(mask.value)
    m = F.reshape(_on_device_of(x, m), (1,) * k + mask.shape + (1,) * len(trailing))
    return F.where(m, value, x)


def setitem(x: Tensor, index, value) -> None:
    """`x[index] = value`: basic indices write into a view of x; advanced ones compute x with
    the positions replaced (`index_put`; the last of duplicate positions wins) and write
    that into x in place, so autograd and version counters see an in-place op."""
    from .inplace import INPLACE
    items = _parse(x, index)
    if not _is_advanced(items):
        view, _, chain = _basic(x, items, always_view=True)
        if view._copy_of is None:
            INPLACE["copy_"](view, value)
            return
        # NOTE: a CUDA view that is a copy cannot be written into: write x's new value
        new = _values(value, view, tuple(view.shape))
        INPLACE["copy_"](x, _unview(chain, new))
        return
    filled = _mask_fill(x, items, value)
    if filled is not None:
        INPLACE["copy_"](x, filled)
        return
    z, indices, axis, chain = _advanced_target(x, items)
    INPLACE["copy_"](x, _unview(chain, _put(z, indices, axis, value, accumulate=False)))


# ---- index functions (torch.gather, scatter, index_select, ...) -------------------------------
def _int_index(index, x: Tensor, op: str) -> Tensor:
    index = _on_device_of(x, F.as_tensor(index))
    if not index.dtype.is_int:
        raise KilnError(f"{op}(): Expected dtype int64 for index, got {index.dtype}",
                        loc=user_loc())
    return index


def _check_in_range(index: Tensor, size: int, dim: int, message: str | None = None) -> None:
    """Eagerly, PyTorch's error for an index outside [0, size) (negatives included); traced
    indices are checked by the op's reference when the graph runs."""
    if index._trace is not None or index.numel() == 0:
        return
    arr = index._array("index check")
    bad = arr.min() if arr.min() < 0 else arr.max() if arr.max() >= size else None
    if bad is not None:
        raise KilnIndexError(message or f"index {bad} is out of bounds for dimension {dim} "
                             f"with size {size}", loc=user_loc())


def _same_rank(op: str, x: Tensor, index: Tensor) -> None:
    if index.ndim != x.ndim:
        raise ShapeError(f"{op}: Index tensor must have the same number of dimensions as "
                         f"input tensor ({list(index.shape)} vs {list(x.shape)})",
                         loc=user_loc())


def gather(input: Tensor, dim: int, index, *, sparse_grad: bool = False) -> Tensor:
    """out[i][j] = input[i][index[i][j]] for dim 1 (PyTorch's `torch.gather`).

    >>> import kiln
    >>> kiln.tensor([[1, 2], [3, 4]]).gather(1, kiln.tensor([[1, 1], [0, 1]]))
    tensor([[2, 2],
            [3, 4]])
    """
    index = _int_index(index, input, "gather")
    _same_rank("gather", input, index)
    d = F.norm_dim(dim, input.ndim, "gather")
    return _apply("gather", [input, index], {"axis": d})


def _scatter_source(input: Tensor, index: Tensor, src, op: str) -> Tensor:
    """src (a tensor, or a number) cut to index's shape, in input's dtype."""
    if F._is_scalar(src):
        return F.full(tuple(index.shape), src, input.dtype, like=input)
    src = F.cast(_on_device_of(input, F.as_tensor(src)), input.dtype)
    _same_rank(op, src, index)
    if any(i > s for i, s in zip(index.shape, src.shape)):
        raise ShapeError(f"{op}: Expected index {list(index.shape)} to be no larger size "
                         f"than src {list(src.shape)}", loc=user_loc())
    return src[tuple(slice(0, n) for n in index.shape)]


def _coordinates(index: Tensor, dim: int) -> list:
    """Full coordinates of index's elements: index itself on `dim`, positions elsewhere."""
    coords = []
    for a, n in enumerate(index.shape):
        if a == dim:
            coords.append(index)
            continue
        pos = apply("arange", [], {"start": 0, "stop": n, "step": 1,
                                   "dtype": dtypes.int64}, like=index)
        shape = tuple(n if b == a else 1 for b in range(index.ndim))
        coords.append(F.expand_to(F.reshape(pos, shape), tuple(index.shape)))
    return coords


def scatter(input: Tensor, dim: int, index, src=None, value=None, *, reduce=None) -> Tensor:
    """input with input[i][index[i][j]] = src[i][j] for dim 1 (PyTorch's `torch.scatter`; of
    duplicate positions the last write wins). `src` may be a number (or pass `value=`)."""
    src = value if src is None else src
    if reduce == "add":
        return scatter_add(input, dim, index, src)
    if reduce is not None:
        raise NotSupportedError(f"not supported yet: scatter with reduce={reduce!r} (use "
                                "'add', or scatter_add)", loc=user_loc())
    index = _int_index(index, input, "scatter")
    _same_rank("scatter", input, index)
    d = F.norm_dim(dim, input.ndim, "scatter")
    src = _scatter_source(input, index, src, "scatter")
    _check_in_range(index, input.shape[d] if input.ndim else 1, d)
    if index._trace is not None:
        index = _refusing_negatives(index, input.shape[d] if input.ndim else 1, input)
    if input.ndim == 0:
        flat = scatter(F.reshape(input, (1,)), 0, F.reshape(index, (1,)), F.reshape(src, (1,)))
        return F.reshape(flat, ())
    for a, (i, s) in enumerate(zip(index.shape, input.shape)):
        if a != d and i > s:
            raise ShapeError(f"scatter: Expected index {list(index.shape)} to be no larger "
                             f"than self {list(input.shape)} apart from dimension {d}",
                             loc=user_loc())
    return _apply("index_put", [input, src] + _coordinates(index, d),
                  {"axis": 0, "accumulate": False})


def _refusing_negatives(index: Tensor, size: int, like: Tensor) -> Tensor:
    """index itself, read through gather from arange(size): in compiled code that raises
    PyTorch's IndexError for an index outside [0, size), where index_put would wrap
    negatives (`_check_in_range` does it eagerly)."""
    from .creation import arange
    positions = arange(size, device=like.device)
    flat = gather(positions, 0, F.reshape(index, (-1,)))
    return F.reshape(F.cast(flat, index.dtype), tuple(index.shape))


def scatter_add(input: Tensor, dim: int, index, src) -> Tensor:
    """input with src[i][j] added at input[i][index[i][j]] for dim 1 (duplicates add up)."""
    index = _int_index(index, input, "scatter_add")
    _same_rank("scatter_add", input, index)
    d = F.norm_dim(dim, input.ndim, "scatter_add")
    src = _scatter_source(input, index, src, "scatter_add")
    added = _apply("scatter_add", [src, index], {"shape": tuple(input.shape), "axis": d})
    return F.add(input, added)


def index_select(input: Tensor, dim: int, index) -> Tensor:
    """The entries `index` (a vector) of `dim`, in that order.

    >>> import kiln
    >>> kiln.tensor([[1, 2, 3], [4, 5, 6]]).index_select(1, kiln.tensor([2, 0]))
    tensor([[3, 1],
            [6, 4]])
    """
    index = _int_index(index, input, "index_select")
    if index.ndim > 1:
        raise KilnIndexError("index_select(): Index is supposed to be a vector",
                             loc=user_loc())
    d = F.norm_dim(dim, input.ndim, "index_select")
    index = F.reshape(index, (-1,))
    _check_in_range(index, input.shape[d] if input.ndim else 1, d, "index out of range in self")
    if input.ndim == 0:
        return _apply("gather", [input, F.reshape(index, ())], {"axis": 0})
    # NOTE: through `gather`, whose reference refuses negative indices in compiled code too
    shape = tuple(index.shape[0] if a == d else n for a, n in enumerate(input.shape))
    spread = F.reshape(index, tuple(-1 if a == d else 1 for a in range(input.ndim)))
    return _apply("gather", [input, F.expand_to(spread, shape)], {"axis": d})


def index_add(input: Tensor, dim: int, index, source, *, alpha=1) -> Tensor:
    """input with alpha * source[..., j, ...] added at input[..., index[j], ...] on `dim`."""
    index = F.reshape(_int_index(index, input, "index_add"), (-1,))
    d = F.norm_dim(dim, input.ndim, "index_add")
    source = F.cast(_on_device_of(input, F.as_tensor(source)), input.dtype)
    want = tuple(index.shape[0] if a == d else n for a, n in enumerate(input.shape))
    if tuple(source.shape) != want:
        raise ShapeError(f"index_add: source {list(source.shape)} must have shape "
                         f"{list(want)}", loc=user_loc())
    _check_in_range(index, input.shape[d], d, "index out of range in self")
    if alpha != 1:
        source = F.mul(source, alpha)
    spread = F.reshape(index, tuple(-1 if a == d else 1 for a in range(input.ndim)))
    return scatter_add(input, d, F.expand_to(spread, want), source)


def index_put(input: Tensor, indices, values, accumulate: bool = False) -> Tensor:
    """input with input[indices] = values (or `+=`, adding duplicates, when accumulate)."""
    items = _parse(input, tuple(indices))
    z, idx, axis, chain = _advanced_target(input, items)
    return _unview(chain, _put(z, idx, axis, values, accumulate))


def take_along_dim(input: Tensor, indices, dim=None) -> Tensor:
    """gather with indices broadcast against input off `dim` (flattened when dim is None)."""
    indices = _int_index(indices, input, "take_along_dim")
    if dim is None:
        return gather(F.reshape(input, (-1,)), 0, F.reshape(indices, (-1,)))
    _same_rank("take_along_dim", input, indices)
    d = F.norm_dim(dim, input.ndim, "take_along_dim")
    # NOTE: broadcast off `dim` only; along it, indices may be any length and count from the
    # end when negative
    off = [tuple(1 if a == d else n for a, n in enumerate(t.shape)) for t in (input, indices)]
    shape = F.broadcast_shapes("take_along_dim", *off)
    x_shape = tuple(input.shape[a] if a == d else n for a, n in enumerate(shape))
    i_shape = tuple(indices.shape[a] if a == d else n for a, n in enumerate(shape))
    size = input.shape[d]
    indices = F.where(F.lt(indices, 0), indices + size, indices)
    return gather(F.expand_to(input, x_shape), d, F.expand_to(indices, i_shape))


def take(input: Tensor, index) -> Tensor:
    """input flattened, read at `index` (any shape; negative indices count from the end)."""
    index = _int_index(index, input, "take")
    return _apply("index", [F.reshape(input, (-1,)), index], {"axis": 0})


def masked_select(input: Tensor, mask) -> Tensor:
    """The entries of input (broadcast with mask) where mask is True, as a 1-D tensor."""
    mask = _on_device_of(input, F.as_tensor(mask))
    if mask.dtype != dtypes.bool_:
        raise KilnError(f"masked_select: expected BoolTensor for mask, got {mask.dtype}",
                        loc=user_loc())
    shape = F.broadcast_shapes("masked_select", tuple(input.shape), tuple(mask.shape))
    flat_x = F.reshape(F.expand_to(input, shape), (-1,))
    return getitem(flat_x, F.reshape(F.expand_to(mask, shape), (-1,)))


def nonzero(input: Tensor, *, as_tuple: bool = False):
    """Positions of the non-zero entries: int64 [n, ndim], or one [n] tensor per dim
    (as_tuple). The shape depends on the values: inside @kiln.jit this is a graph break."""
    arr = input._array("nonzero()")
    if as_tuple:
        return tuple(_long_tensor(p, input) for p in np.nonzero(np.atleast_1d(arr)))
    return _long_tensor(np.argwhere(arr), input)


def argwhere(input: Tensor) -> Tensor:
    return nonzero(input)


def unique(input: Tensor, sorted: bool = True, return_inverse: bool = False,
           return_counts: bool = False, dim=None):
    """The distinct values (sorted), with the inverse mapping and the counts on request;
    not differentiable. The shape depends on the values: a graph break inside @kiln.jit.

    >>> import kiln
    >>> kiln.tensor([3, 1, 3, 2]).unique(return_counts=True)
    (tensor([1, 2, 3]), tensor([1, 1, 2]))
    """
    from .creation import tensor
    arr = input._array("unique()")
    if dim is None:
        values, inverse, counts = np.unique(arr.reshape(-1), return_inverse=True, equal_nan=False,
                                            return_counts=True)
        inverse = inverse.reshape(arr.shape)
    else:
        d = F.norm_dim(dim, input.ndim, "unique")
        values, inverse, counts = np.unique(arr, axis=d, return_inverse=True, equal_nan=False,
                                            return_counts=True)
        inverse = inverse.reshape(-1)
    out = [tensor(values, dtype=input.dtype, device=input.device)]
    if return_inverse:
        out.append(_long_tensor(inverse, input))
    if return_counts:
        out.append(_long_tensor(counts, input))
    return out[0] if len(out) == 1 else tuple(out)


# ---- Tensor methods --------------------------------------------------------------------------
_FUNCTIONS = {
    "gather": gather, "scatter": scatter, "scatter_add": scatter_add,
    "index_select": index_select, "index_add": index_add, "index_put": index_put,
    "take_along_dim": take_along_dim, "take": take, "masked_select": masked_select,
    "nonzero": nonzero, "argwhere": argwhere, "unique": unique,
}


def install() -> None:
    """Bind the index functions as Tensor methods, with in-place `scatter_`, `scatter_add_`,
    `index_add_` and `index_put_`."""
    from .inplace import _inplace
    for name, fn in _FUNCTIONS.items():
        setattr(Tensor, name, fn)
    for name in ("scatter", "scatter_add", "index_add", "index_put"):
        setattr(Tensor, name + "_", _inplace(_FUNCTIONS[name]))


install()
