"""`kiln.nn.init`: PyTorch's weight initializations, with PyTorch's formulas and PyTorch's
calls to the generator (`tensor.uniform_(-bound, bound)`, `tensor.normal_(0, std)`), so after
the same seed a layer starts with exactly PyTorch's weights (tests/nn/test_init_parity.py).

Each function fills its tensor in place without recording gradients and returns it.

    >>> import kiln
    >>> from kiln.nn import init
    >>> w = init.kaiming_uniform_(kiln.zeros(128, 784), a=5 ** 0.5)
    >>> bool(w.abs().max() <= 1 / 784 ** 0.5)
    True
    >>> init.calculate_gain("relu") == 2 ** 0.5
    True
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from kiln.frontend.autograd import no_grad
from kiln.frontend.tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_",
           "zeros_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]

_LINEAR_GAIN = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                "conv_transpose2d", "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table).

    >>> calculate_gain("tanh"), calculate_gain("leaky_relu", 0.2) == (2 / 1.04) ** 0.5
    (1.6666666666666667, True)
    """
    if nonlinearity in _LINEAR_GAIN:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Number) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out): dim 1 and dim 0 times the receptive field (the remaining dims)."""
    if tensor.dim() < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than "
                         "2 dimensions")
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    valid = ["fan_in", "fan_out"]
    if mode not in valid:
        raise ValueError(f"Mode {mode} not supported, please use one of {valid}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """Fill with numbers drawn from U(a, b) (from `generator`, or the default generator)."""
    with no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill with numbers drawn from N(mean, std**2) (from `generator`, or the default one)."""
    with no_grad():
        return tensor.normal_(mean, std, generator=generator)


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator=None) -> Tensor:
    """Fill with numbers drawn from N(mean, std**2) truncated to [a, b], by PyTorch 2.13's
    rejection sampling, with its draws: normals redrawn where they fall outside [a, b] when
    that interval holds more than 30% of the mass, else uniforms on [a, b] accepted against
    the normal density (Kiln's float32 log may differ from PyTorch's in the last bit, which
    could flip an acceptance on a boundary).

    >>> import kiln
    >>> from kiln.nn import init
    >>> w = init.trunc_normal_(kiln.zeros(1000), std=0.02, a=-0.04, b=0.04)
    >>> bool(w.abs().max() <= 0.04), 0.01 < float(w.std()) < 0.03
    (True, True)
    """
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. The "
                      "distribution of values may be incorrect.", stacklevel=2)
    with no_grad():
        if _norm_cdf((b - mean) / std) - _norm_cdf((a - mean) / std) > 0.3:
            result = _redraw_outside(tensor, mean, std, a, b, generator)
        else:
            result = _accept_uniforms(tensor, mean, std, a, b, generator)
        if result is not tensor:
            tensor.copy_(result)
        return tensor


def _norm_cdf(x: float) -> float:
    return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0


def _redraw_outside(tensor: Tensor, mean, std, a, b, generator) -> Tensor:
    from kiln.frontend import functional as F
    lo, hi = (float(np.array(v, dtype=tensor.dtype.np)) for v in (a, b))
    result = tensor.normal_(mean, std, generator=generator)
    while True:
        outside = (result < lo) | (result > hi)
        if not bool(outside.any()):
            return result
        fresh = F.full(tuple(tensor.shape), 0.0, tensor.dtype).normal_(mean, std,
                                                                        generator=generator)
        result = F.where(outside, fresh, result)


def _accept_uniforms(tensor: Tensor, mean, std, a, b, generator) -> Tensor:
    from kiln.frontend import functional as F
    log_peak = -0.5 * ((max(a, min(mean, b)) - mean) / std) ** 2

    def log_density(x):
        return ((x - mean) / std) ** 2 * -0.5 - log_peak

    def accepted_not(candidates):
        u = F.full(tuple(tensor.shape), 0.0, tensor.dtype).uniform_(generator=generator)
        return F.log(u) > log_density(candidates)

    result = tensor.uniform_(a, b, generator=generator)
    pending = accepted_not(result)
    while bool(pending.any()):
        candidates = F.full(tuple(tensor.shape), 0.0, tensor.dtype).uniform_(
            a, b, generator=generator)
        result = F.where(pending, candidates, result)
        pending = F.where(pending, accepted_not(candidates), pending)
    return result


def constant_(tensor: Tensor, val: float) -> Tensor:
    with no_grad():
        return tensor.fill_(val)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def _kaiming_std(tensor: Tensor, a, mode: str, nonlinearity: str) -> float:
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def _empty(tensor: Tensor) -> bool:
    if tensor.numel() == 0:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """U(-bound, bound) with bound = gain * sqrt(3 / fan) (He et al., 2015)."""
    if _empty(tensor):
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """N(0, std**2) with std = gain / sqrt(fan) (He et al., 2015)."""
    if _empty(tensor):
        return tensor
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def default_layer_init_(weight: Tensor, bias: Tensor | None) -> None:
    """PyTorch's `reset_parameters` for Linear and ConvNd: kaiming_uniform_(a=sqrt(5)) for the
    weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _calculate_fan_in_and_fan_out(weight)
        if fan_in > 0:
            bound = 1 / math.sqrt(fan_in)
            uniform_(bias, -bound, bound)
