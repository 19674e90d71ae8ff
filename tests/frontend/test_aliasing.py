"""Eager aliasing is PyTorch's: views share storage with their base, in-place ops and
`t[i] = v` write into it, version counters refuse a backward through an overwritten value, and
a second backward without `retain_graph=True` raises."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import kiln
import kiln.nn as nn


# ---- the examples of the issue ----------------------------------------------------------------
def test_fill_through_a_slice_reaches_the_base():
    a = kiln.zeros(4)
    a[1:3].fill_(5)
    assert a.tolist() == [0.0, 5.0, 5.0, 0.0]


def test_add_through_view_and_transpose_reaches_the_base():
    b = kiln.zeros(2, 2)
    b.view(4).add_(1)
    assert b.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    x = kiln.tensor([[1.0, 2.0], [3.0, 4.0]])
    x.t().add_(kiln.tensor([[10.0, 20.0], [30.0, 40.0]]))
    assert x.tolist() == [[11.0, 32.0], [23.0, 44.0]]


def test_init_of_a_slice_of_a_parameter_and_a_row_of_an_embedding():
    lin = nn.Linear(3, 4)
    nn.init.zeros_(lin.bias[:2])
    assert lin.bias.tolist()[:2] == [0.0, 0.0] and lin.bias.requires_grad
    emb = nn.Embedding(5, 3)
    with kiln.no_grad():
        emb.weight[0].fill_(0)
    assert emb.weight[0].tolist() == [0.0, 0.0, 0.0]
    assert not np.all(emb.weight.detach().numpy()[1:] == 0)


def test_backward_twice_raises_unless_the_graph_is_retained():
    w = kiln.tensor([1.0, 2.0], requires_grad=True)
    loss = (w.exp() * w).sum()
    loss.backward(retain_graph=True)
    first = w.grad.tolist()
    loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * np.array(first), rtol=1e-6)
    with pytest.raises(kiln.KilnError, match="backward through the graph a second time"):
        loss.backward()


def test_backward_twice_without_saved_values_is_allowed_like_pytorch():
    w = kiln.tensor([1.0, 2.0], requires_grad=True)
    loss = (w + 1).sum()        # no VJP here reads a saved value
    loss.backward()
    loss.backward()
    assert w.grad.tolist() == [2.0, 2.0]


# ---- views ---------------------------------------------------------------------------------
# (kiln view, the same view in NumPy): NumPy's views are the oracle for which elements alias
VIEWS = {
    "view": (lambda x: x.view(6), lambda a: a.reshape(6)),
    "reshape": (lambda x: x.reshape(3, 2), lambda a: a.reshape(3, 2)),
    "int-index": (lambda x: x[1], lambda a: a[1]),
    "slice": (lambda x: x[:, 1:], lambda a: a[:, 1:]),
    "step-slice": (lambda x: x[..., ::2], lambda a: a[..., ::2]),
    "t": (lambda x: x.t(), lambda a: a.T),
    "transpose": (lambda x: x.transpose(0, 1), lambda a: a.swapaxes(0, 1)),
    "permute": (lambda x: x.permute(1, 0), lambda a: a.transpose(1, 0)),
    "unsqueeze": (lambda x: x.unsqueeze(0), lambda a: a[None]),
    "squeeze": (lambda x: x[None].squeeze(0), lambda a: a),
    "detach": (lambda x: x.detach(), lambda a: a),
    "data": (lambda x: x.data, lambda a: a),
    "narrow": (lambda x: x.narrow(1, 1, 2), lambda a: a[:, 1:3]),
    "select": (lambda x: x.select(1, 2), lambda a: a[:, 2]),
    "flatten": (lambda x: x.flatten(), lambda a: a.reshape(-1)),
    "chain": (lambda x: x.t()[1:].reshape(4)[::3], lambda a: a.T[1:].reshape(4)[::3]),
    "diagonal": (lambda x: x.diagonal(), lambda a: np.einsum("ii->i", a[:, :2])),
    "diagonal-offset": (lambda x: x.diagonal(1), lambda a: np.einsum("ii->i", a[:, 1:])),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_every_view_shares_storage_both_ways(name):
    make, make_np = VIEWS[name]
    x = kiln.arange(6.0).reshape(2, 3)
    ref = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    v, v_np = make(x), make_np(ref)
    v.mul_(10)                          # a write through the view reaches the base
    v_np *= 10
    np.testing.assert_array_equal(x.numpy(), ref)
    x.add_(1)                           # and a write to the base reaches the view
    ref += 1
    np.testing.assert_array_equal(v.numpy(), v_np)


def test_reshape_copies_when_it_cannot_view_and_view_refuses():
    x = kiln.arange(6.0).reshape(2, 3).t()            # not contiguous
    r = x.reshape(6)
    r.fill_(0)
    assert x.tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    with pytest.raises(kiln.KilnError, match="view size is not compatible"):
        x.view(6)
    y = x.reshape(3, 2)                               # same shape: a view
    y.fill_(7)
    assert x.tolist() == [[7.0, 7.0]] * 3


def test_setitem_writes_into_the_storage():
    x = kiln.zeros(3, 4)
    x[1] = 5
    x[:, 0] = kiln.tensor([1.0, 2.0, 3.0])
    x[2, 1:3] += 1
    assert x.tolist() == [[1, 0, 0, 0], [2, 5, 5, 5], [3, 1, 1, 0]]


def test_writes_into_an_expanded_view_are_refused():
    x = kiln.ones(3)
    e = x.expand(2, 3)
    with pytest.raises(kiln.KilnError, match="more than one element of the written-to tensor"):
        e.add_(1)
    assert x.tolist() == [1.0, 1.0, 1.0]


def test_clone_and_deepcopy_do_not_share():
    x = kiln.ones(3)
    c = x.clone()
    c.add_(1)
    assert x.tolist() == [1.0, 1.0, 1.0]
    lin = nn.Linear(2, 2)
    other = copy.deepcopy(lin)
    with kiln.no_grad():
        other.weight.fill_(3)
    assert not np.all(lin.weight.detach().numpy() == 3)


def test_results_never_alias_their_inputs():
    x = kiln.ones(3)
    for y in (x + 0, x * 1, x.to(kiln.float64), x.clone(), x.reshape(3).clone(), -(-x)):
        y.add_(1)
    assert x.tolist() == [1.0, 1.0, 1.0]
    assert x.to(kiln.float32) is x          # like PyTorch: no conversion, the same tensor


# ---- autograd with views and versions --------------------------------------------------------
def test_in_place_through_a_view_is_differentiated_like_pytorch():
    w = kiln.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    x = w * 1
    x[1:3].mul_(kiln.tensor([10.0, 100.0]))
    (x * x).sum().backward()
    # x = [w0, 10 w1, 100 w2, w3]: d/dw sum x^2 = 2 x * dx/dw
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 2 * 20 * 10, 2 * 300 * 100, 8.0])


def test_a_view_taken_before_its_base_was_written_sees_the_new_history():
    w = kiln.tensor([1.0, 2.0], requires_grad=True)
    x = w * 1
    v = x[0:1]
    x.mul_(3)                           # v's values are 3 * w0 now
    v.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [3.0, 0.0])


def test_overwriting_a_non_leaf_cuts_its_history():
    w = kiln.tensor([1.0, 2.0], requires_grad=True)
    y = w * 2
    y.fill_(1.0)
    (y * w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 1.0])


def test_in_place_on_a_view_of_a_leaf_that_requires_grad_is_refused():
    w = kiln.ones(3, requires_grad=True)
    with pytest.raises(kiln.KilnError, match="view of a leaf Variable"):
        w[0:2].add_(1)


def test_modifying_a_saved_output_refuses_the_backward():
    w = kiln.tensor([0.5, 1.0], requires_grad=True)
    y = w.exp()
    y.mul_(2)
    with pytest.raises(kiln.KilnError, match="modified by an inplace operation"):
        y.sum().backward()


def test_modifying_an_unsaved_input_is_fine():
    w = kiln.tensor([0.5, 1.0], requires_grad=True)
    x = kiln.tensor([1.0, 1.0])
    y = (w + x).sum()                   # add's VJP reads no saved value
    x.add_(5)
    y.backward()
    assert w.grad.tolist() == [1.0, 1.0]


def test_grad_accumulates_in_place_like_pytorch():
    w = kiln.ones(2, requires_grad=True)
    (w * 2).sum().backward()
    g = w.grad
    (w * 3).sum().backward()
    assert g is w.grad and g.tolist() == [5.0, 5.0]


def test_gradients_of_two_leaves_do_not_share_storage():
    a = kiln.ones(2, requires_grad=True)
    b = kiln.ones(2, requires_grad=True)
    (a + b).sum().backward()
    a.grad.zero_()
    assert b.grad.tolist() == [1.0, 1.0]


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("program", ["slice-mul", "view-chain", "transpose-add", "setitem",
                                     "setitem-saved"])
def test_view_autograd_matches_pytorch(program):
    def run(lib, w):
        x = w * 1
        if program == "slice-mul":
            x[1:3].mul_(x[0:2].detach() + 1)
            return (x.exp() * x).sum()
        if program == "view-chain":
            v = x.view(2, 2).t()[1]
            v.mul_(3)
            return (x * x).sum()
        if program == "transpose-add":
            m = x.view(2, 2)
            m.t().add_(m.detach().clone())
            return (m.sigmoid() * 2).sum()
        if program == "setitem":
            x[2] = x[0] + x[1]
            return (x * x).sum()
        x[2] = x[0] * x[1]      # mul saved x[0], a view of x, which the write changes
        return (x * x).sum()

    data = np.array([0.5, -1.0, 2.0, 0.25])
    wk = kiln.tensor(data, dtype=kiln.float64, requires_grad=True)
    wt = torch.tensor(data, dtype=torch.float64, requires_grad=True)
    lk, lt = run(kiln, wk), run(torch, wt)
    if program == "setitem-saved":
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            lt.backward()
        with pytest.raises(kiln.KilnError, match="modified by an inplace operation"):
            lk.backward()
        return
    lk.backward()
    lt.backward()
    np.testing.assert_allclose(lk.item(), lt.item(), rtol=1e-12)
    np.testing.assert_allclose(wk.grad.numpy(), wt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("program", ["relu_", "clamp_", "pow_", "mul_-grad", "copy_-leaf",
                                     "div-then-add_", "relu-input-written"])
def test_in_place_ops_that_need_the_old_value_differentiate_like_pytorch(program):
    def run(lib, a, w):
        h = a * 2.0
        if program == "relu_":
            h.relu_()
        elif program == "clamp_":
            h.clamp_(-0.5, 0.25)
        elif program == "pow_":
            h.pow_(2.0)
        elif program == "mul_-grad":
            h.mul_(w)
        elif program == "copy_-leaf":
            h = a.detach() * 0.0
            h.copy_(a)
        elif program == "relu-input-written":
            x = -a
            h = x.relu()                # relu's gradient reads its output, not x
            x.add_(0.5)
        else:
            h = a / (a.abs() + 1.0)
            h.add_(0.5)
        return (h * h).sum()

    data = np.array([[0.5, -1.0, 2.0]])
    ak, wk = (kiln.tensor(d, dtype=kiln.float64, requires_grad=True) for d in (data, -data))
    at, wt = (torch.tensor(d, requires_grad=True) for d in (data, -data))
    run(kiln, ak, wk).backward()
    run(torch, at, wt).backward()
    np.testing.assert_allclose(ak.grad.numpy(), at.grad.numpy(), rtol=1e-12)
    if program == "mul_-grad":
        np.testing.assert_allclose(wk.grad.numpy(), wt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("shape, offset, dim1, dim2", [
    ((3, 3), 0, 0, 1), ((3, 4), 1, 0, 1), ((4, 3), -1, 0, 1), ((2, 3, 4), 0, 1, 2),
    ((2, 3, 4), 2, 2, 0), ((3, 3), 5, 0, 1)])
def test_diagonal_is_a_view_with_pytorch_values_and_gradients(shape, offset, dim1, dim2, rng):
    a = rng.standard_normal(shape)
    k, t = kiln.tensor(a, dtype=kiln.float64), torch.tensor(a)
    dk, dt = k.diagonal(offset, dim1, dim2), t.diagonal(offset, dim1, dim2)
    assert tuple(dk.shape) == tuple(dt.shape)
    np.testing.assert_array_equal(dk.numpy(), dt.numpy())
    dk.mul_(10)
    dt.mul_(10)
    np.testing.assert_array_equal(k.numpy(), t.numpy())

    def loss(lib, w):
        y = w * 2
        y.diagonal(offset, dim1, dim2).mul_(3)
        return (y * y).sum() + y.diagonal(offset, dim1, dim2).exp().sum()

    wk = kiln.tensor(a, dtype=kiln.float64, requires_grad=True)
    wt = torch.tensor(a, requires_grad=True)
    loss(kiln, wk).backward()
    loss(torch, wt).backward()
    np.testing.assert_allclose(wk.grad.numpy(), wt.grad.numpy(), rtol=1e-12)

    def fill(x):
        x.diagonal(offset, dim1, dim2).fill_(7.0)
        return x.sum()

    x1, x2 = (kiln.tensor(a, dtype=kiln.float64) for _ in range(2))
    np.testing.assert_allclose(kiln.jit(fill)(x2).item(), fill(x1).item(), rtol=1e-12)
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())


@pytest.mark.parametrize("make", [
    lambda x: x, lambda x: x.t(), lambda x: x[:, ::2], lambda x: x[1:], lambda x: x[:, None],
    lambda x: x[0:1].t(), lambda x: x.expand(2, 3, 4), lambda x: x.t().reshape(12),
], ids=["plain", "t", "step", "rows", "unsqueeze", "row-t", "expand", "reshape-copy"])
def test_strides_and_contiguity_match_pytorch(make):
    a = np.arange(12.0).reshape(3, 4)
    k, t = make(kiln.tensor(a)), make(torch.tensor(a, dtype=torch.float32))
    assert tuple(k.stride()) == tuple(t.stride())
    assert k.is_contiguous() == t.is_contiguous()
    c = k.contiguous()
    assert c.is_contiguous() and (c is k) == k.is_contiguous()
    np.testing.assert_array_equal(c.numpy(), t.contiguous().numpy())


def test_masked_fill_matches_pytorch():
    a = np.arange(6.0).reshape(2, 3)
    k, t = kiln.tensor(a), torch.tensor(a, dtype=torch.float32)
    np.testing.assert_array_equal(k.masked_fill(k > 2, -1.0).numpy(),
                                  t.masked_fill(t > 2, -1.0).numpy())
    k[0].masked_fill_(k[0] < 1, 9.0)
    t[0].masked_fill_(t[0] < 1, 9.0)
    np.testing.assert_array_equal(k.numpy(), t.numpy())


@pytest.mark.parametrize("name", ["abs_", "log_", "tanh_", "sigmoid_", "rsqrt_", "erf_", "exp_",
                                  "sqrt_", "neg_", "relu_", "zero_"])
def test_unary_in_place_methods_write_through_views_like_pytorch(name):
    a = np.array([[0.5, 1.5], [2.0, 0.25]])
    k, t = kiln.tensor(a), torch.tensor(a, dtype=torch.float32)
    getattr(k.t()[0], name)()
    getattr(t.t()[0], name)()
    np.testing.assert_allclose(k.numpy(), t.numpy(), rtol=1e-6)


def test_a_view_reports_the_history_its_base_got_from_a_write():
    a = np.array([0.5, -1.0, 2.0, 0.25])

    def run(lib, w):
        base = lib.ones(4, dtype=lib.float64) * 2
        view = base.t()                      # made while base needs no gradient
        base[0:4] = w                        # now it does
        assert view.requires_grad and not view.is_leaf
        view.mul_(3)
        return (base * base).sum()

    wk = kiln.tensor(a, dtype=kiln.float64, requires_grad=True)
    wt = torch.tensor(a, requires_grad=True)
    run(kiln, wk).backward()
    run(torch, wt).backward()
    np.testing.assert_allclose(wk.grad.numpy(), wt.grad.numpy(), rtol=1e-12)
