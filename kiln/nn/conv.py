"""`Conv2d` and `conv2d`: the registry's `conv2d` primitive plus bias, string padding and
padding modes, written with other registry ops so autograd and @kiln.jit see through them.

    >>> import kiln
    >>> from kiln.nn.conv import conv2d
    >>> x, w = kiln.ones(1, 1, 4, 4), kiln.ones(2, 1, 3, 3)
    >>> conv2d(x, w, kiln.tensor([0.0, 1.0]), padding=1).shape
    kiln.Size([1, 2, 4, 4])
"""
from __future__ import annotations

import operator

from kiln.frontend import functional as F
from kiln.frontend.creation import zeros
from kiln.ir.errors import ShapeError
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

from . import init
from .module import Module
from .parameter import Parameter

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints as a pair (PyTorch's `_pair`), checked.

    >>> pair(3, "kernel_size"), pair([1, 2], "stride")
    ((3, 3), (1, 2))
    """
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    try:
        out = tuple(operator.index(v) for v in values)
    except TypeError:
        out = ()
    if len(out) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return out


def batched(op: str, x, fn):
    """Run `fn` on 4-D x; a 3-D (C, H, W) input gets a batch axis of 1 and loses it again.

    >>> import kiln
    >>> batched("op", kiln.ones(3, 4, 5), lambda x: x[:, :2]).shape   # x[:, :2]: channels
    kiln.Size([2, 4, 5])
    """
    if x.ndim == 3:
        return F.squeeze(fn(F.unsqueeze(x, 0)), 0)
    if x.ndim != 4:
        raise ShapeError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape "
                         f"{list(x.shape)}", loc=user_loc())
    return fn(x)


def _same_padding(kernel, dilation) -> tuple[tuple[int, int], tuple[int, int]]:
    """padding='same' as (before, after) per spatial axis; an odd total puts the extra row
    after, as PyTorch does."""
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple((t // 2, t - t // 2) for t in totals)


def _slice_axis(x, axis: int, start: int, stop: int):
    return x[(slice(None),) * axis + (slice(start, stop),)]


def _pad_axis(x, axis: int, before: int, after: int, mode: str):
    """x extended along `axis` by slices of itself, joined by concat."""
    n = x.shape[axis]
    limit = {"reflect": n - 1, "circular": n}.get(mode)
    if limit is not None and max(before, after) > limit:
        raise ShapeError(f"pad2d: padding ({before}, {after}) is too large for "
                         f"padding_mode='{mode}' on an axis of size {n} (at most {limit})",
                         loc=user_loc())
    if mode == "zeros":
        shape = list(x.shape)
        shape[axis] = n + before + after
        starts = [before if i == axis else 0 for i in range(x.ndim)]
        stops = [s + d for s, d in zip(starts, x.shape)]
        return apply("unslice", [x], {"shape": tuple(shape), "starts": tuple(starts),
                                      "stops": tuple(stops), "steps": (1,) * x.ndim})
    if mode == "circular":
        head, tail = [_slice_axis(x, axis, n - before, n)], [_slice_axis(x, axis, 0, after)]
    elif mode == "replicate":
        head = [_slice_axis(x, axis, 0, 1)] * before
        tail = [_slice_axis(x, axis, n - 1, n)] * after
    else:   # NOTE: reflect mirrors without repeating the edge; one row per slice (step >= 1)
        head = [_slice_axis(x, axis, i, i + 1) for i in range(before, 0, -1)]
        tail = [_slice_axis(x, axis, n - 1 - i, n - i) for i in range(1, after + 1)]
    parts = [p for p in head + [x] + tail if p.shape[axis] > 0]
    return F.cat(parts, axis) if len(parts) > 1 else x


def pad2d(x, padding, mode: str = "zeros"):
    """Pad the last two axes of x by ((top, bottom), (left, right)) in one of
    `PADDING_MODES` (PyTorch's zeros, reflect, replicate, circular).

    >>> import kiln
    >>> pad2d(kiln.tensor([[1.0, 2.0, 3.0]]), ((0, 0), (2, 1)), "reflect").tolist()
    [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {list(PADDING_MODES)}, but got "
                         f"padding_mode='{mode}'")
    for axis, (before, after) in zip((x.ndim - 2, x.ndim - 1), padding):
        if before or after:
            x = _pad_axis(x, axis, before, after, mode)
    return x


def _resolve_padding(padding, kernel, stride, dilation) -> tuple[tuple[int, int], ...]:
    """padding (int, pair, 'valid' or 'same') as (before, after) per spatial axis."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                             "['valid', 'same']")
        if tuple(stride) != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        return _same_padding(kernel, dilation)
    return tuple((p, p) for p in pair(padding, "padding"))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, like PyTorch) of input [N, C, H, W] or [C, H, W]
    with weight [O, C/groups, kh, kw], plus bias [O].

    >>> import kiln
    >>> x = kiln.arange(16.0).reshape(1, 1, 4, 4)
    >>> conv2d(x, kiln.ones(1, 1, 2, 2), stride=2).flatten().tolist()
    [10.0, 18.0, 42.0, 50.0]
    """
    if weight.ndim != 4:
        raise ShapeError(f"conv2d: weight must be 4-D [out, in/groups, kh, kw], got shape "
                         f"{list(weight.shape)}", loc=user_loc())
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    pads = _resolve_padding(padding, tuple(weight.shape[2:]), stride, dilation)
    attrs = {"stride": stride, "padding": tuple(b for b, _ in pads), "dilation": dilation,
             "groups": int(groups)}
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ShapeError(f"conv2d: bias has shape {list(bias.shape)} but weight "
                         f"{list(weight.shape)} has {weight.shape[0]} output channels",
                         loc=user_loc())

    def run(x):
        # NOTE: the primitive pads symmetrically; 'same' with an even kernel pads one more
        # row/column after, so that extra one is padded here first.
        extra = tuple((0, a - b) for b, a in pads)
        if any(a for _, a in extra):
            x = pad2d(x, extra)
        y = apply("conv2d", [x, weight], attrs)
        if bias is not None:
            y = F.add(y, F.reshape(bias, (1, -1, 1, 1)))
        return y
    return batched("conv2d", input, run)


class Conv2d(Module):
    """Applies a 2-D convolution over an input of shape [N, C_in, H, W] (or [C_in, H, W]).

    weight: Parameter [out_channels, in_channels/groups, kh, kw]; bias: Parameter
    [out_channels] or None; both initialized like PyTorch (kaiming_uniform_ with a=sqrt(5),
    bias uniform in +-1/sqrt(fan_in)).

    >>> import kiln
    >>> conv = Conv2d(1, 8, 3, padding=1)
    >>> conv
    Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    >>> conv(kiln.zeros(2, 1, 8, 8)).shape
    kiln.Size([2, 8, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {list(PADDING_MODES)}, but got "
                             f"padding_mode='{padding_mode}'")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.dilation = pair(stride, "stride"), pair(dilation, "dilation")
        self._pads = _resolve_padding(padding, self.kernel_size, self.stride, self.dilation)
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        self.padding_mode = padding_mode
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(zeros(*shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(zeros(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input):
        if self.padding_mode == "zeros":
            return conv2d(input, self.weight, self.bias, self.stride, self.padding,
                          self.dilation, self.groups)
        return conv2d(pad2d(input, self._pads, self.padding_mode), self.weight, self.bias,
                      self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        """PyTorch's wording: defaults other than kernel_size and stride are left out."""
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s
