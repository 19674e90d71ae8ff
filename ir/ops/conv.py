"""Convolution and pooling over NCHW float tensors, with their adjoints as primitives.

The ops close under differentiation, so every VJP is written with registry ops:

    conv2d(x, w)                 -> conv2d_grad_input(g, w), conv2d_grad_weight(x, g)
    conv2d_grad_input(g, w)      -> conv2d(h, w),            conv2d_grad_weight(h, g)
    conv2d_grad_weight(x, g)     -> conv2d_grad_input(g, h), conv2d(x, h)
    max_pool2d(x)                -> max_pool2d_grad(x, g)
    max_pool2d_grad(x, g)        -> zeros (piecewise constant in x), max_pool2d_gather(x, h)
    max_pool2d_gather(x, h)      -> zeros,                   max_pool2d_grad(x, g)
    avg_pool2d(x)                -> avg_pool2d_grad(g)
    avg_pool2d_grad(g)           -> avg_pool2d(h)

References are vectorized over pixels: a strided window view of the padded input (im2col)
and one batched matmul per group; adjoints scatter back with one slice-add per kernel tap.

    >>> import numpy as np
    >>> from kiln.ir import get_op
    >>> op = get_op("conv2d")
    >>> x, w = np.ones((1, 1, 3, 3)), np.ones((2, 1, 2, 2))
    >>> attrs = op.make_attrs(dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1))
    >>> op.ref([x, w], attrs)[0, :, 0, 0].tolist()
    [4.0, 4.0]
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import DTypeError, ShapeError
from ..registry import OpDef, P, register
from ..types import TensorType
from . import rules

_CONV = {"stride": "ints", "padding": "ints", "dilation": "ints", "groups": "int"}
_MAX = {"kernel_size": "ints", "stride": "ints", "padding": "ints", "dilation": "ints",
        "ceil_mode": "bool"}
_AVG = {"kernel_size": "ints", "stride": "ints", "padding": "ints", "ceil_mode": "bool",
        "count_include_pad": "bool"}


def contiguous(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy if needed; keeps 0-d arrays 0-d (unlike ascontiguousarray)."""
    return np.require(a, requirements="C")


# ---- shape rules -----------------------------------------------------------------------------
def _check_pair(op: str, name: str, values, low: int):
    if len(values) != 2 or any(v < low for v in values):
        raise ShapeError(f"{op}: {name} must be 2 integers >= {low}, got {list(values)}")


def _check_nchw(op: str, *types: TensorType):
    for t in types:
        if t.rank != 4:
            raise ShapeError(f"{op}: operands must be 4-D (N, C, H, W), got {t}; the "
                             "frontend adds the batch axis for 3-D inputs")
        rules.need_float(op, t)
    if len({t.dtype for t in types}) > 1:
        raise DTypeError(f"{op}: operand dtypes differ ({rules.fmt(types)}); primitives do "
                         "not promote, insert `cast`")


def _out_size(op: str, size: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    """Output length of one spatial axis (PyTorch's rule, ceil_mode included)."""
    span = size + 2 * p - d * (k - 1) - 1
    n = (-(-span // s) if ceil else span // s) + 1
    if ceil and (n - 1) * s >= size + p:
        n -= 1      # NOTE: the last window must start inside the input or its left padding
    if n <= 0:
        raise ShapeError(f"{op}: input size {size} with padding {p} is smaller than the "
                         f"kernel extent {d * (k - 1) + 1} (kernel {k}, dilation {d}); the "
                         f"output size would be {n}")
    return n


def _out_hw(op, hw, kernel, a, dilation=(1, 1), ceil=False):
    return tuple(_out_size(op, hw[i], kernel[i], a.stride[i], a.padding[i], dilation[i], ceil)
                 for i in range(2))


def _conv_type(op: str, x: TensorType, w: TensorType, a) -> TensorType:
    """The output type of conv2d(x, w), every operand and attribute checked."""
    _check_nchw(op, x, w)
    for name, low in (("stride", 1), ("padding", 0), ("dilation", 1)):
        _check_pair(op, name, a[name], low)
    g = a.groups
    if g < 1 or w.shape[0] % g:
        raise ShapeError(f"{op}: weight {w} has {w.shape[0]} output channels, which "
                         f"groups={g} does not divide")
    if x.shape[1] != w.shape[1] * g:
        raise ShapeError(f"{op}: input {x} has {x.shape[1]} channels but weight {w} expects "
                         f"{w.shape[1] * g} (groups={g})")
    if min(w.shape[2:]) < 1:
        raise ShapeError(f"{op}: weight {w} has an empty kernel")
    hw = _out_hw(op, x.shape[2:], w.shape[2:], a, a.dilation)
    return x.with_shape((x.shape[0], w.shape[0]) + hw)


def _check_cotangent(op: str, g: TensorType, want: TensorType):
    if g.shape != want.shape:
        raise ShapeError(f"{op}: output gradient {g} does not match the convolution's "
                         f"output {want}")


def _conv_infer(types, a):
    return [_conv_type("conv2d", types[0], types[1], a)]


def _grad_input_infer(types, a):
    g, w = types
    x = w.with_shape(a.input_shape)
    _check_cotangent("conv2d_grad_input", g, _conv_type("conv2d_grad_input", x, w, a))
    return [x]


def _grad_weight_infer(types, a):
    x, g = types
    w = x.with_shape(a.weight_shape)
    _check_cotangent("conv2d_grad_weight", g, _conv_type("conv2d_grad_weight", x, w, a))
    return [w]


def _dilation(a):
    """Pooling dilation; avg_pool2d has none (as in PyTorch)."""
    return a.dilation if "dilation" in dict(a.items()) else (1, 1)


def _pool_type(op: str, x: TensorType, a) -> TensorType:
    _check_nchw(op, x)
    dilation = _dilation(a)
    for name, values, low in (("kernel_size", a.kernel_size, 1), ("stride", a.stride, 1),
                              ("padding", a.padding, 0), ("dilation", dilation, 1)):
        _check_pair(op, name, values, low)
    if any(2 * p > k for p, k in zip(a.padding, a.kernel_size)):
        raise ShapeError(f"{op}: padding {list(a.padding)} must be at most half of "
                         f"kernel_size {list(a.kernel_size)}")
    hw = _out_hw(op, x.shape[2:], a.kernel_size, a, dilation, a.ceil_mode)
    return x.with_shape(x.shape[:2] + hw)


def _pool_infer(op):
    return lambda types, a: [_pool_type(op, types[0], a)]


def _pool_pair_infer(op):
    """(x, g) -> x's type, where g has the pooled shape of x (max_pool2d_grad)."""
    def infer(types, a):
        x, g = types
        _check_nchw(op, x, g)
        _check_cotangent(op, g, _pool_type(op, x, a))
        return [x]
    return infer


def _pool_gather_infer(types, a):
    x, h = types
    _check_nchw("max_pool2d_gather", x, h)
    if h.shape != x.shape:
        raise ShapeError(f"max_pool2d_gather: operands {rules.fmt(types)} differ in shape")
    return [_pool_type("max_pool2d_gather", x, a)]


def _avg_grad_infer(types, a):
    g = types[0]
    x = g.with_shape(a.input_shape)
    _check_cotangent("avg_pool2d_grad", g, _pool_type("avg_pool2d_grad", x, a))
    return [x]


# ---- reference helpers -----------------------------------------------------------------------
def _pad(x: np.ndarray, padding, extent, value=0.0) -> np.ndarray:
    """x padded by `padding` on the top/left and up to `extent` (H, W) on the bottom/right."""
    ph, pw = padding
    widths = ((0, 0), (0, 0), (ph, extent[0] - ph - x.shape[2]),
              (pw, extent[1] - pw - x.shape[3]))
    return np.pad(x, widths, constant_values=value)


def _extent(size_hw, kernel, stride, padding, dilation, out_hw):
    """Padded (H, W) that holds every window: at least the symmetric padding, more where a
    ceil_mode window runs past it."""
    return tuple(max(size_hw[i] + 2 * padding[i],
                     (out_hw[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1)
                 for i in range(2))


def _windows(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Read-only view [N, C, OH, OW, kh, kw]: window (oh, ow), tap (i, j) reads
    xp[:, :, oh * stride + i * dilation, ow * stride + j * dilation]."""
    sn, sc, sh, sw = xp.strides
    shape = xp.shape[:2] + tuple(out_hw) + tuple(kernel)
    strides = (sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1])
    return as_strided(xp, shape, strides, writeable=False)


def _tap_views(xp: np.ndarray, kernel, stride, dilation, out_hw) -> list:
    """Writable views [N, C, OH, OW] of xp, one per tap (i, j) in row-major order: the pixels
    that tap (i, j) of every window reads. Adjoints scatter into them with one vectorized
    add per tap (never a loop over pixels); overlapping windows accumulate."""
    views = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            h0, w0 = i * dilation[0], j * dilation[1]
            views.append(xp[:, :, h0:h0 + stride[0] * (out_hw[0] - 1) + 1:stride[0],
                            w0:w0 + stride[1] * (out_hw[1] - 1) + 1:stride[1]])
    return views


def _crop(xp: np.ndarray, padding, hw) -> np.ndarray:
    ph, pw = padding
    return contiguous(xp[:, :, ph:ph + hw[0], pw:pw + hw[1]])


# ---- convolution references ------------------------------------------------------------------
def _conv_cols(x: np.ndarray, kernel, a, out_hw) -> np.ndarray:
    """im2col: [G, N*OH*OW, C/G*kh*kw], the rows that each output pixel dots with."""
    n, c = x.shape[:2]
    g = a.groups
    xp = _pad(x, a.padding, _extent(x.shape[2:], kernel, a.stride, a.padding, a.dilation,
                                    out_hw))
    win = _windows(xp, kernel, a.stride, a.dilation, out_hw)
    win = win.reshape((n, g, c // g) + win.shape[2:])
    return win.transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, n * out_hw[0] * out_hw[1], -1)


def _grouped(t: np.ndarray, groups: int) -> np.ndarray:
    """[N, O, OH, OW] -> [G, N*OH*OW, O/G], the layout of `_conv_cols` rows."""
    n, o, oh, ow = t.shape
    t = t.reshape(n, groups, o // groups, oh, ow).transpose(1, 0, 3, 4, 2)
    return t.reshape(groups, n * oh * ow, o // groups)


def _ungrouped(t: np.ndarray, n: int, out_hw) -> np.ndarray:
    """Inverse of `_grouped`."""
    g, _, og = t.shape
    t = t.reshape((g, n) + tuple(out_hw) + (og,)).transpose(1, 0, 4, 2, 3)
    return contiguous(t.reshape((n, g * og) + tuple(out_hw)))


def _conv_ref(xs, a):
    x, w = xs
    g = a.groups
    out_hw = _out_hw("conv2d", x.shape[2:], w.shape[2:], a, a.dilation)
    cols = _conv_cols(x, w.shape[2:], a, out_hw)
    wm = w.reshape(g, w.shape[0] // g, -1)
    return _ungrouped(np.matmul(cols, wm.transpose(0, 2, 1)), x.shape[0], out_hw)


def _grad_weight_ref(xs, a):
    x, gy = xs
    g, shape = a.groups, a.weight_shape
    cols = _conv_cols(x, shape[2:], a, gy.shape[2:])
    dw = np.matmul(_grouped(gy, g).transpose(0, 2, 1), cols)
    return contiguous(dw.reshape(shape))


def _grad_input_ref(xs, a):
    gy, w = xs
    g, shape = a.groups, a.input_shape
    n, c = shape[:2]
    kernel, out_hw = w.shape[2:], gy.shape[2:]
    cols = np.matmul(_grouped(gy, g), w.reshape(g, w.shape[0] // g, -1))
    cols = cols.reshape((g, n) + tuple(out_hw) + (c // g, kernel[0] * kernel[1]))
    cols = cols.transpose(1, 0, 4, 2, 3, 5).reshape((n, c) + tuple(out_hw) + (-1,))
    extent = _extent(shape[2:], kernel, a.stride, a.padding, a.dilation, out_hw)
    xp = np.zeros((n, c) + extent, gy.dtype)
    for t, view in enumerate(_tap_views(xp, kernel, a.stride, a.dilation, out_hw)):
        view += cols[..., t]
    return _crop(xp, a.padding, shape[2:])


# ---- pooling references ----------------------------------------------------------------------
def _pool_windows(x: np.ndarray, a, fill: float):
    """(windows [N, C, OH, OW, kh, kw] of x padded with `fill`, padded (H, W) extent)."""
    d = _dilation(a)
    out_hw = _out_hw("pool", x.shape[2:], a.kernel_size, a, d, a.ceil_mode)
    extent = _extent(x.shape[2:], a.kernel_size, a.stride, a.padding, d, out_hw)
    xp = _pad(x, a.padding, extent, fill)
    return _windows(xp, a.kernel_size, a.stride, d, out_hw), extent


def _taps(win: np.ndarray):
    """The taps win[..., i, j] of windows [N, C, OH, OW, kh, kw], in row-major order.
    NOTE: one vectorized op per tap; reducing the strided view directly is ~10x slower."""
    kh, kw = win.shape[4:]
    return [win[..., t // kw, t % kw] for t in range(kh * kw)]


def _argmax(x: np.ndarray, a) -> np.ndarray:
    """Flat tap index [N, C, OH, OW] of each window's maximum, by PyTorch's rule: a tap wins
    if it is greater than the best so far (so the first of tied maxima wins) or NaN."""
    win, _ = _pool_windows(x, a, -np.inf)
    taps = _taps(win)
    best, idx = taps[0].copy(), np.zeros(taps[0].shape, np.int64)
    for t, v in enumerate(taps[1:], start=1):
        take = (v > best) | np.isnan(v)
        best = np.where(take, v, best)
        idx[take] = t
    return idx


def _max_ref(xs, a):
    win, _ = _pool_windows(xs[0], a, -np.inf)
    taps = _taps(win)
    out = taps[0].copy()
    for v in taps[1:]:
        np.maximum(out, v, out=out)     # NOTE: NaN propagates, as in PyTorch
    return out


def _max_grad_ref(xs, a):
    x, g = xs
    idx = _argmax(x, a)
    _, extent = _pool_windows(x, a, 0.0)
    xp = np.zeros(x.shape[:2] + extent, g.dtype)
    zero = np.zeros((), g.dtype)
    for t, view in enumerate(_tap_views(xp, a.kernel_size, a.stride, _dilation(a),
                                        g.shape[2:])):
        view += np.where(idx == t, g, zero)
    return _crop(xp, a.padding, x.shape[2:])


def _max_gather_ref(xs, a):
    x, h = xs
    idx = _argmax(x, a)
    win, _ = _pool_windows(h, a, 0.0)
    win = win.reshape(win.shape[:4] + (-1,))
    return contiguous(np.take_along_axis(win, idx[..., None], axis=-1)[..., 0])


def _avg_divisor(shape, a, out_hw, dtype) -> np.ndarray:
    """[OH, OW] window sizes, PyTorch's rule: padding counts (if count_include_pad) but the
    part of a ceil_mode window past the padding never does. NOTE: no window is empty: the
    last one starts inside the input and padding is at most half the kernel."""
    counts = []
    for i in range(2):
        size, k, s, p = shape[2 + i], a.kernel_size[i], a.stride[i], a.padding[i]
        start = np.arange(out_hw[i]) * s - p
        end = np.minimum(start + k, size + p)
        if not a.count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, size)
        counts.append(end - start)
    return np.outer(counts[0], counts[1]).astype(dtype)


def _avg_ref(xs, a):
    x = xs[0]
    win, _ = _pool_windows(x, a, 0.0)
    taps = _taps(win)
    total = taps[0].copy()
    for v in taps[1:]:
        total += v
    return total / _avg_divisor(x.shape, a, total.shape[2:], x.dtype)


def _avg_grad_ref(xs, a):
    g, shape = xs[0], a.input_shape
    share = g / _avg_divisor(shape, a, g.shape[2:], g.dtype)
    extent = _extent(shape[2:], a.kernel_size, a.stride, a.padding, (1, 1), g.shape[2:])
    xp = np.zeros(tuple(shape[:2]) + extent, g.dtype)
    for view in _tap_views(xp, a.kernel_size, a.stride, (1, 1), g.shape[2:]):
        view += share
    return _crop(xp, a.padding, shape[2:])


# ---- VJPs and declarations -------------------------------------------------------------------
def _conv_attrs(a) -> dict:
    return {"stride": a.stride, "padding": a.padding, "dilation": a.dilation,
            "groups": a.groups}


def _conv_vjp(c, g):
    x, w = c.inputs
    at = _conv_attrs(c.attrs)
    gx = P.conv2d_grad_input(g, w, input_shape=x.shape, **at) if c.needs[0] else None
    gw = P.conv2d_grad_weight(x, g, weight_shape=w.shape, **at) if c.needs[1] else None
    return [gx, gw]


def _grad_input_vjp(c, h):
    """grad_input is linear in g and in w: <h, J_w^T g> = <conv2d(h, w), g>."""
    g, w = c.inputs
    at = _conv_attrs(c.attrs)
    gg = P.conv2d(h, w, **at) if c.needs[0] else None
    gw = P.conv2d_grad_weight(h, g, weight_shape=w.shape, **at) if c.needs[1] else None
    return [gg, gw]


def _grad_weight_vjp(c, h):
    """grad_weight is linear in x and in g: <h, A_x^T g> = <conv2d(x, h), g>."""
    x, g = c.inputs
    at = _conv_attrs(c.attrs)
    gx = P.conv2d_grad_input(g, h, input_shape=x.shape, **at) if c.needs[0] else None
    gg = P.conv2d(x, h, **at) if c.needs[1] else None
    return [gx, gg]


def _pair_vjp(adjoint: str):
    """VJP of an op (x, v) linear in v and piecewise constant in x (the argmax positions):
    zero for x, and the adjoint op for v."""
    def vjp(c, h):
        x = c.inputs[0]
        gx = P.zeros_like(x) if c.needs[0] else None
        gv = getattr(P, adjoint)(x, h, **c.attrs.as_dict()) if c.needs[1] else None
        return [gx, gv]
    return vjp


def _avg_attrs(a) -> dict:
    return {k: v for k, v in a.items() if k != "input_shape"}


register(OpDef("conv2d", "matmul", 2, _CONV, _conv_infer, _conv_ref, _conv_vjp,
               doc="2-D cross-correlation: x[N,C,H,W], w[O,C/groups,kh,kw] -> [N,O,OH,OW]; "
                   "zero padding, no bias (the frontend adds it)."))
register(OpDef("conv2d_grad_input", "matmul", 2, dict(input_shape="shape", **_CONV),
               _grad_input_infer, _grad_input_ref, _grad_input_vjp,
               doc="Transposed convolution: the input gradient of conv2d, "
                   "(g[N,O,OH,OW], w) -> [input_shape]."))
register(OpDef("conv2d_grad_weight", "matmul", 2, dict(weight_shape="shape", **_CONV),
               _grad_weight_infer, _grad_weight_ref, _grad_weight_vjp,
               doc="The weight gradient of conv2d: (x, g[N,O,OH,OW]) -> [weight_shape]."))
register(OpDef("max_pool2d", "reduce", 1, _MAX, _pool_infer("max_pool2d"), _max_ref,
               lambda c, g: [P.max_pool2d_grad(c.inputs[0], g, **c.attrs.as_dict())],
               doc="Maximum over each window of x padded with -inf."))
register(OpDef("max_pool2d_grad", "reduce", 2, _MAX, _pool_pair_infer("max_pool2d_grad"),
               _max_grad_ref, _pair_vjp("max_pool2d_gather"),
               doc="(x, g) -> g summed into the first maximum of each window of x."))
register(OpDef("max_pool2d_gather", "reduce", 2, _MAX, _pool_gather_infer, _max_gather_ref,
               _pair_vjp("max_pool2d_grad"),
               doc="(x, h) -> h read at the first maximum of each window of x "
                   "(the adjoint of max_pool2d_grad)."))
register(OpDef("avg_pool2d", "reduce", 1, _AVG, _pool_infer("avg_pool2d"), _avg_ref,
               lambda c, g: [P.avg_pool2d_grad(g, input_shape=c.inputs[0].shape,
                                               **c.attrs.as_dict())],
               doc="Mean over each window of x padded with zeros (PyTorch's divisor)."))
register(OpDef("avg_pool2d_grad", "reduce", 1, dict(input_shape="shape", **_AVG),
               _avg_grad_infer, _avg_grad_ref,
               lambda c, h: [P.avg_pool2d(h, **_avg_attrs(c.attrs))],
               doc="The input gradient of avg_pool2d: g[N,C,OH,OW] -> [input_shape]."))
