"""Composite functions written once, in plain Python over the primitives.

Autograd and the JIT see only primitives, so these need no VJP of their own.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from kiln.ir import dtypes
from kiln.ir.errors import DTypeError, KilnIndexError, NotSupportedError, ShapeError
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
    if target.dtype != dtypes.int64:
        # NOTE: PyTorch takes int64 class indices only (not int32)
        raise DTypeError(f"{op}: expected target dtype to be Long (kiln.int64) class "
                         f"indices, but got {target.dtype}", loc=user_loc())
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
    _check_targets_in_range(target, input.shape[axis], ignore_index)
    keep = F.ne(target, ignore_index)
    index = F.unsqueeze(F.where(keep, target, 0), axis)
    picked = F.squeeze(apply("gather", [input, index], {"axis": axis}), axis)
    w = _class_weights(target, keep, weight, input.dtype)
    loss = F.where(keep, F.neg(picked) * w, 0.0)
    if reduction == "mean":
        return R.sum(loss) / R.sum(w)
    return _reduce_loss(loss, reduction)


def _check_targets_in_range(target: Tensor, classes: int, ignore_index: int) -> None:
    """Eagerly, PyTorch's IndexError for a class index outside [0, classes) (compiled code
    gets the indexing op's error, at the user's line)."""
    if target._trace is not None or target.is_cuda or target.numel() == 0:
        return
    t = target._data
    bad = t[(t != ignore_index) & ((t < 0) | (t >= classes))]
    if bad.size:
        raise KilnIndexError(f"Target {int(bad[0])} is out of bounds.", loc=user_loc())


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


# ---- shape ops (views and copies built from slice, reshape, expand, concat, flip) -----------
def _dims(x: Tensor, dims) -> tuple[int, ...]:
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    return tuple(sorted({F.norm_dim(d, x.ndim, "flip") for d in dims}))


def flip(x: Tensor, dims) -> Tensor:
    """x with the order of elements reversed along `dims` (a copy, as in PyTorch)."""
    return apply("flip", [x], {"axes": _dims(x, dims)})


def _triangle(x: Tensor, diagonal: int, upper: bool, op: str) -> Tensor:
    if x.ndim < 2:
        raise ShapeError(f"{op}: input tensor must have at least 2 dimensions, got shape "
                         f"{list(x.shape)}", loc=user_loc())
    n, m = x.shape[-2:]
    rows = F.reshape(apply("arange", [], {"start": 0, "stop": n, "step": 1,
                                          "dtype": dtypes.int64}, like=x), (n, 1))
    cols = F.reshape(apply("arange", [], {"start": 0, "stop": m, "step": 1,
                                          "dtype": dtypes.int64}, like=x), (1, m))
    offset = cols - rows
    keep = F.ge(offset, diagonal) if upper else F.le(offset, diagonal)
    return F.where(keep, x, F.full((), 0, x.dtype, like=x))


def tril(x: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two dims (j - i <= diagonal), zeros elsewhere.

    >>> import kiln
    >>> kiln.tril(kiln.ones(2, 2))
    tensor([[1., 0.],
            [1., 1.]])
    """
    return _triangle(x, diagonal, False, "tril")


def triu(x: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two dims (j - i >= diagonal), zeros elsewhere."""
    return _triangle(x, diagonal, True, "triu")


def roll(x: Tensor, shifts, dims=None) -> Tensor:
    """Elements shifted along `dims` by `shifts`, wrapping around (no dims: the flattened
    tensor, reshaped back)."""
    if dims is None:
        return F.reshape(roll(F.flatten(x), shifts, 0), tuple(x.shape))
    shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(shifts) != len(dims):
        raise ShapeError(f"roll: shifts {list(shifts)} and dims {list(dims)} must have the "
                         "same length", loc=user_loc())
    for shift, dim in zip(shifts, dims):
        d = F.norm_dim(dim, x.ndim, "roll")
        size = x.shape[d]
        k = int(shift) % size if size else 0
        if k:
            x = F.cat([F._slice_dim(x, d, size - k, size), F._slice_dim(x, d, 0, size - k)], d)
    return x


def repeat(x: Tensor, *sizes) -> Tensor:
    """x tiled `sizes[i]` times along each dim (PyTorch's `Tensor.repeat`)."""
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) \
        else tuple(sizes)
    if len(sizes) < x.ndim:
        raise ShapeError(f"repeat: number of repeat dims ({len(sizes)}) can not be smaller "
                         f"than number of dimensions of tensor ({x.ndim})", loc=user_loc())
    shape = (1,) * (len(sizes) - x.ndim) + tuple(x.shape)
    split = tuple(v for s in shape for v in (1, s))
    tiled = tuple(v for r, s in zip(sizes, shape) for v in (r, s))
    y = F.expand(F.reshape(x, split), tiled)
    return F.reshape(y, tuple(r * s for r, s in zip(sizes, shape)))


def repeat_interleave(x: Tensor, repeats, dim=None) -> Tensor:
    """Each element repeated `repeats` times along `dim` (the flattened tensor when None);
    `repeats` is an int (a tensor of counts per element is not supported yet)."""
    if isinstance(repeats, Tensor):
        if repeats.numel() != 1:
            raise NotSupportedError("not supported yet: repeat_interleave with a tensor of "
                                    "per-element repeats", loc=user_loc())
        repeats = int(repeats.item())
    if dim is None:
        x, dim = F.flatten(x), 0
    d = F.norm_dim(dim, x.ndim, "repeat_interleave")
    y = F.unsqueeze(x, d + 1)
    shape = list(y.shape)
    shape[d + 1] = int(repeats)
    y = F.expand(y, tuple(shape))
    out = list(x.shape)
    out[d] *= int(repeats)
    return F.reshape(y, tuple(out))


def split(x: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Views of x along `dim`: chunks of `split_size` (the last may be smaller), or of the
    given list of sizes."""
    d = F.norm_dim(dim, x.ndim, "split")
    size = x.shape[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != size:
            raise ShapeError(f"split_with_sizes expects split_sizes to sum exactly to {size} "
                             f"(input tensor's size at dimension {d}), but got split_sizes="
                             f"{sizes}", loc=user_loc())
    else:
        step = int(split_size_or_sections)
        if step <= 0:
            raise ShapeError(f"split: split_size must be positive, got {step}", loc=user_loc())
        sizes = [min(step, size - s) for s in range(0, size, step)] or [0]
    out, start = [], 0
    for s in sizes:
        out.append(F._slice_dim(x, d, start, start + s))
        start += s
    return tuple(out)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple:
    """x split into `chunks` views of ceil(size / chunks) along `dim` (fewer when the size
    does not allow that many, as in PyTorch)."""
    if chunks <= 0:
        raise ShapeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}",
                         loc=user_loc())
    size = x.shape[F.norm_dim(dim, x.ndim, "chunk")]
    return split(x, max(-(-size // chunks), 1), dim)


def meshgrid(*tensors, indexing: str = "ij") -> tuple:
    """Coordinate grids of 1-D tensors: "ij" (matrix indexing, the default) or "xy"
    (Cartesian: the first two dims swapped)."""
    tensors = list(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) \
        else list(tensors)
    if indexing not in ("ij", "xy"):
        raise ValueError(f"torch.meshgrid: indexing must be one of \"xy\" or \"ij\", but "
                         f"received: {indexing}")
    for t in tensors:
        if t.ndim > 1:
            raise ShapeError(f"meshgrid: expects 0-D or 1-D tensors, got shape "
                             f"{list(t.shape)}", loc=user_loc())
    flat = [F.reshape(t, (-1,)) for t in tensors]
    swap = indexing == "xy" and len(flat) >= 2
    order = [1, 0] + list(range(2, len(flat))) if swap else list(range(len(flat)))
    shape = tuple(flat[i].shape[0] for i in order)
    grids = []
    for k, t in enumerate(flat):
        pos = order.index(k)
        view = [1] * len(flat)
        view[pos] = t.shape[0]
        grids.append(F.expand(F.reshape(t, tuple(view)), shape))
    return tuple(grids)


def outer(a: Tensor, b: Tensor) -> Tensor:
    """The outer product of two 1-D tensors: out[i, j] = a[i] * b[j]."""
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"outer: expects 1-D tensors, got shapes {list(a.shape)} and "
                         f"{list(b.shape)}", loc=user_loc())
    return F.unsqueeze(a, 1) * F.unsqueeze(b, 0)


def bmm(a: Tensor, b: Tensor) -> Tensor:
    """Batched matrix product of [B, n, k] and [B, k, m] (no broadcasting, as in PyTorch)."""
    if a.ndim != 3 or b.ndim != 3:
        raise ShapeError(f"bmm: batch1 and batch2 must be 3D tensors, got shapes "
                         f"{list(a.shape)} and {list(b.shape)}", loc=user_loc())
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ShapeError(f"bmm: expected size for batch2 {[a.shape[0], a.shape[2], '*']}, "
                         f"got {list(b.shape)} (batch1 {list(a.shape)})", loc=user_loc())
    return F.matmul(a, b)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad: bool = False):
    """`steps` evenly spaced values from start to end, computed like PyTorch (from the start
    for the first half, from the end for the second) so both ends are exact."""
    steps = int(steps)
    if steps < 0:
        raise ShapeError(f"linspace: number of steps must be non-negative, got {steps}",
                         loc=user_loc())
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.DEFAULT_FLOAT
    rounded = dtype.np.type if dtype.is_float else np.float64
    # NOTE: PyTorch rounds the ends and the step to the output dtype (an integer dtype
    # truncates the ends first), then evaluates start + step * i (or end - step *
    # (steps - 1 - i)) exactly enough: in float64 here
    if not dtype.is_float:
        start, end = _integer_end(start, dtype), _integer_end(end, dtype)
    lo, hi = rounded(start), rounded(end)
    step = float((hi - lo) / rounded(steps - 1)) if steps > 1 else 0.0
    start, end = float(lo), float(hi)
    idx = F.cast(apply("arange", [], {"start": 0, "stop": steps, "step": 1,
                                      "dtype": dtypes.int64}, like=F.SOURCE), dtypes.float64)
    head = idx * step + start
    tail = end - (steps - 1 - idx) * step
    out = F.where(F.lt(idx, max(steps // 2, 1)), head, tail)
    out = F.cast(out, dtype)
    if device is not None:
        out = out.to(device)
    return out.requires_grad_() if requires_grad else out


def _integer_end(value, dtype) -> int:
    """An end of an integer linspace, truncated toward zero as PyTorch's cast does; one that
    does not fit the dtype raises instead of wrapping."""
    info = np.iinfo(dtype.np)
    if not np.isfinite(value) or not info.min <= int(value) <= info.max:
        raise RuntimeError(f"linspace: value cannot be converted to type {dtype.name} "
                           "without overflow")
    return int(value)


# ---- einsum: diagonals, sums, then one matmul per pair of operands --------------------------
def _parse_einsum(equation: str, count: int):
    eq = equation.replace(" ", "")
    if "." in eq:
        raise NotSupportedError(f"not supported yet: einsum with an ellipsis ('{equation}')",
                                loc=user_loc())
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != count:
        raise ShapeError(f"einsum(): the equation '{equation}' names {len(terms)} operands, "
                         f"but {count} were given", loc=user_loc())
    if not arrow:
        letters = "".join(terms)
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    bad = [c for c in eq if c not in ",->" and not c.isalpha()]
    if bad or len(set(out)) != len(out) or any(c not in lhs for c in out):
        raise ShapeError(f"einsum(): invalid equation '{equation}'", loc=user_loc())
    return [list(t) for t in terms], list(out)


def _take_diagonals(x: Tensor, labels: list):
    """A label repeated in one operand ('ii') reads the diagonal of those dims."""
    from .methods import _diagonal
    for c in list(labels):
        while labels.count(c) > 1:
            first = labels.index(c)
            second = labels.index(c, first + 1)
            x = _diagonal(x, 0, first, second)
            labels = [lab for i, lab in enumerate(labels) if i not in (first, second)] + [c]
    return x, labels


def _sum_labels(x: Tensor, labels: list, keep) -> tuple:
    drop = [i for i, c in enumerate(labels) if c not in keep]
    if drop:
        x = R.sum(x, tuple(drop))
        labels = [c for c in labels if c in keep]
    return x, labels


def _contract(a, la, b, lb, keep):
    """a[la] * b[lb] summed over the shared labels not in `keep`, as one batched matmul."""
    sizes = {}
    for x, labels in ((a, la), (b, lb)):
        for c, n in zip(labels, x.shape):
            if sizes.setdefault(c, n) != n:
                raise ShapeError(f"einsum(): operands do not broadcast: label '{c}' has sizes "
                                 f"{sizes[c]} and {n}", loc=user_loc())
    batch = [c for c in la if c in lb and c in keep]
    inner = [c for c in la if c in lb and c not in keep]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]

    def arrange(x, labels, order, shape):
        x = F.permute(x, tuple(labels.index(c) for c in order))
        return F.reshape(x, shape)

    def size(group):
        n = 1
        for c in group:
            n *= sizes[c]
        return n
    nb, nl, nk, nr = size(batch), size(left), size(inner), size(right)
    x = arrange(a, la, batch + left + inner, (nb, nl, nk))
    y = arrange(b, lb, batch + inner + right, (nb, nk, nr))
    out = F.matmul(x, y)
    labels = batch + left + right
    return F.reshape(out, tuple(sizes[c] for c in labels)), labels


def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation: 'ij,jk->ik', 'bij,bjk->bik', 'ii->', 'ij->ji', 'i,j->ij', ...
    (any number of operands, contracted left to right; no ellipsis yet).

    >>> import kiln
    >>> kiln.einsum("ii->", kiln.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor(5.)
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    terms, out = _parse_einsum(equation, len(operands))
    dtype = dtypes.result_dtype([t.dtype for t in operands])
    items = []
    for k, (x, labels) in enumerate(zip(operands, terms)):
        if len(labels) != x.ndim:
            raise ShapeError(f"einsum(): the subscript '{''.join(labels)}' of operand {k} "
                             f"has {len(labels)} labels, but the operand has {x.ndim} dims "
                             f"(shape {list(x.shape)})", loc=user_loc())
        items.append(_take_diagonals(F.cast(x, dtype), labels))
    x, labels = items[0]
    rest = items[1:]
    for k, (y, ly) in enumerate(rest):
        later = set(out).union(*(set(lab) for _, lab in rest[k + 1:]))
        x, labels = _sum_labels(x, labels, later | set(ly))
        y, ly = _sum_labels(y, ly, later | set(labels))
        x, labels = _contract(x, labels, y, ly, later)
    x, labels = _sum_labels(x, labels, set(out))
    return F.permute(x, tuple(labels.index(c) for c in out)) if out else x
