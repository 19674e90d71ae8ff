"""`kiln.autograd.grad` / `kiln.autograd.backward`: gradients as values, against PyTorch, with
`create_graph` (double backward: gradient penalties, Hessian-vector products) checked against
PyTorch and finite differences in float64, eagerly and under @kiln.jit."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
import kiln.autograd
from kiln import nn

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(7)
X = RNG.standard_normal((5, 4))
W1, B1 = RNG.standard_normal((6, 4)) * 0.5, RNG.standard_normal(6) * 0.1
W2 = RNG.standard_normal((1, 6)) * 0.5


def _critic(lib, x, w1, b1, w2):
    """A small MLP critic as in WGAN-GP: tanh and softplus-like smooth layers."""
    h = lib.tanh(lib.matmul(x, w1.transpose(0, 1)) + b1)
    return lib.matmul(h * lib.sigmoid(h), w2.transpose(0, 1))


def _tensors(lib, dtype=np.float64):
    make = kiln.tensor if lib is kiln else torch.tensor
    return [make(a.astype(dtype), requires_grad=True) for a in (X, W1, B1, W2)]


def _penalty(lib, grad_fn, ts):
    out = _critic(lib, *ts)
    g, = grad_fn(out.sum(), ts[0], create_graph=True)
    return ((g.pow(2).sum(dim=1).sqrt() - 1) ** 2).mean(), g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_penalty_matches_torch(dtype):
    kt, tt = _tensors(kiln, dtype), _tensors(torch, dtype)
    kp, kg = _penalty(kiln, kiln.autograd.grad, kt)
    tp, tg = _penalty(torch, torch.autograd.grad, tt)
    assert kg.requires_grad and kt[0].grad is None
    kp.backward()
    tp.backward()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(kg.detach().numpy(), tg.detach().numpy(), rtol=tol, atol=tol)
    for k, t in zip(kt, tt):
        np.testing.assert_allclose(k.grad.numpy(), t.grad.numpy(), rtol=tol * 10, atol=tol)


def test_double_backward_matches_finite_differences_in_float64():
    v = RNG.standard_normal(X.shape)

    def grad_dot_v(x_array):
        ts = [kiln.tensor(x_array, requires_grad=True)] + _tensors(kiln)[1:]
        g, = kiln.autograd.grad(_critic(kiln, *ts).sum(), ts[0], create_graph=True)
        return g, ts[0], (g * kiln.tensor(v)).sum()

    _, x, gv = grad_dot_v(X)
    hvp, = kiln.autograd.grad(gv, x)           # NOTE: H v, by double backward
    eps = 1e-6
    numeric = np.zeros_like(X)
    for idx in np.ndindex(X.shape):
        plus, minus = X.copy(), X.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (grad_dot_v(plus)[2].item() - grad_dot_v(minus)[2].item()) / (2 * eps)
    np.testing.assert_allclose(hvp.numpy(), numeric, rtol=1e-6, atol=1e-8)


def test_grad_returns_values_without_touching_dot_grad():
    x = kiln.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = kiln.tensor([0.5, -1.0, 2.0], requires_grad=True)
    y = (x * w).sum()
    gx, gw = kiln.autograd.grad(y, [x, w])
    assert gx.tolist() == [0.5, -1.0, 2.0] and gw.tolist() == [1.0, 2.0, 3.0]
    assert x.grad is None and w.grad is None and not gx.requires_grad
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        kiln.autograd.grad(y, x)


def test_grad_outputs_several_outputs_and_a_non_leaf_input_match_torch():
    def run(lib, grad_fn, make):
        x = make(X.astype(np.float32), requires_grad=True)
        h = lib.tanh(x * 2)
        a, b = (h ** 2).sum(dim=1), h.sum(dim=0)
        weights = [make(np.arange(5, dtype=np.float32)), make(np.ones(4, np.float32) * 3)]
        return grad_fn([a, b], [h, x], grad_outputs=weights, retain_graph=True)

    got = run(kiln, kiln.autograd.grad, kiln.tensor)
    want = run(torch, torch.autograd.grad, torch.tensor)
    for k, t in zip(got, want):
        np.testing.assert_allclose(k.numpy(), t.numpy(), rtol=1e-5, atol=1e-6)


def test_grad_runs_only_the_part_of_the_graph_it_needs():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    other = kiln.tensor([3.0, 4.0], requires_grad=True)
    saved = other * 1.0
    y = (x * x).sum() + (saved * saved).sum()
    with kiln.no_grad():
        saved.mul_(2.0)       # NOTE: breaks only the branch grad(y, x) does not need
    g, = kiln.autograd.grad(y, x)
    assert g.tolist() == [2.0, 4.0] and other.grad is None


def test_allow_unused_materialize_grads_and_errors_match_torch():
    x = kiln.tensor([1.0], requires_grad=True)
    unused = kiln.tensor([2.0], requires_grad=True)
    y = (x * 3).sum()
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
        kiln.autograd.grad(y, [x, unused], retain_graph=True)
    gx, gu = kiln.autograd.grad(y, [x, unused], allow_unused=True, retain_graph=True)
    assert gx.tolist() == [3.0] and gu is None
    _, gu = kiln.autograd.grad(y, [x, unused], materialize_grads=True, retain_graph=True)
    assert gu.tolist() == [0.0]
    with pytest.raises(RuntimeError, match="does not require grad"):
        kiln.autograd.grad(y, kiln.tensor([1.0]))
    with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad"):
        kiln.autograd.grad(kiln.tensor([1.0]).sum(), x)
    pair = kiln.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="implicitly created only for scalar outputs"):
        kiln.autograd.grad(pair * 2, pair)
    with pytest.raises(RuntimeError, match=r"Mismatch in shape: grad_output\[0\] has a "
                                           r"shape of \[3\] and output\[0\] has a shape"):
        kiln.autograd.grad(pair * 2, pair, grad_outputs=kiln.ones(3))


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_backward_with_inputs_and_create_graph_accumulates_like_torch():
    def run(lib, backward, make):
        a = make(np.array([1.0, 2.0]), requires_grad=True)
        b = make(np.array([0.5, -1.0]), requires_grad=True)
        loss = (a ** 3 * b).sum()
        backward([loss, (a * b).sum()], inputs=[a])
        first_b = b.grad
        loss2 = (a ** 3).sum()
        backward(loss2, create_graph=True)
        grad_a = a.grad
        return first_b, grad_a.detach().numpy().copy(), grad_a.requires_grad

    got = run(kiln, kiln.autograd.backward, kiln.tensor)
    want = run(torch, torch.autograd.backward, torch.tensor)
    assert got[0] is None and want[0] is None
    np.testing.assert_allclose(got[1], want[1])
    assert got[2] is want[2] is True


def test_retain_grad_and_a_non_leaf_root_input():
    x = kiln.tensor([2.0], requires_grad=True)
    h = x * x
    g, = kiln.autograd.grad(h.sum(), h)
    assert g.tolist() == [1.0]


@pytest.mark.filterwarnings("error::kiln.KilnJitWarning")
def test_gradient_penalty_under_jit_compiles_and_matches_eager():
    kiln.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x_np = X.astype(np.float32)

    def penalty(x):
        g, = kiln.autograd.grad(critic(x).sum(), x, create_graph=True)
        return ((g.pow(2).sum(dim=1) - 1) ** 2).mean()

    eager = penalty(kiln.tensor(x_np, requires_grad=True))
    eager.backward()
    # NOTE: the last bias does not change the input gradient: no gradient (None), as in torch
    want = [None if p.grad is None else p.grad.numpy().copy() for p in critic.parameters()]
    assert want[-1] is None and all(w is not None for w in want[:-1])
    critic.zero_grad()
    got = kiln.jit(penalty)(kiln.tensor(x_np, requires_grad=True))
    got.backward()
    np.testing.assert_allclose(got.item(), eager.item(), rtol=1e-6)
    assert list(critic.parameters())[-1].grad is None
    for p, w in zip(list(critic.parameters())[:-1], want):
        np.testing.assert_allclose(p.grad.numpy(), w, rtol=1e-5, atol=1e-6)


def test_create_graph_through_a_jitted_functions_backward_is_not_supported_yet():
    f = kiln.jit(lambda x: (kiln.tanh(x) * x).sum())
    x = kiln.tensor([0.5, 1.0], requires_grad=True)
    with pytest.raises(kiln.NotSupportedError, match="create_graph=True through the backward "
                                                     "of a @kiln.jit function"):
        kiln.autograd.grad(f(x), x, create_graph=True)
    g, = kiln.autograd.grad(f(x), x)       # NOTE: a first-order gradient is fine
    np.testing.assert_allclose(g.numpy(), np.tanh([0.5, 1.0]) + [0.5, 1.0]
                               * (1 - np.tanh([0.5, 1.0]) ** 2), rtol=1e-6)


def _scaled_tanh(lib):
    """The same custom Function in both libraries: two tensor inputs, a number, two outputs
    (the second non-differentiable). NOTE: the scale is re-read in backward rather than kept
    as `ctx.scale`: @kiln.jit takes an attribute write for a side effect and runs eagerly."""
    base = kiln.autograd.Function if lib is kiln else torch.autograd.Function

    class ScaledTanh(base):
        @staticmethod
        def forward(ctx, x, w, scale):
            y = lib.tanh(x * w) * scale
            ctx.save_for_backward(x, w, y)
            sign = (y > 0).to(y.dtype)
            ctx.mark_non_differentiable(sign)
            return y, sign

        @staticmethod
        def backward(ctx, gy, gsign):
            x, w, y = ctx.saved_tensors
            local = gy * (SCALE - y * y / SCALE)
            return local * w, (local * x).sum(dim=0), None

    return ScaledTanh


SCALE = 1.5


@pytest.mark.filterwarnings("error::kiln.KilnJitWarning")
@pytest.mark.parametrize("jit", [False, True])
def test_custom_function_matches_torch(jit):
    a = RNG.standard_normal((3, 2)).astype(np.float32)
    w = RNG.standard_normal(2).astype(np.float32)

    def run(lib, make, fn):
        x, wt = make(a, requires_grad=True), make(w, requires_grad=True)
        y, sign = fn(x, wt)
        (y ** 2).sum().backward()
        return y.detach().numpy(), sign.requires_grad, x.grad.numpy(), wt.grad.numpy()

    def k_fn(x, wt):
        return _scaled_tanh(kiln).apply(x, wt, SCALE)

    got = run(kiln, kiln.tensor, kiln.jit(k_fn) if jit else k_fn)
    want = run(torch, torch.tensor, lambda x, wt: _scaled_tanh(torch).apply(x, wt, SCALE))
    assert got[1] is want[1] is False
    for k, t in zip(got[::2] + got[2:3], want[::2] + want[2:3]):
        np.testing.assert_allclose(k, t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-5, atol=1e-6)


def test_custom_function_errors():
    class WrongCount(kiln.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g, g

    x = kiln.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="returned an incorrect number of gradients "
                                           r"\(expected 1, got 2\)"):
        WrongCount.apply(x).sum().backward()

    class Saves(kiln.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 2 * x * g

    y = kiln.tensor([3.0], requires_grad=True)
    z = y * 1.0
    out = Saves.apply(z)
    with kiln.no_grad():
        z.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    with pytest.raises(kiln.NotSupportedError, match="custom kiln.autograd.Function Saves"):
        kiln.autograd.grad(Saves.apply(y).sum(), y, create_graph=True)
    assert Saves.apply(kiln.tensor([2.0])).tolist() == [4.0]    # NOTE: no grad: no node


def test_tensor_backward_body_supports_create_graph_and_inputs():
    # NOTE: frontend.autograd.tensor_backward is what Tensor.backward is to call (one line)
    from kiln.frontend.autograd import tensor_backward
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    w = kiln.tensor([3.0, 4.0], requires_grad=True)
    tensor_backward((x ** 3 * w).sum(), create_graph=True, inputs=[x])
    assert x.grad.requires_grad and w.grad is None
    assert x.grad.tolist() == [9.0, 48.0]
    g = x.grad
    x.grad = None
    g.sum().backward()                  # NOTE: d/dx sum(3 x^2 w) = 6 x w
    assert x.grad.tolist() == [18.0, 48.0] and w.grad.tolist() == [3.0, 12.0]
    y = (x * 2).sum()
    tensor_backward(y, retain_graph=True)
    tensor_backward(y)
    with pytest.raises(RuntimeError, match="a second time"):
        tensor_backward(y)
