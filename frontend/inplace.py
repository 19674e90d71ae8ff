"""In-place tensor updates (`add_`, `mul_`, `zero_`, `copy_`, `+=`, `t[i] = v`, ...).

The new value is computed out of place, then written into the tensor's storage, so its base
and every other view see it (PyTorch's model). The storage's version counter goes up, which
lets autograd refuse a backward through a value saved before the write. Inside `@kiln.jit`
the write is a `copy_` node, which the functionalize pass turns into pure ops and write-backs.
"""
from __future__ import annotations

import numpy as np

from kiln.ir.errors import KilnError
from kiln.ir.types import user_loc

from . import autograd, views
from . import functional as F
from .tensor import Tensor
from .trace import current_trace


def rebind(x: Tensor, result: Tensor) -> Tensor:
    """Write `result` (broadcast and cast to x's shape and dtype) into x's storage."""
    _check_inplace_allowed(x)
    result = _conform(x, result)
    track = autograd.is_grad_enabled() and (
        result._requires_grad or x._requires_grad
        or (x._base is not None and x._base._requires_grad))
    new_base = views.write_base_value(x, result) if track and x._base is not None else None
    _write(x, result)
    if track:
        _rebase(x, result, new_base)
    return x


def _check_inplace_allowed(x: Tensor) -> None:
    views.check_writable(x)
    if not autograd.is_grad_enabled():
        return
    if x.is_leaf and x._requires_grad:
        raise KilnError("a leaf Variable that requires grad is being used in an in-place "
                        "operation (wrap it in `with kiln.no_grad():`)", loc=user_loc())
    if x._base is not None and x._base.is_leaf and x._base._requires_grad:
        raise KilnError("a view of a leaf Variable that requires grad is being used in an "
                        "in-place operation (wrap it in `with kiln.no_grad():`)",
                        loc=user_loc())


def _conform(x: Tensor, result: Tensor) -> Tensor:
    if x.is_cuda != result.is_cuda:
        result = result.to(x.device)    # NOTE: copy_ across devices; its gradient goes back
    result = F.cast(result, x.dtype)
    if result._requires_grad and result.grad_fn is None and autograd.is_grad_enabled():
        # NOTE: a leaf written into x: x's history is a copy of it, not the leaf itself
        result = F.clone(result)
    if tuple(result.shape) != tuple(x.shape):
        shape = F.broadcast_shapes("in-place op", tuple(result.shape), tuple(x.shape))
        if shape != tuple(x.shape):
            raise KilnError(f"output with shape {list(x.shape)} doesn't match the broadcast "
                            f"shape {list(result.shape)}", loc=user_loc())
        result = F.expand_to(result, tuple(x.shape))
    return result


def _write(x: Tensor, result: Tensor) -> None:
    trace = current_trace()
    if trace is not None:
        trace.builder.emit("copy_", [trace.value_of(x), trace.value_of(result)], {},
                           user_loc())
    elif type(x._data) is np.ndarray and type(result._data) is np.ndarray:
        np.copyto(x._data, result._data)
    else:
        _write_across_devices(x, result)
    x._version[0] += 1


def _write_across_devices(x: Tensor, result: Tensor) -> None:
    """A write into or from a CUDA tensor (`copy_` copies across devices, as PyTorch's)."""
    from . import cuda_eager
    if x.is_cuda:
        cuda_eager.refuse_write(x)
        cuda_eager.check_fresh(result)
        cuda_eager.device_write(x._data, result._data)
    else:
        cuda_eager.check_fresh(result)
        np.copyto(x._data, cuda_eager.host_array(result))


def _rebase(x: Tensor, result: Tensor, new_base) -> None:
    """x's autograd history after the write: result's (a view's base gets new_base's)."""
    if new_base is not None:
        base = x._base
        _take_history(base, new_base)
    _take_history(x, result)
    x._view_version = x._version[0]


def _take_history(t: Tensor, value: Tensor) -> None:
    if value._requires_grad:
        t.grad_fn, t._out_index, t._requires_grad = value.grad_fn, value._out_index, True
    elif t._requires_grad:
        # NOTE: the write replaced every value t had: nothing flows back through t's old
        # history (PyTorch's FillBackward gives zeros; Kiln gives no gradient, the same sum).
        t.grad_fn = autograd.cut_history(t)


def _inplace(fn):
    def method(x, *args, **kwargs):
        if autograd.is_grad_enabled() and (x._requires_grad or any(
                isinstance(a, Tensor) and a._requires_grad for a in args)):
            # NOTE: the op's gradient may read x as it was (relu_, mul_ by a tensor that
            # requires grad): compute from a copy, as PyTorch saves `original_self`, so the
            # write into x below does not invalidate it
            x_before = F.clone(x)
        else:
            x_before = x
        return rebind(x, fn(x_before, *args, **kwargs))
    method.__name__ = fn.__name__ + "_"
    return method


def copy_(x: Tensor, src) -> Tensor:
    src = F.as_tensor(src)
    return rebind(x, src if tuple(src.shape) == tuple(x.shape)
                  else F.expand_to(src, tuple(x.shape)))


def masked_fill_(x: Tensor, mask, value) -> Tensor:
    return rebind(x, F.where(mask, value, x))


def fill_(x: Tensor, value) -> Tensor:
    return rebind(x, F.full(tuple(x.shape), value, x.dtype, like=x))


def zero_(x: Tensor) -> Tensor:
    return fill_(x, 0)


INPLACE = {
    "add_": _inplace(F.add), "sub_": _inplace(F.sub), "mul_": _inplace(F.mul),
    "div_": _inplace(F.div), "pow_": _inplace(F.pow), "clamp_": _inplace(F.clamp),
    "neg_": _inplace(F.neg), "exp_": _inplace(F.exp), "sqrt_": _inplace(F.sqrt),
    "relu_": _inplace(F.relu), "copy_": copy_, "fill_": fill_, "zero_": zero_,
    "masked_fill_": masked_fill_,
    "abs_": _inplace(F.abs), "log_": _inplace(F.log), "tanh_": _inplace(F.tanh),
    "floor_": _inplace(F.floor), "ceil_": _inplace(F.ceil), "trunc_": _inplace(F.trunc),
    "round_": _inplace(F.round), "frac_": _inplace(F.frac),
    "sigmoid_": _inplace(F.sigmoid), "rsqrt_": _inplace(F.rsqrt), "erf_": _inplace(F.erf),
    "__iadd__": _inplace(F.add), "__isub__": _inplace(F.sub), "__imul__": _inplace(F.mul),
    "__itruediv__": _inplace(F.div), "__ipow__": _inplace(F.pow),
    "floor_divide_": _inplace(F.floor_divide), "remainder_": _inplace(F.remainder),
    "__ifloordiv__": _inplace(F.floor_divide), "__imod__": _inplace(F.remainder),
    "bitwise_and_": _inplace(F.bitwise_and), "bitwise_or_": _inplace(F.bitwise_or),
    "bitwise_xor_": _inplace(F.bitwise_xor), "bitwise_not_": _inplace(F.bitwise_not),
    "__iand__": _inplace(F.bitwise_and), "__ior__": _inplace(F.bitwise_or),
    "__ixor__": _inplace(F.bitwise_xor), "sin_": _inplace(F.sin), "cos_": _inplace(F.cos),
    "log1p_": _inplace(F.log1p), "expm1_": _inplace(F.expm1),
    "clamp_min_": _inplace(F.clamp_min), "clamp_max_": _inplace(F.clamp_max),
    "tril_": _inplace(lambda x, diagonal=0: _composite().tril(x, diagonal)),
    "triu_": _inplace(lambda x, diagonal=0: _composite().triu(x, diagonal)),
}


def _composite():
    from . import composite
    return composite


def detach_(x: Tensor) -> Tensor:
    x.grad_fn = None
    x._requires_grad = False
    return x
