"""Composite functions written once, in plain Python over the primitives.

Autograd and the JIT see only primitives, so these need no VJP of their own.
"""
from __future__ import annotations

import math

from kiln.ir import dtypes
from kiln.ir.errors import ShapeError
from kiln.ir.types import user_loc

from . import functional as F
from . import reductions as R
from .creation import arange
from .tensor import Tensor


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x - max) / sum(exp(x - max)) along `dim` (max-subtracted for stability)."""
    shifted = x - R.amax(x, dim, keepdim=True).detach()
    e = F.exp(shifted)
    return e / R.sum(e, dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    shifted = x - R.amax(x, dim, keepdim=True).detach()
    return shifted - F.log(R.sum(F.exp(shifted), dim, keepdim=True))


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    if approximate == "tanh":
        inner = (x + x * x * x * 0.044715) * math.sqrt(2.0 / math.pi)
        return x * 0.5 * (F.tanh(inner) + 1.0)
    return x * 0.5 * (F.erf(x * (1.0 / math.sqrt(2.0))) + 1.0)


def silu(x: Tensor) -> Tensor:
    return x * F.sigmoid(x)


def layer_norm(x: Tensor, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(
        normalized_shape)
    if tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ShapeError(f"layer_norm: normalized_shape {list(shape)} does not match the last "
                         f"dimensions of input shape {list(x.shape)}", loc=user_loc())
    dims = tuple(range(x.ndim - len(shape), x.ndim))
    mu = R.mean(x, dims, keepdim=True)
    centered = x - mu
    var = R.mean(centered * centered, dims, keepdim=True)
    out = centered * F.rsqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def one_hot(labels: Tensor, num_classes: int, dtype=dtypes.float32) -> Tensor:
    classes = arange(num_classes)
    return F.cast(F.eq(F.unsqueeze(labels, -1), classes), dtype)


def _reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return R.mean(loss)
    if reduction == "sum":
        return R.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction")


def cross_entropy(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of (N, C) logits against class indices (N,) or probabilities (N, C)."""
    logp = log_softmax(logits, dim=1 if logits.ndim > 1 else 0)
    if target.dtype.is_float:
        return _reduce_loss(-R.sum(target * logp, 1), reduction)
    if logits.ndim != 2 or target.ndim != 1 or target.shape[0] != logits.shape[0]:
        raise ShapeError(f"cross_entropy: expected logits [N, C] and targets [N], got "
                         f"{list(logits.shape)} and {list(target.shape)}", loc=user_loc())
    picked = R.sum(logp * one_hot(target, logits.shape[1], logp.dtype), 1)
    return _reduce_loss(-picked, reduction)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    diff = input - target
    return _reduce_loss(diff * diff, reduction)
