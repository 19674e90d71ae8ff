"""Convolution and pooling: forward against direct loop references (slow, obviously correct),
gradients against central finite differences in float64, module reprs and errors, the graph
autograd pass and @kiln.jit, and PyTorch where it is installed."""
import doctest
import importlib
import itertools
import math
import warnings

import numpy as np
import pytest

import kiln
from kiln.frontend.jit import KilnJitWarning, trace_function
from kiln.ir.interpreter import interpret
from kiln.ir.verifier import verify
from kiln.nn.conv import Conv2d, conv2d, pad2d
from kiln.nn.pooling import (AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, adaptive_avg_pool2d,
                             avg_pool2d, max_pool2d)
from kiln.passes.autograd import grad_graph


# ---- direct references: one Python iteration per output pixel ------------------------------
def conv_loop(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for b, k, i, j in itertools.product(range(n), range(o), range(oh), range(ow)):
        g = k // (o // groups)
        patch = xp[b, g * cg:(g + 1) * cg, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                   j * sw:j * sw + dw * (kw - 1) + 1:dw]
        out[b, k, i, j] = np.sum(patch * w[k])
    return out


def pool_out(size, k, s, p, d=1, ceil=False):
    """PyTorch's documented output size, ceil_mode's last-window rule included."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(num / s) if ceil else num // s) + 1
    return out - 1 if ceil and (out - 1) * s >= size + p else out


def max_pool_loop(x, k, s, p=(0, 0), d=(1, 1), ceil=False, g=None):
    """(pooled, gradient of sum(pooled * g)): the first strictly greater tap wins."""
    n, c, h, w = x.shape
    oh, ow = (pool_out(x.shape[2 + a], k[a], s[a], p[a], d[a], ceil) for a in range(2))
    out, grad = np.zeros((n, c, oh, ow)), np.zeros(x.shape)
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        best, pos = -np.inf, None
        for a, e in itertools.product(range(k[0]), range(k[1])):
            ih, iw = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + e * d[1]
            if 0 <= ih < h and 0 <= iw < w and x[b, ch, ih, iw] > best:
                best, pos = x[b, ch, ih, iw], (b, ch, ih, iw)
        out[b, ch, i, j] = best
        if g is not None:
            grad[pos] += g[b, ch, i, j]
    return out, grad


def avg_pool_loop(x, k, s, p=(0, 0), ceil=False, count_include_pad=True):
    """PyTorch's CPU kernel, written out: the divisor stops at the padding's far edge."""
    n, c, h, w = x.shape
    oh, ow = (pool_out(x.shape[2 + a], k[a], s[a], p[a], 1, ceil) for a in range(2))
    out = np.zeros((n, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
        h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
        size = (h1 - h0) * (w1 - w0)
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
        if h0 >= h1 or w0 >= w1:
            continue
        div = size if count_include_pad else (h1 - h0) * (w1 - w0)
        out[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / div
    return out


# ---- finite differences ----------------------------------------------------------------------
def check_grads(fn, arrays, rng, eps=1e-6):
    """Autograd of sum(fn(*arrays) * cot) against central differences, every input, float64."""
    tensors = [kiln.from_numpy(a).requires_grad_() for a in arrays]
    out = fn(*tensors)
    cot = rng.standard_normal(tuple(out.shape))
    (out * kiln.from_numpy(cot)).sum().backward()

    def loss(values):
        with kiln.no_grad():
            return float(np.sum(fn(*[kiln.from_numpy(v) for v in values]).numpy() * cot))
    for i, a in enumerate(arrays):
        numeric = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            hi, lo = [v.copy() for v in arrays], [v.copy() for v in arrays]
            hi[i][idx] += eps
            lo[i][idx] -= eps
            numeric[idx] = (loss(hi) - loss(lo)) / (2 * eps)
        np.testing.assert_allclose(tensors[i].grad.numpy(), numeric, rtol=1e-6, atol=1e-7,
                                   err_msg=f"gradient of input {i}")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _t(a):
    return kiln.from_numpy(np.asarray(a))


# ---- conv2d ----------------------------------------------------------------------------------
def _cfg(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    return pytest.param(dict(x=x, w=w, stride=stride, padding=padding, dilation=dilation,
                             groups=groups), id=f"x{x}-w{w}-s{stride}-p{padding}-d{dilation}"
                        f"-g{groups}".replace(" ", ""))


CONV_CONFIGS = [
    _cfg((2, 3, 6, 6), (4, 3, 3, 3)),
    _cfg((1, 2, 7, 9), (3, 2, 3, 2), stride=(2, 3)),
    _cfg((2, 2, 6, 7), (4, 2, 3, 3), padding=(2, 1)),
    _cfg((1, 3, 9, 8), (2, 3, 3, 2), padding=(1, 2), dilation=(2, 3)),
    _cfg((2, 4, 5, 6), (6, 2, 3, 3), stride=(1, 2), padding=(1, 1), groups=2),
    _cfg((1, 3, 6, 5), (3, 1, 2, 2), groups=3),                   # depthwise
    _cfg((1, 1, 6, 4), (2, 1, 2, 2), stride=(3, 1)),              # rows 2 and 5 never read
    _cfg((2, 2, 5, 5), (3, 2, 5, 5), stride=(2, 2), padding=(2, 2)),
    _cfg((1, 2, 4, 9), (2, 2, 1, 4)),                             # 1xN kernel
]


def _conv_args(cfg):
    return {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_forward_matches_loop_reference(cfg, rng):
    x, w = rng.standard_normal(cfg["x"]), rng.standard_normal(cfg["w"])
    b = rng.standard_normal(cfg["w"][0])
    want = conv_loop(x, w, **_conv_args(cfg)) + b[:, None, None]
    got = conv2d(_t(x), _t(w), _t(b), **_conv_args(cfg))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    got32 = conv2d(_t(x.astype(np.float32)), _t(w.astype(np.float32)), None,
                   **_conv_args(cfg))
    assert got32.dtype == kiln.float32
    np.testing.assert_allclose(got32.numpy(), want - b[:, None, None], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg", CONV_CONFIGS[1:6])
def test_conv2d_gradients_match_finite_differences(cfg, rng):
    arrays = [rng.standard_normal(cfg["x"]), rng.standard_normal(cfg["w"]),
              rng.standard_normal(cfg["w"][0])]
    check_grads(lambda x, w, b: conv2d(x, w, b, **_conv_args(cfg)), arrays, rng)


@pytest.mark.parametrize("kernel,dilation", [((3, 3), (1, 1)), ((2, 4), (1, 1)),
                                             ((2, 3), (3, 2))])
def test_conv2d_same_and_valid_padding(kernel, dilation, rng):
    x, w = rng.standard_normal((2, 2, 6, 7)), rng.standard_normal((3, 2) + kernel)
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    # NOTE: PyTorch puts the odd extra row/column after (bottom, right)
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((t // 2, t - t // 2) for t in totals))
    got = conv2d(_t(x), _t(w), padding="same", dilation=dilation)
    assert tuple(got.shape) == (2, 3, 6, 7)
    np.testing.assert_allclose(got.numpy(), conv_loop(xp, w, dilation=dilation), atol=1e-12)
    valid = conv2d(_t(x), _t(w), padding="valid", dilation=dilation)
    np.testing.assert_allclose(valid.numpy(), conv_loop(x, w, dilation=dilation), atol=1e-12)
    check_grads(lambda x, w: conv2d(x, w, padding="same", dilation=dilation),
                [x[:1, :, :4, :5], w], rng)


@pytest.mark.parametrize("mode,np_mode", [("reflect", "reflect"), ("replicate", "edge"),
                                          ("circular", "wrap")])
def test_conv2d_padding_modes_match_numpy_pad(mode, np_mode, rng):
    conv = Conv2d(2, 3, (3, 2), padding=(2, 1), padding_mode=mode, dtype=kiln.float64)
    x = rng.standard_normal((2, 2, 4, 5))
    xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (1, 1)), mode=np_mode)
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    want = conv_loop(xp, w) + b[:, None, None]
    np.testing.assert_allclose(conv(_t(x)).detach().numpy(), want, atol=1e-12)
    check_grads(lambda x, w: _mode_conv(conv, x, w),
                [x[:1], w.copy()], rng)


def _mode_conv(conv, x, w):
    """conv's forward (padding mode included) with weight w, so w can be perturbed."""
    return conv2d(pad2d(x, conv._pads, conv.padding_mode), w, stride=conv.stride)


def test_conv2d_unbatched_input_and_float32_module(rng):
    conv = Conv2d(3, 4, 3, stride=2, padding=1)
    x = _t(rng.standard_normal((3, 7, 7)).astype(np.float32))
    out = conv(x)
    assert tuple(out.shape) == (4, 4, 4) and out.dtype == kiln.float32
    np.testing.assert_array_equal(out.detach().numpy(),
                                  conv(kiln.unsqueeze(x, 0)).detach().numpy()[0])


# ---- pooling ---------------------------------------------------------------------------------
def _pool(shape, k, s, p=(0, 0), d=(1, 1), ceil=False):
    return pytest.param(dict(shape=shape, k=k, s=s, p=p, d=d, ceil=ceil),
                        id=f"{shape}-k{k}-s{s}-p{p}-d{d}-ceil{ceil}".replace(" ", ""))


POOL_CONFIGS = [
    _pool((2, 3, 8, 8), (2, 2), (2, 2)),
    _pool((1, 2, 7, 9), (3, 2), (2, 3)),
    _pool((2, 1, 6, 7), (3, 3), (1, 2), p=(1, 1)),
    _pool((1, 2, 9, 8), (2, 3), (2, 2), p=(1, 1), d=(2, 1)),
    _pool((1, 2, 7, 6), (3, 2), (2, 2), p=(1, 1), ceil=True),
    _pool((2, 1, 5, 5), (2, 2), (2, 2), ceil=True),
]


def _distinct(rng, shape):
    """Values 0.1 apart: no ties, so finite differences never cross an argmax switch."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1


@pytest.mark.parametrize("cfg", POOL_CONFIGS)
def test_max_pool2d_matches_loop_reference_and_its_gradient(cfg, rng):
    x = rng.standard_normal(cfg["shape"])
    args = (cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["ceil"])
    xt = _t(x).requires_grad_()
    out = max_pool2d(xt, *args)
    g = rng.standard_normal(tuple(out.shape))
    want, want_grad = max_pool_loop(x, *args, g=g)
    np.testing.assert_array_equal(out.detach().numpy(), want)
    (out * _t(g)).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), want_grad, atol=1e-15)
    check_grads(lambda x: max_pool2d(x, *args), [_distinct(rng, cfg["shape"])], rng)


def test_max_pool2d_ties_route_gradient_to_the_first_maximum():
    x = _t(np.zeros((1, 1, 4, 4))).requires_grad_()
    max_pool2d(x, 3, stride=1).sum().backward()
    # NOTE: every window's first tap wins: the window at (i, j) sends its 1 to (i, j)
    want = np.zeros((4, 4))
    want[:2, :2] = 1
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], want)


# NOTE: avg_pool2d has no dilation (as in PyTorch)
AVG_CONFIGS = [c for c in POOL_CONFIGS if c.values[0]["d"] == (1, 1)]


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("cfg", AVG_CONFIGS)
def test_avg_pool2d_matches_loop_reference(cfg, count_include_pad, rng):
    x = rng.standard_normal(cfg["shape"])
    args = (cfg["k"], cfg["s"], cfg["p"], cfg["ceil"], count_include_pad)
    got = avg_pool2d(_t(x), *args)
    np.testing.assert_allclose(got.numpy(), avg_pool_loop(x, *args), rtol=1e-13)
    check_grads(lambda x: avg_pool2d(x, *args), [x], rng)


@pytest.mark.parametrize("size,out", [((6, 8), (3, 4)), ((7, 5), (3, 2)), ((5, 5), (1, 1)),
                                      ((6, 7), (None, 3))])
def test_adaptive_avg_pool2d_windows(size, out, rng):
    x = rng.standard_normal((2, 3) + size)
    want_hw = tuple(s if o is None else o for s, o in zip(size, out))
    want = np.zeros((2, 3) + want_hw)
    for i, j in itertools.product(range(want_hw[0]), range(want_hw[1])):
        h0, h1 = (i * size[0]) // want_hw[0], -(-((i + 1) * size[0]) // want_hw[0])
        w0, w1 = (j * size[1]) // want_hw[1], -(-((j + 1) * size[1]) // want_hw[1])
        want[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    np.testing.assert_allclose(AdaptiveAvgPool2d(out)(_t(x)).numpy(), want, rtol=1e-13)
    check_grads(lambda x: adaptive_avg_pool2d(x, out), [x[:1, :1]], rng)


def test_pooling_unbatched_input(rng):
    x = _t(rng.standard_normal((2, 6, 6)))
    assert tuple(MaxPool2d(2)(x).shape) == (2, 3, 3)
    np.testing.assert_array_equal(AvgPool2d(3, 1)(x).numpy(),
                                  AvgPool2d(3, 1)(kiln.unsqueeze(x, 0)).numpy()[0])


# ---- modules ---------------------------------------------------------------------------------
REPRS = [
    (lambda nn: nn.Conv2d(1, 8, 3, padding=1),
     "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"),
    (lambda nn: nn.Conv2d(3, 6, 1), "Conv2d(3, 6, kernel_size=(1, 1), stride=(1, 1))"),
    (lambda nn: nn.Conv2d(4, 8, (3, 5), stride=2, padding=1, dilation=(2, 1), groups=2,
                          bias=False, padding_mode="circular"),
     "Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 2), padding=(1, 1), dilation=(2, 1), "
     "groups=2, bias=False, padding_mode=circular)"),
    (lambda nn: nn.Conv2d(3, 6, 3, padding="same"),
     "Conv2d(3, 6, kernel_size=(3, 3), stride=(1, 1), padding=same)"),
    (lambda nn: nn.MaxPool2d(2),
     "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"),
    (lambda nn: nn.MaxPool2d((3, 2), stride=1, padding=1, ceil_mode=True),
     "MaxPool2d(kernel_size=(3, 2), stride=1, padding=1, dilation=1, ceil_mode=True)"),
    (lambda nn: nn.AvgPool2d(3, stride=2, padding=1),
     "AvgPool2d(kernel_size=3, stride=2, padding=1)"),
    (lambda nn: nn.AdaptiveAvgPool2d((5, 7)), "AdaptiveAvgPool2d(output_size=(5, 7))"),
    (lambda nn: nn.AdaptiveAvgPool2d(1), "AdaptiveAvgPool2d(output_size=1)"),
]


class _Layers:
    """The layers under test, spelled like `torch.nn`."""

    Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d = Conv2d, MaxPool2d, AvgPool2d, \
        AdaptiveAvgPool2d


@pytest.mark.parametrize("make,text", REPRS, ids=[t for _, t in REPRS])
def test_module_repr_is_pytorchs(make, text):
    assert repr(make(_Layers)) == text


def test_conv2d_parameters_and_default_init():
    conv = Conv2d(4, 8, 3, groups=2)
    params = dict(conv.named_parameters())
    assert {k: tuple(v.shape) for k, v in params.items()} == {"weight": (8, 2, 3, 3),
                                                              "bias": (8,)}
    assert all(p.requires_grad for p in params.values())
    # NOTE: kaiming_uniform_(a=sqrt(5)) and the bias rule both give U(-1/sqrt(fan_in), ...)
    bound = 1 / math.sqrt(2 * 3 * 3)
    for p in params.values():
        values = np.abs(p.detach().numpy())
        assert values.max() <= bound and values.max() > 0.6 * bound
    assert [k for k, _ in Conv2d(1, 2, 3, bias=False).named_parameters()] == ["weight"]
    assert Conv2d(1, 2, 3, bias=False).bias is None


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), "in_channels must be"),
    (dict(in_channels=4, out_channels=3, kernel_size=3, groups=2), "out_channels must be"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, padding="full"), "Invalid padding"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, stride=2, padding="same"),
     "strided convolutions"),
    (dict(in_channels=1, out_channels=1, kernel_size=3, padding_mode="mirror"),
     "padding_mode must be one of"),
    (dict(in_channels=1, out_channels=1, kernel_size=(3, 3, 3)), "kernel_size must be"),
])
def test_conv2d_module_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2d(**kwargs)


def test_shape_errors_name_shapes_and_the_user_line():
    with pytest.raises(kiln.ShapeError) as err:
        conv2d(kiln.ones(1, 3, 8, 8), kiln.ones(4, 4, 3, 3))  # the bad conv line
    msg = str(err.value)
    assert "input f32[1,3,8,8] has 3 channels but weight f32[4,4,3,3] expects 4 " \
           "(groups=1)" in msg and "the bad conv line" in msg
    with pytest.raises(kiln.ShapeError, match="output size would be 0"):
        conv2d(kiln.ones(1, 1, 2, 2), kiln.ones(1, 1, 3, 3))
    with pytest.raises(kiln.ShapeError, match="groups=2 does not divide"):
        conv2d(kiln.ones(1, 2, 4, 4), kiln.ones(3, 1, 3, 3), groups=2)
    with pytest.raises(kiln.ShapeError, match=r"bias has shape \[3\]"):
        conv2d(kiln.ones(1, 2, 4, 4), kiln.ones(2, 2, 3, 3), kiln.ones(3))
    with pytest.raises(kiln.ShapeError, match="at most half of kernel_size"):
        max_pool2d(kiln.ones(1, 1, 6, 6), 2, padding=2)
    with pytest.raises(kiln.ShapeError, match=r"3-D \(C, H, W\) or 4-D"):
        avg_pool2d(kiln.ones(6, 6), 2)


def test_dtype_errors_and_unsupported_options():
    with pytest.raises(kiln.KilnError, match="operand dtypes differ"):
        conv2d(kiln.ones(1, 1, 4, 4), kiln.ones(1, 1, 3, 3, dtype=kiln.float64))
    with pytest.raises(kiln.KilnError, match="floating-point"):
        max_pool2d(kiln.ones(1, 1, 4, 4, dtype=kiln.int64), 2)
    with pytest.raises(kiln.NotSupportedError, match="return_indices"):
        max_pool2d(kiln.ones(1, 1, 4, 4), 2, return_indices=True)
    with pytest.raises(kiln.NotSupportedError, match="divisor_override"):
        avg_pool2d(kiln.ones(1, 1, 4, 4), 2, divisor_override=3)


# ---- graphs: the autograd pass and @kiln.jit share the registry's VJPs ----------------------
def _cnn_loss(x, w):
    y = kiln.relu(conv2d(x, w, stride=1, padding=1, groups=2))
    return (max_pool2d(y, 2, padding=1) * avg_pool2d(y, 3, 2, 1, ceil_mode=True)).sum()


def test_graph_autograd_pass_matches_eager_autograd(rng):
    x, w = rng.standard_normal((2, 4, 7, 7)), rng.standard_normal((6, 2, 3, 3))
    trace, _ = trace_function(_cnn_loss, (_t(x), _t(w)), {})
    graph = verify(grad_graph(trace.builder.graph, wrt=[0, 1]))
    ops = {n.op for n in graph.nodes}
    assert {"conv2d_grad_input", "conv2d_grad_weight", "max_pool2d_grad",
            "avg_pool2d_grad"} <= ops
    loss, gx, gw = interpret(graph, [x, w])
    xt, wt = _t(x).requires_grad_(), _t(w).requires_grad_()
    eager = _cnn_loss(xt, wt)
    eager.backward()
    np.testing.assert_allclose(loss, eager.item(), rtol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_jit_small_cnn_matches_eager(rng):
    conv1, conv2 = Conv2d(1, 4, 3, padding=1), Conv2d(4, 6, 3, groups=2, padding="same")

    def net(x):
        y = max_pool2d(kiln.relu(conv1(x)), 2)
        return adaptive_avg_pool2d(kiln.relu(conv2(y)), 1)
    x = _t(rng.standard_normal((8, 1, 8, 8)).astype(np.float32))
    with kiln.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        got = kiln.jit(net)(x)
        want = net(x)
    assert tuple(got.shape) == (8, 6, 1, 1)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-6, atol=1e-6)



@pytest.mark.parametrize("name", ["kiln.ir.ops.conv", "kiln.nn.conv", "kiln.nn.pooling"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


# ---- against PyTorch (CI installs it; skipped with the reason where it is missing) ----------
def _torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed here; CI installs "
                                               "it and these tests compare against it")


def _compare_with_torch(kiln_fn, torch_fn, arrays, rng):
    """Forward and every input's gradient (for one random cotangent), float64."""
    torch = _torch()
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    ty = torch_fn(*tt)
    cot = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(cot))
    kt = [_t(a).requires_grad_() for a in arrays]
    ky = kiln_fn(*kt)
    (ky * _t(cot)).sum().backward()
    np.testing.assert_allclose(ky.detach().numpy(), ty.detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    for i, (k, t) in enumerate(zip(kt, tt)):
        np.testing.assert_allclose(k.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"gradient of input {i}")


@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv2d_matches_pytorch(cfg, rng):
    torch = _torch()
    arrays = [rng.standard_normal(cfg["x"]), rng.standard_normal(cfg["w"]),
              rng.standard_normal(cfg["w"][0])]
    _compare_with_torch(lambda x, w, b: conv2d(x, w, b, **_conv_args(cfg)),
                        lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **_conv_args(cfg)),
                        arrays, rng)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("cfg", POOL_CONFIGS)
def test_max_pool2d_matches_pytorch(cfg, ties, rng):
    torch = _torch()
    args = (cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["ceil"])
    x = rng.integers(0, 3, cfg["shape"]).astype(np.float64) if ties \
        else rng.standard_normal(cfg["shape"])
    _compare_with_torch(lambda x: max_pool2d(x, *args),
                        lambda x: torch.nn.functional.max_pool2d(x, *args), [x], rng)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("cfg", AVG_CONFIGS)
def test_avg_pool2d_matches_pytorch(cfg, count_include_pad, rng):
    torch = _torch()
    args = (cfg["k"], cfg["s"], cfg["p"], cfg["ceil"], count_include_pad)
    _compare_with_torch(lambda x: avg_pool2d(x, *args),
                        lambda x: torch.nn.functional.avg_pool2d(x, *args),
                        [rng.standard_normal(cfg["shape"])], rng)


def test_adaptive_avg_pool2d_matches_pytorch(rng):
    torch = _torch()
    _compare_with_torch(lambda x: adaptive_avg_pool2d(x, (3, 2)),
                        lambda x: torch.nn.functional.adaptive_avg_pool2d(x, (3, 2)),
                        [rng.standard_normal((2, 3, 7, 5))], rng)


@pytest.mark.parametrize("kwargs", [dict(padding="same", dilation=(2, 1)),
                                    dict(padding=(2, 1), padding_mode="reflect"),
                                    dict(padding=1, padding_mode="replicate", stride=2),
                                    dict(padding=(1, 2), padding_mode="circular")],
                         ids=["same", "reflect", "replicate", "circular"])
def test_conv2d_module_matches_pytorch(kwargs, rng):
    torch = _torch()
    ours = Conv2d(2, 4, (2, 3), dtype=kiln.float64, **kwargs)
    theirs = torch.nn.Conv2d(2, 4, (2, 3), dtype=torch.float64, **kwargs)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.detach().numpy()))
        theirs.bias.copy_(torch.tensor(ours.bias.detach().numpy()))
    _compare_with_torch(ours, theirs, [rng.standard_normal((2, 2, 5, 6))], rng)


@pytest.mark.parametrize("make,text", REPRS, ids=[t for _, t in REPRS])
def test_module_repr_matches_pytorch(make, text):
    torch = _torch()
    assert repr(make(torch.nn)) == text
