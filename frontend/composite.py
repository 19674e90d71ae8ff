"""Composite functions written once, in plain Python over the primitives.

Autograd and the JIT see only primitives, so these need no VJP of their own.
"""
from __future__ import annotations

import math
import warnings

from kiln.ir import dtypes
from kiln.ir.errors import DTypeError, ShapeError
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

from . import functional as F
from . import reductions as R
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
    """labels [...] -> [..., num_classes] with a 1 at each label; a label outside
    [0, num_classes) is an error (the `scatter_add` primitive checks every call)."""
    labels = F.as_tensor(labels)
    shape = tuple(labels.shape) + (int(num_classes),)
    ones = F.full(tuple(labels.shape) + (1,), 1, dtypes.as_dtype(dtype), like=labels)
    return apply("scatter_add", [ones, F.unsqueeze(labels, -1)],
                 {"shape": shape, "axis": len(shape) - 1})


# ---- losses (PyTorch's formulas and reductions) ----------------------------------------------
def _reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return R.mean(loss)
    if reduction == "sum":
        return R.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _warn_size(input: Tensor, target: Tensor):
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input "
                      f"size ({input.shape}). This will likely lead to incorrect results due "
                      "to broadcasting. Please ensure they have the same size.", stacklevel=3)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    _warn_size(input, target)
    diff = input - target
    return _reduce_loss(diff * diff, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    _warn_size(input, target)
    return _reduce_loss(F.abs(input - target), reduction)


def _class_axis(input: Tensor) -> int:
    return 1 if input.ndim > 1 else 0


def _check_class_targets(op: str, input: Tensor, target: Tensor, weight):
    """input [N, C, d...] (or [C]) against integer targets [N, d...] (or [])."""
    if input.ndim == 0:
        raise ShapeError(f"{op}: input must have a class dimension, got a 0-d tensor",
                         loc=user_loc())
    want = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != want:
        raise ShapeError(f"{op}: expected target of shape {list(want)} for input of shape "
                         f"{list(input.shape)}, got {list(target.shape)}", loc=user_loc())
    if not target.dtype.is_int:
        raise DTypeError(f"{op}: expected integer class indices (kiln.int64) as target, got "
                         f"{target.dtype}", loc=user_loc())
    classes = input.shape[_class_axis(input)]
    if weight is not None and tuple(weight.shape) != (classes,):
        raise ShapeError(f"{op}: weight tensor should be defined either for all {classes} "
                         f"classes or no classes but got weight tensor of shape: "
                         f"{list(weight.shape)}", loc=user_loc())


def _class_weights(target: Tensor, keep: Tensor, weight, dtype) -> Tensor:
    """Per-target weight: weight[target] (1 without weights), 0 where the target is ignored."""
    w = F.cast(keep, dtype)
    if weight is None:
        return w
    flat = F.reshape(F.where(keep, target, 0), (-1,))
    picked = apply("gather", [F.cast(weight, dtype), flat], {"axis": 0})
    return w * F.reshape(picked, tuple(target.shape))


def nll_loss(input: Tensor, target: Tensor, weight=None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """-input[n, target[n]] * weight[target[n]], over log-probabilities [N, C, d...] or [C];
    targets equal to ignore_index count for nothing, and "mean" divides by the total weight
    of the targets that count."""
    _check_class_targets("nll_loss", input, target, weight)
    axis = _class_axis(input)
    keep = F.ne(target, ignore_index)
    index = F.unsqueeze(F.where(keep, target, 0), axis)
    picked = F.squeeze(apply("gather", [input, index], {"axis": axis}), axis)
    w = _class_weights(target, keep, weight, input.dtype)
    loss = F.where(keep, F.neg(picked) * w, 0.0)
    if reduction == "mean":
        return R.sum(loss) / R.sum(w)
    return _reduce_loss(loss, reduction)


def _class_view(weight: Tensor, input: Tensor) -> Tensor:
    """weight [C] shaped to broadcast along input's class axis."""
    axis = _class_axis(input)
    return F.reshape(weight, tuple(-1 if i == axis else 1 for i in range(input.ndim)))


def _smoothing_term(logp: Tensor, target: Tensor, weight, ignore_index: int, reduction: str):
    """PyTorch's label-smoothing part: -sum over classes of (weighted) log-probabilities."""
    lw = logp if weight is None else logp * _class_view(weight, logp)
    keep = F.ne(target, ignore_index)
    loss = F.where(keep, F.neg(R.sum(lw, _class_axis(logp))), 0.0)
    if reduction == "mean":
        return R.sum(loss) / R.sum(_class_weights(target, keep, weight, logp.dtype))
    return _reduce_loss(loss, reduction)


def _soft_cross_entropy(logp: Tensor, target: Tensor, weight, reduction: str,
                        label_smoothing: float) -> Tensor:
    """Cross-entropy against class probabilities of the input's shape."""
    if tuple(target.shape) != tuple(logp.shape):
        raise ShapeError(f"cross_entropy: probability targets must have the input's shape "
                         f"{list(logp.shape)}, got {list(target.shape)}", loc=user_loc())
    axis = _class_axis(logp)
    classes = logp.shape[axis]
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / classes
    lw = logp if weight is None else logp * _class_view(weight, logp)
    loss = F.neg(R.sum(lw * target, axis))
    if reduction == "mean":
        return R.sum(loss) / (logp.numel() // classes)
    return _reduce_loss(loss, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight=None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of logits [N, C, d...] (or [C]) against class indices [N, d...] or
    class probabilities [N, C, d...], with PyTorch's weight, ignore_index, label_smoothing
    and reductions."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if input.ndim == 0:
        raise ShapeError("cross_entropy: input must have a class dimension, got a 0-d tensor",
                         loc=user_loc())
    axis = _class_axis(input)
    logp = log_softmax(input, dim=axis)
    if target.dtype.is_float:
        return _soft_cross_entropy(logp, target, weight, reduction, label_smoothing)
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    if label_smoothing == 0:
        return nll
    smooth = _smoothing_term(logp, target, weight, ignore_index, reduction)
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / input.shape[axis])


def binary_cross_entropy(input: Tensor, target: Tensor, weight=None,
                         reduction: str = "mean") -> Tensor:
    """-(t log(x) + (1 - t) log(1 - x)), each log clamped at -100 as in PyTorch."""
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Using a target size ({target.shape}) that is different to the "
                         f"input size ({input.shape}) is deprecated. Please ensure they have "
                         "the same size.")
    log_x = F.clamp(F.log(input), min=-100.0)
    log_1mx = F.clamp(F.log(1.0 - input), min=-100.0)
    loss = F.neg(target * log_x + (1.0 - target) * log_1mx)
    if weight is not None:
        loss = loss * weight
    return _reduce_loss(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight=None,
                                     reduction: str = "mean", pos_weight=None) -> Tensor:
    """BCE of sigmoid(input), in the stable form (1 - t) x + w_t softplus(-x), where
    softplus(-x) = max(-x, 0) + log(1 + exp(-|x|)) never overflows."""
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Target size ({target.shape}) must be the same as input size "
                         f"({input.shape})")
    # NOTE: `maximum` (not relu) splits a tie at x = 0 evenly, so the gradient there is
    # sigmoid(0) - t = 0.5 - t like PyTorch's, e.g. for zero-initialized logits.
    softplus_neg = F.maximum(F.neg(input), 0.0) + F.log(F.exp(F.neg(F.abs(input))) + 1.0)
    if pos_weight is not None:
        softplus_neg = softplus_neg * ((pos_weight - 1.0) * target + 1.0)
    loss = (1.0 - target) * input + softplus_neg
    if weight is not None:
        loss = loss * weight
    return _reduce_loss(loss, reduction)
