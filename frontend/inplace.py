"""In-place tensor updates (`add_`, `mul_`, `zero_`, `copy_`, `+=`, ...).

Kiln never writes into an array: an in-place op computes the result functionally and rebinds
the tensor to it (rebasing its autograd history), so tapes that saved the old value stay right.
"""
from __future__ import annotations

from kiln.ir.errors import KilnError
from kiln.ir.types import user_loc

from . import autograd
from . import functional as F
from .tensor import Tensor
from .trace import GraphBreak, current_trace


def rebind(x: Tensor, result: Tensor) -> Tensor:
    """Make `x` hold `result` (same shape and dtype as x), as an in-place op would."""
    if autograd.is_grad_enabled() and x.is_leaf and x.requires_grad:
        raise KilnError("a leaf Variable that requires grad is being used in an in-place "
                        "operation (wrap it in `with kiln.no_grad():`)", loc=user_loc())
    if current_trace() is not None and x._trace is None:
        raise GraphBreak("not supported yet: in-place update of a tensor from outside the "
                         "@kiln.jit function", loc=user_loc())
    result = F.cast(result, x.dtype)
    if tuple(result.shape) != tuple(x.shape):
        shape = F.broadcast_shapes("in-place op", tuple(result.shape), tuple(x.shape))
        if shape != tuple(x.shape):
            raise KilnError(f"output with shape {list(x.shape)} doesn't match the broadcast "
                            f"shape {list(result.shape)}", loc=user_loc())
        result = F.expand_to(result, tuple(x.shape))
    x._data = result._data
    x._trace = result._trace
    if x._base is not None or x._aliases:
        x._share_data()
    if result.grad_fn is not None:
        x.grad_fn = result.grad_fn
        x._out_index = result._out_index
        x._requires_grad = True
    return x


def _inplace(fn):
    def method(x, *args, **kwargs):
        return rebind(x, fn(x, *args, **kwargs))
    method.__name__ = fn.__name__ + "_"
    return method


def copy_(x: Tensor, src) -> Tensor:
    src = F.as_tensor(src)
    return rebind(x, src if tuple(src.shape) == tuple(x.shape)
                  else F.expand_to(src, tuple(x.shape)))


def fill_(x: Tensor, value) -> Tensor:
    return rebind(x, F.full(tuple(x.shape), value, x.dtype))


def zero_(x: Tensor) -> Tensor:
    return fill_(x, 0)


def _random_(op):
    def fill(x: Tensor, a=0.0, b=1.0) -> Tensor:
        from .creation import rand, randn
        if op == "normal":
            r = randn(tuple(x.shape), dtype=x.dtype) * b + a
        else:
            r = rand(tuple(x.shape), dtype=x.dtype) * (b - a) + a
        return rebind(x, r)
    fill.__name__ = op + "_"
    return fill


INPLACE = {
    "add_": _inplace(F.add), "sub_": _inplace(F.sub), "mul_": _inplace(F.mul),
    "div_": _inplace(F.div), "pow_": _inplace(F.pow), "clamp_": _inplace(F.clamp),
    "neg_": _inplace(F.neg), "exp_": _inplace(F.exp), "sqrt_": _inplace(F.sqrt),
    "relu_": _inplace(F.relu), "copy_": copy_, "fill_": fill_, "zero_": zero_,
    "normal_": _random_("normal"), "uniform_": _random_("uniform"),
    "__iadd__": _inplace(F.add), "__isub__": _inplace(F.sub), "__imul__": _inplace(F.mul),
    "__itruediv__": _inplace(F.div),
}


def detach_(x: Tensor) -> Tensor:
    x.grad_fn = None
    x._requires_grad = False
    return x
