"""`interpolate` and `Upsample`: resizing (N, C, *spatial) inputs by nearest, nearest-exact
and (bi/tri)linear interpolation with PyTorch's source-index rules, and area mode for 4-D
inputs (adaptive average pooling).

Interpolation is separable: each spatial axis is resized in turn, last axis first, by
gathering input rows at precomputed source indices and mixing them with precomputed weights.
So autograd (gather's adjoint is scatter_add) and @kiln.jit see ordinary registry ops.

    >>> import kiln
    >>> x = kiln.tensor([[[1.0, 2.0]]])
    >>> interpolate(x, scale_factor=2).tolist()
    [[[1.0, 1.0, 2.0, 2.0]]]
    >>> interpolate(x, size=4, mode="linear").tolist()
    [[[1.0, 1.25, 1.75, 2.0]]]
"""
from __future__ import annotations

import math

import numpy as np

from kiln.frontend import functional as K
from kiln.frontend.creation import tensor
from kiln.ir import dtypes
from kiln.ir.errors import NotSupportedError
from kiln.ir.registry import apply
from kiln.ir.types import user_loc

from .module import Module

_LINEAR_MODES = {"linear": 3, "bilinear": 4, "trilinear": 5}
_NEAREST_MODES = ("nearest", "nearest-exact")


def _per_axis(value, dims: int, name: str) -> list:
    if isinstance(value, (tuple, list)):
        if len(value) != dims:
            raise ValueError(f"Input and {name} must have the same number of spatial "
                             f"dimensions, but got input with spatial dimensions of "
                             f"{dims} and {name} of {list(value)}.")
        return list(value)
    return [value] * dims


def _output_sizes(input, size, scale_factor) -> tuple[list[int], list]:
    """The output's spatial sizes, and the scale factors the index rules use (or None)."""
    dims = input.ndim - 2
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        return [int(s) for s in _per_axis(size, dims, "size")], [None] * dims
    if scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    scales = [float(s) for s in _per_axis(scale_factor, dims, "scale_factor")]
    sizes = [math.floor(float(n) * s) for n, s in zip(input.shape[2:], scales)]
    return sizes, scales


def _check_mode(input, mode: str, align_corners, antialias: bool):
    if antialias:
        raise NotSupportedError("not supported yet: interpolate(antialias=True)",
                                loc=user_loc())
    if mode in _NEAREST_MODES or mode == "area":
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating "
                             "modes: linear | bilinear | bicubic | trilinear")
    elif mode in _LINEAR_MODES:
        want = _LINEAR_MODES[mode]
        if input.ndim != want:
            raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs "
                                      f"{want}D input")
    elif mode == "bicubic":
        raise NotSupportedError("not supported yet: interpolate(mode='bicubic')",
                                loc=user_loc(), hint="use mode='bilinear'")
    else:
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported "
                                  f"(got {input.ndim}D) for the modes: nearest | linear | "
                                  f"bilinear | bicubic | trilinear | area | nearest-exact "
                                  f"(got {mode})")
    if not 3 <= input.ndim <= 5:
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported "
                                  f"(got {input.ndim}D) for the modes: nearest | linear | "
                                  f"bilinear | bicubic | trilinear | area | nearest-exact "
                                  f"(got {mode})")


def _scale(in_size: int, out_size: int, scale, align_corners: bool, np_float):
    """PyTorch's area_pixel_compute_scale: the step in input pixels per output pixel."""
    if align_corners:
        return np_float((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    if scale is not None and scale > 0:
        return np_float(1.0 / scale)
    return np_float(in_size / out_size)


def nearest_indices(in_size: int, out_size: int, scale, exact: bool) -> np.ndarray:
    """Source index of every output index: floor(dst * step) ((dst + 0.5) * step for
    nearest-exact), at most in_size - 1; the arithmetic in float32 as PyTorch's kernel.

    >>> nearest_indices(3, 5, None, False).tolist(), nearest_indices(3, 5, None, True).tolist()
    ([0, 0, 1, 1, 2], [0, 0, 1, 2, 2])
    """
    if not exact and out_size in (in_size, 2 * in_size):
        # NOTE: PyTorch's nearest_idx shortcuts for these sizes ignore a given scale_factor
        # (e.g. 2.1 for 5 -> 10). Its 4-D forward and every backward use them; its 3-D and
        # 5-D forwards do not, so there PyTorch's own forward and backward disagree.
        return np.arange(out_size, dtype=np.int64) * in_size // out_size
    step = _scale(in_size, out_size, scale, False, np.float32)
    dst = np.arange(out_size, dtype=np.float32) + np.float32(0.5 if exact else 0.0)
    return np.minimum(np.floor(dst * step).astype(np.int64), in_size - 1)


def linear_indices(in_size: int, out_size: int, scale, align_corners: bool, np_float):
    """(index0, index1, lambda0, lambda1) for linear interpolation along one axis."""
    step = _scale(in_size, out_size, scale, align_corners, np_float)
    dst = np.arange(out_size, dtype=np_float)
    if align_corners:
        src = dst * step
    else:
        src = np.maximum((dst + np_float(0.5)) * step - np_float(0.5), np_float(0.0))
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < in_size - 1)
    lambda1 = np.minimum(np.maximum(src - i0.astype(np_float), np_float(0.0)), np_float(1.0))
    return i0, i1, (np_float(1.0) - lambda1).astype(np_float), lambda1.astype(np_float)


def _along(values: np.ndarray, axis: int, ndim: int, dtype, device):
    """A constant shaped to broadcast along `axis` of an ndim-dimensional tensor."""
    shape = [1] * ndim
    shape[axis] = values.shape[0]
    return tensor(values.reshape(shape), dtype=dtype, device=device)


def _gather_axis(x, index: np.ndarray, axis: int):
    shape = list(x.shape)
    shape[axis] = index.shape[0]
    idx = K.expand_to(_along(index, axis, x.ndim, dtypes.int64, x.device), tuple(shape))
    return apply("gather", [x, idx], {"axis": axis})


def _resize_axis(x, axis: int, out_size: int, scale, mode: str, align_corners: bool):
    in_size = x.shape[axis]
    if mode in _NEAREST_MODES:
        return _gather_axis(x, nearest_indices(in_size, out_size, scale,
                                               mode == "nearest-exact"), axis)
    i0, i1, l0, l1 = linear_indices(in_size, out_size, scale, align_corners, x.dtype.np.type)
    w0 = _along(l0, axis, x.ndim, x.dtype, x.device)
    w1 = _along(l1, axis, x.ndim, x.dtype, x.device)
    return _gather_axis(x, i0, axis) * w0 + _gather_axis(x, i1, axis) * w1


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest",
                align_corners=None, recompute_scale_factor=None, antialias: bool = False):
    """Resize the spatial dims of (N, C, W), (N, C, H, W) or (N, C, D, H, W) `input` to
    `size`, or by `scale_factor` (output size floor(in * scale)), like PyTorch.

    Modes: "nearest", "nearest-exact", "linear" (3-D), "bilinear" (4-D), "trilinear" (5-D),
    each with align_corners False (default) or True, and "area" (4-D).

    >>> import kiln
    >>> x = kiln.arange(4.0).reshape(1, 1, 2, 2)
    >>> interpolate(x, size=(3, 3), mode="bilinear", align_corners=True).flatten().tolist()
    [0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0]
    """
    _check_mode(input, mode, align_corners, antialias)
    if not input.dtype.is_float and mode not in _NEAREST_MODES:
        raise NotImplementedError(f"interpolate: mode '{mode}' needs a floating-point input, "
                                  f"got {input.dtype}")
    sizes, scales = _output_sizes(input, size, scale_factor)
    if recompute_scale_factor:
        scales = [None] * len(scales)
    if mode == "area":
        return _area(input, sizes)
    out = input
    for axis in reversed(range(2, input.ndim)):
        out = _resize_axis(out, axis, sizes[axis - 2], scales[axis - 2], mode,
                           bool(align_corners))
    return out


def _area(input, sizes):
    if input.ndim != 4:
        raise NotSupportedError(f"not supported yet: interpolate(mode='area') on a "
                                f"{input.ndim}-D input (4-D only)", loc=user_loc())
    from .pooling import adaptive_avg_pool2d
    return adaptive_avg_pool2d(input, tuple(sizes))


class Upsample(Module):
    """`interpolate` as a layer: a fixed `size` or `scale_factor`, and a mode.

    >>> import kiln
    >>> up = Upsample(scale_factor=2, mode="bilinear")
    >>> up
    Upsample(scale_factor=2.0, mode='bilinear')
    >>> up(kiln.ones(1, 3, 4, 4)).shape
    kiln.Size([1, 3, 8, 8])
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest",
                 align_corners=None, recompute_scale_factor=None):
        super().__init__()
        self.name = type(self).__name__
        self.size = size
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(s) for s in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor is not None else None
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input):
        return interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                           recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self) -> str:
        if self.scale_factor is not None:
            info = f"scale_factor={self.scale_factor!r}"
        else:
            info = f"size={self.size!r}"
        return info + f", mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """Nearest-neighbour upsampling of 4-D inputs.

    >>> UpsamplingNearest2d(scale_factor=2)
    UpsamplingNearest2d(scale_factor=2.0, mode='nearest')
    """

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """Bilinear upsampling of 4-D inputs with align_corners=True (as PyTorch's).

    >>> UpsamplingBilinear2d(size=(4, 4))
    UpsamplingBilinear2d(size=(4, 4), mode='bilinear')
    """

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)

