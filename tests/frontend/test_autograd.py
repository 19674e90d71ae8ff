"""Eager autograd rules, as in PyTorch: leaves, accumulation, no_grad, detach."""
import numpy as np
import pytest

import kiln


def test_scalar_backward_and_accumulation():
    w = kiln.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (w * w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2, 4, 6])
    (w * 3).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [5, 7, 9])


def test_non_scalar_backward_needs_gradient():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    with pytest.raises(kiln.KilnError, match="scalar outputs"):
        y.backward()
    y.backward(kiln.tensor([1.0, 0.5]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_leaf_rules():
    x = kiln.ones(2, requires_grad=True)
    y = x * 2
    assert x.is_leaf and not y.is_leaf and y.requires_grad
    y.retain_grad()
    z = (y * y).sum()
    z.backward()
    np.testing.assert_allclose(y.grad.numpy(), [4.0, 4.0])
    np.testing.assert_allclose(x.grad.numpy(), [8.0, 8.0])
    with pytest.raises(kiln.KilnError, match="only floating point"):
        kiln.tensor([1, 2]).requires_grad_()


def test_no_grad_and_detach():
    x = kiln.ones(2, requires_grad=True)
    with kiln.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    d = (x * 2).detach()
    assert not d.requires_grad
    assert kiln.is_grad_enabled()

    @kiln.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad


def test_shared_subexpression_and_broadcast_grad():
    a = kiln.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    b = kiln.tensor([10.0, 20.0], requires_grad=True)
    y = a * b + a          # b broadcast over rows; a used twice
    y.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [[11, 21], [11, 21]])
    np.testing.assert_allclose(b.grad.numpy(), [4, 6])


def test_composites_gradients():
    rng = np.random.default_rng(0)
    x = kiln.from_numpy(rng.standard_normal((4, 5))).requires_grad_()
    labels = kiln.tensor([0, 3, 4, 1])
    loss = kiln.cross_entropy(x, labels)
    loss.backward()
    p = np.exp(x.detach().numpy())
    p /= p.sum(1, keepdims=True)
    want = p.copy()
    want[np.arange(4), labels.numpy()] -= 1
    np.testing.assert_allclose(x.grad.numpy(), want / 4, rtol=1e-10)
    logp = np.log(p)
    np.testing.assert_allclose(loss.item(), -logp[np.arange(4), labels.numpy()].mean(),
                               rtol=1e-12)


def test_softmax_and_layer_norm_values():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 8))
    s = kiln.softmax(kiln.from_numpy(a), -1).numpy()
    e = np.exp(a - a.max(-1, keepdims=True))
    np.testing.assert_allclose(s, e / e.sum(-1, keepdims=True), rtol=1e-12)
    w, b = rng.standard_normal(8), rng.standard_normal(8)
    got = kiln.layer_norm(kiln.from_numpy(a), 8, kiln.from_numpy(w), kiln.from_numpy(b)).numpy()
    mu, var = a.mean(-1, keepdims=True), a.var(-1, keepdims=True)
    np.testing.assert_allclose(got, (a - mu) / np.sqrt(var + 1e-5) * w + b, rtol=1e-10)


def test_inplace_update_of_a_saved_value_refuses_the_backward():
    """Like PyTorch: x was saved by mul; writing it in place afterwards bumps its version, and
    the backward, which would read the new values, raises instead."""
    w = kiln.tensor([1.0, 2.0], requires_grad=True)
    x = kiln.tensor([3.0, 4.0])
    y = (w * x).sum()
    x.mul_(10)
    with pytest.raises(kiln.KilnError, match="modified by an inplace operation.*version 1; "
                                             "expected version 0"):
        y.backward()
    assert x.tolist() == [30.0, 40.0]


def test_inplace_rules_like_pytorch():
    w = kiln.ones(2, requires_grad=True)
    with pytest.raises(kiln.KilnError, match="leaf Variable"):
        w.add_(1)
    with kiln.no_grad():
        w -= 0.5 * kiln.ones(2)
    assert w.tolist() == [0.5, 0.5] and w.requires_grad and w.is_leaf
    h = w * 2
    h.add_(1)                       # in-place on a non-leaf rebases its history
    h.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 2.0])
    z = kiln.zeros(3)
    z.fill_(2).add_(kiln.tensor([1.0, 2.0, 3.0]))
    assert z.tolist() == [3.0, 4.0, 5.0]
    with pytest.raises(kiln.KilnError, match="doesn't match the broadcast shape"):
        kiln.zeros(3).add_(kiln.zeros(2, 3))


def test_data_and_detach_share_values_like_pytorch():
    p = kiln.ones(3, requires_grad=True)
    p.data.add_(1.0)                     # custom optimizers and init code do this
    assert p.tolist() == [2.0, 2.0, 2.0] and p.requires_grad and p.is_leaf
    d = p.detach()
    with kiln.no_grad():
        p.mul_(3.0)
    assert d.tolist() == [6.0, 6.0, 6.0]
    d.zero_()
    assert p.tolist() == [0.0, 0.0, 0.0]
    p.data = kiln.full((3,), 5.0)        # a new storage: old aliases keep the old values
    assert p.tolist() == [5.0, 5.0, 5.0] and d.tolist() == [0.0, 0.0, 0.0]


def test_a_write_through_an_alias_is_seen_by_autograd():
    """detach() shares the storage and its version counter, as in PyTorch: a write through it
    changes the value mul saved, so the backward raises instead of using the new values."""
    w = kiln.tensor([1.0, 2.0], requires_grad=True)
    x = kiln.tensor([3.0, 4.0])
    y = (w * x).sum()
    x.detach().fill_(100.0)
    with pytest.raises(kiln.KilnError, match="modified by an inplace operation"):
        y.backward()
    assert x.tolist() == [100.0, 100.0]


def test_clone_is_a_new_tensor_with_history():
    x = kiln.tensor([1.0, 2.0], requires_grad=True)
    c = x.clone()
    assert c is not x and c.grad_fn is not None
    c.add_(1.0)
    assert x.tolist() == [1.0, 2.0] and c.tolist() == [2.0, 3.0]
    (c * c).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 6.0])

    @kiln.jit
    def f(t):
        y = t.clone()
        y.mul_(3.0)
        return t, y
    a, b = f(kiln.tensor([1.0, 2.0]))
    assert a.tolist() == [1.0, 2.0] and b.tolist() == [3.0, 6.0]
