"""Pooling layers and functions over [N, C, H, W] (or [C, H, W]) inputs: the registry's
`max_pool2d` and `avg_pool2d` primitives, and adaptive average pooling built from them.

    >>> import kiln
    >>> x = kiln.arange(16.0).reshape(1, 1, 4, 4)
    >>> max_pool2d(x, 2).flatten().tolist()
    [5.0, 7.0, 13.0, 15.0]
    >>> avg_pool2d(x, 2).flatten().tolist()
    [2.5, 4.5, 10.5, 12.5]
"""
from __future__ import annotations

from kiln.frontend import functional as F
from kiln.frontend.reductions import mean
from kiln.ir.errors import NotSupportedError
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

from .conv import batched, pair
from .module import Module


def _window_attrs(kernel_size, stride, padding, ceil_mode) -> dict:
    kernel = pair(kernel_size, "kernel_size")
    # NOTE: PyTorch treats a missing (None or empty) stride as "stride = kernel_size".
    stride = kernel if stride is None or stride == [] or stride == () else pair(stride, "stride")
    return {"kernel_size": kernel, "stride": stride, "padding": pair(padding, "padding"),
            "ceil_mode": bool(ceil_mode)}


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Maximum over each (dilated) window; padding counts as -inf.

    >>> import kiln
    >>> max_pool2d(kiln.tensor([[[1.0, 3.0, 2.0]]]), (1, 2), stride=1).tolist()
    [[[3.0, 3.0]]]
    """
    if return_indices:
        raise NotSupportedError("not supported yet: max_pool2d(return_indices=True)",
                                loc=user_loc(), hint="use return_indices=False")
    attrs = _window_attrs(kernel_size, stride, padding, ceil_mode)
    attrs["dilation"] = pair(dilation, "dilation")
    return batched("max_pool2d", input, lambda x: apply("max_pool2d", [x], attrs))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Mean over each window; zero padding counts in the divisor if count_include_pad.

    >>> import kiln
    >>> avg_pool2d(kiln.ones(1, 3, 3), 2, padding=1, count_include_pad=False).tolist()
    [[[1.0, 1.0], [1.0, 1.0]]]
    """
    if divisor_override is not None:
        raise NotSupportedError("not supported yet: avg_pool2d(divisor_override=...)",
                                loc=user_loc(), hint="scale the result of avg_pool2d instead")
    attrs = _window_attrs(kernel_size, stride, padding, ceil_mode)
    attrs["count_include_pad"] = bool(count_include_pad)
    return batched("avg_pool2d", input, lambda x: apply("avg_pool2d", [x], attrs))


def _adaptive_axis(x, axis: int, out: int):
    """Mean over PyTorch's adaptive windows [floor(i*n/out), ceil((i+1)*n/out)) of one axis."""
    n = x.shape[axis]
    parts = []
    for i in range(out):
        start, stop = (i * n) // out, -(-((i + 1) * n) // out)
        rows = x[(slice(None),) * axis + (slice(start, stop),)]
        parts.append(mean(rows, axis, keepdim=True))
    return F.cat(parts, axis) if len(parts) > 1 else parts[0]


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed output size (None keeps that input size).

    >>> import kiln
    >>> adaptive_avg_pool2d(kiln.arange(6.0).reshape(1, 2, 3), (1, 2)).tolist()
    [[[2.0, 3.0]]]
    """
    def run(x):
        sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
        sizes = tuple(x.shape[2 + i] if s is None else s for i, s in enumerate(sizes))
        out_hw = pair(sizes, "output_size")
        h, w = x.shape[2:]
        if h % out_hw[0] == 0 and w % out_hw[1] == 0:
            # NOTE: equal windows: one avg_pool2d primitive instead of per-row means
            kernel = (h // out_hw[0], w // out_hw[1])
            return avg_pool2d(x, kernel, kernel)
        # NOTE: uneven windows are rectangles, and a mean over a rectangle is the mean of
        # the per-axis means, so two passes of per-axis slices give the exact result.
        return _adaptive_axis(_adaptive_axis(x, 2, out_hw[0]), 3, out_hw[1])
    return batched("adaptive_avg_pool2d", input, run)


class MaxPool2d(Module):
    """Max pooling, `max_pool2d` as a layer.

    >>> import kiln
    >>> MaxPool2d(2)
    MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    >>> MaxPool2d(2)(kiln.zeros(1, 3, 8, 8)).shape
    kiln.Size([1, 3, 4, 4])
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                          self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, "
                f"ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Average pooling, `avg_pool2d` as a layer.

    >>> import kiln
    >>> AvgPool2d(2)
    AvgPool2d(kernel_size=2, stride=2, padding=0)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input):
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, `adaptive_avg_pool2d` as a layer.

    >>> AdaptiveAvgPool2d((1, 1))
    AdaptiveAvgPool2d(output_size=(1, 1))
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
