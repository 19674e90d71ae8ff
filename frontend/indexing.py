"""Basic indexing: ints, slices (step >= 1), None and Ellipsis, as `slice` + `reshape`."""
from __future__ import annotations

from kiln.ir.errors import NotSupportedError, ShapeError
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

from .functional import reshape
from .tensor import Tensor


def _expand_ellipsis(index: tuple, ndim: int) -> tuple:
    n_ell = sum(1 for i in index if i is Ellipsis)
    if n_ell > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')", loc=user_loc())
    used = sum(1 for i in index if i is not None and i is not Ellipsis)
    if used > ndim:
        raise ShapeError(f"too many indices for tensor of dimension {ndim}", loc=user_loc())
    if n_ell:
        k = index.index(Ellipsis)
        return index[:k] + (slice(None),) * (ndim - used) + index[k + 1:]
    return index + (slice(None),) * (ndim - used)


def getitem(x: Tensor, index) -> Tensor:
    """`x[1]`, `x[:, 1:5:2]`, `x[..., None]`, `x[-1]`."""
    if not isinstance(index, tuple):
        index = (index,)
    for i in index:
        if isinstance(i, (Tensor, list)) or (hasattr(i, "shape") and not isinstance(i, int)):
            raise NotSupportedError("not supported yet: advanced (tensor or list) indexing",
                                    loc=user_loc())
    index = _expand_ellipsis(index, x.ndim)
    starts, stops, steps, out_shape = [], [], [], []
    axis = 0
    for i in index:
        if i is None:
            out_shape.append(1)
            continue
        size = x.shape[axis]
        if isinstance(i, slice):
            start, stop, step = i.indices(size)
            if step < 1:
                raise NotSupportedError("not supported yet: slices with a negative step "
                                        "(PyTorch does not allow them either)", loc=user_loc())
            stop = max(stop, start)
            n = (stop - start + step - 1) // step
            out_shape.append(n)
        else:
            k = int(i)
            if not -size <= k < size:
                raise ShapeError(f"index {k} is out of bounds for dimension {axis} with "
                                 f"size {size}", loc=user_loc())
            start, stop, step = k % size, k % size + 1, 1
        starts.append(start)
        stops.append(stop)
        steps.append(step)
        axis += 1
    out = x
    if (tuple(starts), tuple(stops)) != ((0,) * x.ndim, tuple(x.shape)) or any(
            s != 1 for s in steps):
        out = apply("slice", [x], {"starts": tuple(starts), "stops": tuple(stops),
                                   "steps": tuple(steps)})
    return reshape(out, tuple(out_shape))


def setitem(x: Tensor, index, value) -> None:
    """`x[index] = value`: a write into the view `x[index]` (basic indexing)."""
    from .inplace import INPLACE
    INPLACE["copy_"](getitem(x, index), value)
