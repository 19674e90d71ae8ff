"""`kiln.nn.functional` (`F`): the layers' operations as functions, with PyTorch's names,
signatures and defaults. Each is a composite of registry ops, so autograd and @kiln.jit see
through it.

    >>> import kiln
    >>> import kiln.nn.functional as F
    >>> F.relu(kiln.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    >>> F.cross_entropy(kiln.zeros(2, 4), kiln.tensor([0, 3])).item() == kiln.log(
    ...     kiln.tensor(4.0)).item()
    True
"""
from __future__ import annotations

import warnings

from kiln.frontend import composite as C
from kiln.frontend import functional as K
from kiln.frontend import reductions as R
from kiln.frontend.autograd import no_grad
from kiln.frontend.creation import rand_like
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes
from kiln.ir.errors import DTypeError, NotSupportedError, ShapeError
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

try:    # NOTE: convolution and pooling live in their own files (kiln/nn/conv.py, pooling.py)
    from .conv import conv2d  # noqa: F401
    from .pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d  # noqa: F401
except ModuleNotFoundError as e:     # pragma: no cover - only while those files are missing
    if e.name not in ("kiln.nn.conv", "kiln.nn.pooling"):
        raise


# ---- activations -----------------------------------------------------------------------------
def _maybe_inplace(input: Tensor, out: Tensor, inplace: bool) -> Tensor:
    return input.copy_(out) if inplace else out


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, K.relu(input), inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    out = K.where(K.gt(input, 0), input, input * negative_slope)
    return _maybe_inplace(input, out, inplace)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError("approximate argument must be either none or tanh.")
    return C.gelu(input, approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return _maybe_inplace(input, C.silu(input), inplace)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha * (exp(x) - 1) otherwise.

    >>> import kiln
    >>> [round(v, 4) for v in elu(kiln.tensor([-1.0, 0.0, 2.0])).tolist()]
    [-0.6321, 0.0, 2.0]
    """
    # NOTE: exp of x only where x <= 0: the branch where() drops must stay finite, or its
    # zero cotangent times an infinite exp(x) would make the gradient NaN. A where, not a
    # minimum, so x = 0 gets the whole gradient alpha as in PyTorch (minimum splits ties).
    positive = K.gt(input, 0)
    negative = K.expm1(K.where(positive, 0.0, input)) * alpha
    return _maybe_inplace(input, K.where(positive, input, negative), inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold (PyTorch's
    rule, for stability).

    >>> import kiln
    >>> [round(v, 4) for v in softplus(kiln.tensor([-1.0, 0.0, 30.0])).tolist()]
    [0.3133, 0.6931, 30.0]
    """
    scaled = input * beta
    linear = K.gt(scaled, threshold)
    # NOTE: clamped where linear so the dropped branch never overflows (see elu)
    soft = K.log1p(K.exp(K.where(linear, float(threshold), scaled))) / beta
    return K.where(linear, input, soft)


def sigmoid(input: Tensor) -> Tensor:
    return K.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    return K.tanh(input)


def _softmax_dim(name: str, ndim: int) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  "to include dim=X as an argument.", stacklevel=4)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim=None, _stacklevel: int = 3, dtype=None) -> Tensor:
    if dtype is not None:
        input = K.cast(input, dtype)
    return C.softmax(input, _softmax_dim("softmax", input.ndim) if dim is None else dim)


def log_softmax(input: Tensor, dim=None, _stacklevel: int = 3, dtype=None) -> Tensor:
    if dtype is not None:
        input = K.cast(input, dtype)
    dim = _softmax_dim("log_softmax", input.ndim) if dim is None else dim
    return C.log_softmax(input, dim)


# ---- dropout, linear -------------------------------------------------------------------------
def dropout(input: Tensor, p: float = 0.5, training: bool = True,
            inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only)."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return _maybe_inplace(input, input * 0.0, inplace)
    # NOTE: PyTorch's CPU dropout: noise = empty_like(input).bernoulli_(1 - p), which keeps
    # an element where a float64 uniform is < 1 - p (the same draws, so the same mask for
    # the same seed, eager or jitted); then noise / (1 - p), then input * noise.
    from kiln.frontend.creation import rand
    from kiln.ir import dtypes
    u = rand(tuple(input.shape), dtype=dtypes.float64, device=input.device)
    noise = K.cast(K.lt(u, 1.0 - p), input.dtype) / (1.0 - p)
    return _maybe_inplace(input, input * noise, inplace)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias, for input [..., in_features] and weight [out, in]."""
    if weight.ndim != 2 or input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        rows = input.numel() // max(input.shape[-1], 1) if input.ndim else 1
        cols = input.shape[-1] if input.ndim else 1
        raise ShapeError(f"linear: mat1 and mat2 shapes cannot be multiplied ({rows}x{cols} "
                         f"and {'x'.join(map(str, reversed(weight.shape)))}): input "
                         f"{list(input.shape)}, weight {list(weight.shape)}", loc=user_loc())
    if input.ndim > 2:
        # NOTE: one 2-D matmul instead of broadcasting the weight over the batch axes.
        flat = K.reshape(input, (-1, input.shape[-1]))
        out = K.reshape(K.matmul(flat, K.transpose(weight, 0, 1)),
                        tuple(input.shape[:-1]) + (weight.shape[0],))
    else:
        out = K.matmul(input, K.transpose(weight, 0, 1))
    return out if bias is None else out + bias


# ---- normalization ---------------------------------------------------------------------------
def _verify_batch_size(input: Tensor):
    if input.numel() // input.shape[1] == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"size {input.shape}")


def _check_channels(input: Tensor, **stats):
    for name, t in stats.items():
        if t is not None and t.numel() != input.shape[1]:
            raise ShapeError(f"batch_norm: {name} should contain {input.shape[1]} elements "
                             f"not {t.numel()}", loc=user_loc())


def _update_running(running: Tensor, batch: Tensor, momentum: float):
    """running = momentum * batch + (1 - momentum) * running, in place (PyTorch's formula)."""
    with no_grad():
        running.copy_(K.reshape(batch.detach(), tuple(running.shape)) * momentum
                      + running * (1.0 - momentum))


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dim 1) by batch statistics (training) or the running ones.

    In training the biased variance normalizes and the unbiased one (n / (n - 1)) updates
    running_var, as in PyTorch."""
    if input.ndim < 2:
        raise ShapeError(f"batch_norm: expected an input with a channel dimension (N, C, ...), "
                         f"got shape {list(input.shape)}", loc=user_loc())
    _check_channels(input, running_mean=running_mean, running_var=running_var,
                    weight=weight, bias=bias)
    shape = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    if training:
        _verify_batch_size(input)
        axes = (0,) + tuple(range(2, input.ndim))
        n = input.numel() // input.shape[1]
        mean = R.mean(input, axes, keepdim=True)
        centered = input - mean
        var_sum = R.sum(centered * centered, axes, keepdim=True)
        var = var_sum / n
        if running_mean is not None:
            _update_running(running_mean, mean, momentum)
        if running_var is not None:
            _update_running(running_var, var_sum / (n - 1), momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var must be given when "
                             "training=False")
        centered = input - K.reshape(running_mean, shape)
        var = K.reshape(running_var, shape)
    out = centered * K.rsqrt(var + eps)
    if weight is not None:
        out = out * K.reshape(weight, shape)
    return out if bias is None else out + K.reshape(bias, shape)


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    return C.layer_norm(input, normalized_shape, weight, bias, eps)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize each group of num_groups channels (dim 1) per sample by its mean and biased
    variance, then scale and shift per channel.

    >>> import kiln
    >>> y = group_norm(kiln.tensor([[1.0, 3.0, 5.0, 9.0]]), 2)
    >>> [round(v, 4) for v in y.flatten().tolist()]
    [-1.0, 1.0, -1.0, 1.0]
    """
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise ShapeError(f"group_norm: expected an input (N, C, ...) whose number of channels "
                         f"is divisible by num_groups, but got input of shape "
                         f"{list(input.shape)} and num_groups={num_groups}", loc=user_loc())
    channels = input.shape[1]
    _check_affine("group_norm", channels, weight=weight, bias=bias)
    grouped = K.reshape(input, (input.shape[0], num_groups, -1))
    centered = grouped - R.mean(grouped, -1, keepdim=True)
    var = R.mean(centered * centered, -1, keepdim=True)
    out = K.reshape(centered * K.rsqrt(var + eps), tuple(input.shape))
    shape = (1, channels) + (1,) * (input.ndim - 2)
    if weight is not None:
        out = out * K.reshape(weight, shape)
    return out if bias is None else out + K.reshape(bias, shape)


def _check_affine(op: str, channels: int, **params):
    for name, t in params.items():
        if t is not None and tuple(t.shape) != (channels,):
            raise ShapeError(f"{op}: expected {name} of shape [{channels}] (one per "
                             f"channel), got {list(t.shape)}", loc=user_loc())


# ---- embedding, one_hot ----------------------------------------------------------------------
def _padding_index(padding_idx, num: int):
    if padding_idx is None:
        return None
    if not -num <= padding_idx < num:
        raise ValueError("Padding_idx must be within num_embeddings")
    return padding_idx % num


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm=None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> Tensor:
    """Rows of `weight` [num_embeddings, dim] picked by integer `input`: [..., dim]. Rows at
    padding_idx get no gradient."""
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotSupportedError("not supported yet: embedding with max_norm, "
                                "scale_grad_by_freq or sparse", loc=user_loc())
    if not input.dtype.is_int:
        raise DTypeError(f"embedding: expected integer indices (kiln.int64 or kiln.int32), "
                         f"got {input.dtype}", loc=user_loc())
    if weight.ndim != 2:
        raise ShapeError(f"embedding: 'weight' must be 2-D, got shape {list(weight.shape)}",
                         loc=user_loc())
    padding_idx = _padding_index(padding_idx, weight.shape[0])
    flat = K.reshape(input, (-1,))
    index = K.expand(K.unsqueeze(flat, 1), (flat.shape[0], weight.shape[1]))
    rows = apply("gather", [weight, index], {"axis": 0})
    if padding_idx is not None:
        # NOTE: the same values, but the padding rows come from a detached copy: no gradient.
        rows = K.where(K.unsqueeze(K.ne(flat, padding_idx), 1), rows, rows.detach())
    return K.reshape(rows, tuple(input.shape) + (weight.shape[1],))


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 [..., num_classes]; num_classes=-1 means max(tensor) + 1 (reads the values)."""
    if not tensor.dtype.is_int:
        raise DTypeError("one_hot is only applicable to index tensor of type LongTensor.",
                         loc=user_loc())
    if num_classes == -1:
        if tensor.numel() == 0:
            raise ValueError("Can not infer total number of classes from empty tensor.")
        num_classes = int(R.amax(tensor).item()) + 1
    return C.one_hot(tensor, num_classes, dtypes.int64)


# ---- losses ----------------------------------------------------------------------------------
def legacy_reduction(size_average, reduce, reduction: str = "mean") -> str:
    """PyTorch's mapping of the deprecated size_average/reduce flags onto `reduction`."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    out = "mean" if size_average and reduce else ("sum" if reduce else "none")
    warnings.warn(f"size_average and reduce args will be deprecated, please use "
                  f"reduction='{out}' instead.", stacklevel=3)
    return out


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean"):
    return C.mse_loss(input, target, legacy_reduction(size_average, reduce, reduction))


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean"):
    return C.l1_loss(input, target, legacy_reduction(size_average, reduce, reduction))


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean"):
    return C.nll_loss(input, target, weight, ignore_index,
                      legacy_reduction(size_average, reduce, reduction))


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100,
                  reduce=None, reduction: str = "mean", label_smoothing: float = 0.0):
    return C.cross_entropy(input, target, weight, ignore_index,
                           legacy_reduction(size_average, reduce, reduction), label_smoothing)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean"):
    return C.binary_cross_entropy(input, target, weight,
                                  legacy_reduction(size_average, reduce, reduction))


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction: str = "mean", pos_weight=None):
    return C.binary_cross_entropy_with_logits(
        input, target, weight, legacy_reduction(size_average, reduce, reduction), pos_weight)


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False):
    """KL(target || exp(input)) pointwise: target * (log(target) - input), 0 where
    target is 0 (or exp(target) * (target - input) when log_target). "batchmean" divides
    the sum by the batch size, the true KL divergence; "mean" divides by every element.

    >>> import kiln
    >>> logq = kiln.log(kiln.tensor([[0.5, 0.5]]))
    >>> round(kl_div(logq, kiln.tensor([[1.0, 0.0]]), reduction="batchmean").item(), 4)
    0.6931
    """
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce, reduction)
    elif reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and "
                      "the support size.'batchmean' divides only by the batch size, and "
                      "aligns with the KL div math definition.'mean' will be changed to "
                      "behave the same as 'batchmean' in the next major release.",
                      stacklevel=2)
    if log_target:
        pointwise = K.exp(target) * (target - input)
    else:
        # NOTE: xlogy(t, t): log of 1 where t is 0, so neither the value nor the gradient
        # of the dropped branch is NaN.
        positive = K.gt(target, 0)
        pointwise = target * K.log(K.where(positive, target, 1.0)) - target * input
    if reduction == "batchmean":
        total = R.sum(pointwise)
        return total / input.shape[0] if input.ndim else total
    return C._reduce_loss(pointwise, reduction)


def _broadcast_pair(op: str, input: Tensor, target: Tensor):
    C._warn_size(input, target)
    shape = K.broadcast_shapes(op, tuple(input.shape), tuple(target.shape))
    return K.expand_to(input, shape), K.expand_to(target, shape)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0):
    """0.5 * d**2 / beta where |d| < beta, |d| - 0.5 * beta elsewhere (d = input - target).

    >>> import kiln
    >>> smooth_l1_loss(kiln.tensor([0.5, 3.0]), kiln.zeros(2), reduction="none").tolist()
    [0.125, 2.5]
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    if beta == 0:
        return l1_loss(input, target, reduction=reduction)
    input, target = _broadcast_pair("smooth_l1_loss", input, target)
    d = K.abs(input - target)
    pointwise = K.where(K.lt(d, beta), d * d * (0.5 / beta), d - 0.5 * beta)
    return C._reduce_loss(pointwise, reduction)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0, weight=None):
    """0.5 * d**2 where |d| < delta, delta * (|d| - 0.5 * delta) elsewhere; each element
    times `weight` (input's shape) when given.

    >>> import kiln
    >>> huber_loss(kiln.tensor([0.5, 3.0]), kiln.zeros(2), reduction="none", delta=2.0).tolist()
    [0.125, 4.0]
    """
    if delta <= 0:
        raise RuntimeError(f"huber_loss does not support non-positive values for delta, got "
                           f"{delta}")
    if weight is not None and tuple(weight.shape) != tuple(input.shape):
        raise ValueError("Weights and input must have the same size.")
    input, target = _broadcast_pair("huber_loss", input, target)
    d = K.abs(input - target)
    pointwise = K.where(K.lt(d, delta), d * d * 0.5, (d - 0.5 * delta) * delta)
    if weight is not None:
        pointwise = pointwise * weight
    return C._reduce_loss(pointwise, reduction)


def _vector_norm(x: Tensor, dim: int) -> Tensor:
    """The 2-norm along `dim` (kept), with PyTorch's zero gradient at the zero vector."""
    squares = R.sum(x * x, dim, keepdim=True)
    nonzero = K.gt(squares, 0)
    return K.where(nonzero, K.sqrt(K.where(nonzero, squares, 1.0)), 0.0)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum(x1 / max(|x1|, eps) * x2 / max(|x2|, eps)) along `dim`, after broadcasting.

    As in PyTorch, the norms are clamped at eps without that clamp taking part in the
    gradient.

    >>> import kiln
    >>> cosine_similarity(kiln.tensor([[1.0, 0.0]]), kiln.tensor([[1.0, 1.0]])).tolist()
    [0.7071067690849304]
    """
    if not (isinstance(x1, Tensor) and isinstance(x2, Tensor)):
        raise TypeError(f"cosine_similarity(): arguments x1 and x2 must be Tensors, got "
                        f"{type(x1).__name__} and {type(x2).__name__}")
    shape = K.broadcast_shapes("cosine_similarity", tuple(x1.shape), tuple(x2.shape))
    dtype = dtypes.result_dtype([x1.dtype, x2.dtype])
    dtype = dtype if dtype.is_float else dtypes.DEFAULT_FLOAT
    x1 = K.expand_to(K.cast(x1, dtype), shape)
    x2 = K.expand_to(K.cast(x2, dtype), shape)
    dim = K.norm_dim(dim, len(shape), "cosine_similarity")
    n1, n2 = _vector_norm(x1, dim), _vector_norm(x2, dim)
    # NOTE: PyTorch clamps the norms in place under no_grad: the value is clamped, the
    # gradient is the norm's own.
    n1 = n1 + (K.maximum(n1, eps) - n1).detach()
    n2 = n2 + (K.maximum(n2, eps) - n2).detach()
    return R.sum((x1 / n1) * (x2 / n2), dim)


# NOTE: imported last: attention and upsampling are written with the functions above
from .attention import (multi_head_attention_forward,  # noqa: E402,F401
                        scaled_dot_product_attention)
from .upsampling import interpolate  # noqa: E402,F401
