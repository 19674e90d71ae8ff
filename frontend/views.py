"""Views: tensors that share their base's storage, as in PyTorch.

A view op (one whose registry declaration has a `view` rule: reshape, permute, expand, slice,
and the traced `detach()`) gives a tensor over the same memory: eagerly a NumPy view with the
rule's strides, under tracing a Value whose strides Kiln tracks, so that a reshape views or
copies under `@kiln.jit` exactly when it would eagerly. A view shares its base's version
counter; a differentiable view also remembers its base and the view ops from it, so that an
in-place write through the view can rebase the base's autograd history (`write_base_value`)
and a view whose base was written can rebuild its own (`refresh_grad_fn`).
"""
from __future__ import annotations

import math

import numpy as np

from kiln.ir.ops.rules import contiguous_strides

from kiln.ir.errors import KilnError
from kiln.ir.registry import apply, get_op
from kiln.ir.types import user_loc

from . import autograd


def view_layout(opdef, x, attrs):
    """(strides, offset) of `opdef` applied to x as a view, or None when it cannot view."""
    return opdef.view(tuple(x.shape), x._elem_strides(), 0, attrs)


def eager_view(opdef, x, attrs, out_type):
    """The view of eager tensor x, or None when this layout cannot be viewed (the caller
    then runs the op's reference, which copies)."""
    from .tensor import Tensor
    layout = view_layout(opdef, x, attrs)
    if layout is None:
        return None
    strides, offset = layout
    arr = x._data
    if offset == 0:
        # NOTE: as_strided keeps the memory of `arr`; the strides come from the op's rule,
        # which only ever names elements of the input.
        size = arr.itemsize
        out = np.lib.stride_tricks.as_strided(arr, out_type.shape, [s * size for s in strides],
                                              writeable=arr.flags.writeable)
    else:
        out = opdef.ref([arr], attrs)   # NOTE: slicing: NumPy's own view at the offset
    view = Tensor._wrap(out)
    _link(x, view, opdef.name, attrs)
    return view


def cuda_alias(opdef, x, attrs, layout, out_type):
    """The view of CUDA tensor x (at `layout`, its view_layout) when it is a contiguous block
    of x (a reshape, squeeze, unsqueeze, a slice of leading rows): the same device memory,
    linked like a CPU view. None otherwise (the caller copies; see frontend/cuda_eager.py)."""
    from .tensor import Tensor
    if x._copy_of is not None:
        return None         # NOTE: a copy standing for a view cannot be viewed again
    strides, offset = layout
    shape = tuple(out_type.shape)
    want = contiguous_strides(shape)
    if any(s != w for s, w, d in zip(strides, want, shape) if d != 1):
        return None
    n = math.prod(shape)
    view = Tensor._wrap(x._data.reshape(-1)[offset:offset + n].reshape(shape))
    _link(x, view, opdef.name, attrs)
    return view


def link_traced(opdef, x, out, attrs) -> None:
    """A traced view: its strides, and its links to the base (when it can view at all)."""
    attrs = out._data.producer.attrs       # NOTE: validated and typed by the builder
    layout = view_layout(opdef, x, attrs)
    if layout is None:
        return
    out._strides = tuple(layout[0])
    _link(x, out, opdef.name, attrs)


def _link(x, view, op: str, attrs) -> None:
    view._version = x._version
    if op == "stop_gradient":
        return      # NOTE: detach() aliases the storage but starts a new autograd history
    root = x._base if x._base is not None else x
    view._base = root
    view._view_ops = x._view_ops + ((op, attrs),) if x._base is not None else ((op, attrs),)
    view._view_version = x._version[0]


def has_internal_overlap(x) -> bool:
    """Several elements of x share one memory location (an expanded tensor; an empty tensor
    has no elements to share one)."""
    shape = x.shape
    return all(d for d in shape) and any(s == 0 and d > 1
                                         for s, d in zip(x._elem_strides(), shape))


def check_writable(x) -> None:
    if has_internal_overlap(x):
        raise KilnError(f"unsupported operation: more than one element of the written-to "
                        f"tensor (shape {list(x.shape)}, an expanded view) refers to a single "
                        "memory location. Please clone() the tensor before performing the "
                        "operation.", loc=user_loc())


def replay(base, view_ops):
    """Apply `view_ops` to `base` again (with autograd): the view's value and history."""
    out = base
    for op, attrs in view_ops:
        out = apply(op, [out], attrs)
    return out


def write_base_value(view, value):
    """The base's value after `value` is written into `view`, as registry ops on the base's
    value before the write (so autograd sees the write as part of the base's history)."""
    chain = [view._base]
    if view.is_cuda != value.is_cuda:
        value = value.to(view.device)   # NOTE: a value from the other device
    for op, attrs in view._view_ops[:-1]:
        chain.append(apply(op, [chain[-1]], attrs))
    new = value
    for (op, attrs), before in zip(reversed(view._view_ops), reversed(chain)):
        new = _unview(op, attrs, before, new)
    return new


def _unview(op: str, attrs, before, new):
    """`before` with its view `op(before)` replaced by `new` (the op's registry rule)."""
    if op == "expand":
        raise KilnError("unsupported operation: an in-place write into an expanded view "
                        "(several elements share one memory location); clone() it first",
                        loc=user_loc())
    return get_op(op).unview(before, new, attrs)


def refresh_grad_fn(t) -> None:
    """t's base was written in place since t's history was made: t's value is now a view of
    the base's new value, so its gradient must flow into the base's new history."""
    base = t._base
    if not autograd.is_grad_enabled() or not base._requires_grad:
        return
    t._view_version = t._version[0]
    fresh = replay(base, t._view_ops)
    t.grad_fn = fresh.grad_fn
    t._out_index = fresh._out_index
    t._requires_grad = fresh._requires_grad
