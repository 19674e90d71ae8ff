"""kiln.optim: each optimizer against PyTorch's update rules written out in float64 NumPy
(optim_reference.py), parameter groups, zero_grad, state dicts, validation, and jit capture."""
from __future__ import annotations

import doctest
import importlib
import warnings

import numpy as np
import optim_reference as ref
import pytest
from optim_helpers import CASES, STEPS, case_id, initial_arrays, make, train, values

import kiln
import kiln.optim as optim
from kiln.optim.optimizer import required

@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_float64_trajectory_matches_pytorch_rule(case, rng):
    cls, rule, options = case
    arrays = initial_arrays(rng)
    params, opt = make(cls, options, arrays)
    train(opt, params, 0, STEPS)
    expected = ref.reference_run(rule, options, arrays, STEPS)
    for got, want in zip(values(params), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert all(p.dtype == kiln.float64 and p.requires_grad for p in params)


@pytest.mark.parametrize("case", [CASES[3], CASES[10], CASES[13], CASES[18]], ids=case_id)
def test_float32_trajectory_stays_float32_and_close(case, rng):
    cls, rule, options = case
    arrays = initial_arrays(rng)
    params, opt = make(cls, options, arrays, dtype=kiln.float32)
    train(opt, params, 0, STEPS)
    expected = ref.reference_run(rule, options, arrays, STEPS)
    for got, want in zip(values(params), expected):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    for state in opt.state.values():
        for key, value in state.items():
            assert value.dtype == kiln.float32, key


def test_parameter_groups_use_their_own_options(rng):
    a, b = rng.standard_normal(3), rng.standard_normal(2)
    pa = kiln.tensor(a, dtype=kiln.float64, requires_grad=True)
    pb = kiln.tensor(b, dtype=kiln.float64, requires_grad=True)
    opt = optim.SGD([{"params": [pa]}, {"params": pb, "lr": 0.5, "momentum": 0.0}],
                    lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.0]
    train(opt, [pa, pb], 0, 5)
    want_a = ref.reference_run(ref.sgd, {"lr": 0.1, "momentum": 0.9}, [a], 5)[0]
    want_b = ref.reference_run(ref.sgd, {"lr": 0.5}, [b], 5)[0]
    np.testing.assert_allclose(pa.detach().numpy(), want_a, rtol=1e-12)
    np.testing.assert_allclose(pb.detach().numpy(), want_b, rtol=1e-12)


def test_add_param_group_fills_defaults_and_rejects_duplicates():
    p, q = kiln.ones(2, requires_grad=True), kiln.ones(3, requires_grad=True)
    opt = optim.Adam([p], lr=0.01)
    opt.add_param_group({"params": [q], "betas": (0.5, 0.6)})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["betas"] == (0.5, 0.6)
    with pytest.raises(ValueError, match="more than once"):
        opt.add_param_group({"params": [p]})
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)


def test_params_without_grad_are_skipped_and_get_no_state():
    p, q = kiln.ones(2, requires_grad=True), kiln.ones(2, requires_grad=True)
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = kiln.tensor([1.0, -1.0])
    opt.step()
    assert q.tolist() == [1.0, 1.0] and q not in opt.state
    assert p.tolist() == pytest.approx([0.9, 1.1]) and p in opt.state
    assert opt.state[p]["step"].item() == 1.0


def test_zero_grad_sets_none_by_default_or_zeros_in_place():
    p = kiln.ones(2, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    (p * 3).sum().backward()
    grad = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad and grad.tolist() == [0.0, 0.0] and not grad.requires_grad
    opt.zero_grad()
    assert p.grad is None
    opt.zero_grad()     # no gradient at all is fine
    assert p.grad is None


def test_training_with_backward_matches_reference(rng):
    x, y = rng.standard_normal((8, 3)), rng.standard_normal(8)
    w0 = rng.standard_normal(3)
    w = kiln.tensor(w0, dtype=kiln.float64, requires_grad=True)
    xt, yt = kiln.tensor(x, dtype=kiln.float64), kiln.tensor(y, dtype=kiln.float64)
    opt = optim.Adam([w], lr=0.05, amsgrad=True)
    losses, want, state = [], w0, {}
    for _ in range(STEPS):
        opt.zero_grad()
        loss = ((xt @ w - yt) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        want = ref.adam(want, 2 / 8 * x.T @ (x @ want - y), state, lr=0.05, amsgrad=True)
    np.testing.assert_allclose(w.detach().numpy(), want, rtol=1e-10)
    assert losses[-1] < losses[0] / 2


def test_step_runs_the_closure_with_grad_enabled_and_returns_its_loss():
    w = kiln.tensor([2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.25)
    calls = []

    def closure():
        calls.append(kiln.is_grad_enabled())
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with kiln.no_grad():
        loss = opt.step(closure)
    assert calls == [True] and loss.item() == 4.0 and w.tolist() == [1.0]


@pytest.mark.parametrize("bad, match", [
    (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda p: optim.SGD(p, lr=0.1), "iterable of Tensors"),
    (lambda p: optim.SGD({p}, lr=0.1), "ordered collections"),
    (lambda p: optim.SGD([p * 2], lr=0.1), "non-leaf"),
    (lambda p: optim.SGD([p.tolist()], lr=0.1), "only optimize Tensors"),
    (lambda p: optim.SGD([p], lr=-1.0), "Invalid learning rate: -1.0"),
    (lambda p: optim.SGD([p], lr=0.1, nesterov=True), "Nesterov"),
    (lambda p: optim.Adam([p], betas=(0.9, 1.0)), "beta parameter at index 1"),
    (lambda p: optim.Adam([p], eps=-1e-8), "epsilon"),
    (lambda p: optim.RMSprop([p], momentum=-0.5), "momentum"),
])
def test_invalid_arguments_are_rejected_clearly(bad, match):
    p = kiln.ones(2, requires_grad=True)
    with pytest.raises((TypeError, ValueError), match=match):
        bad(p)


def test_a_custom_optimizer_subclass_gets_groups_state_and_required_options():
    class SignSGD(optim.Optimizer):
        def __init__(self, params, lr=required):
            super().__init__(params, {"lr": lr})

        def _update(self, p, grad, group, state):
            state["steps"] = state.get("steps", 0) + 1
            p.sub_(grad.gt(0).float().sub(grad.lt(0).float()).mul(group["lr"]))

    with pytest.raises(ValueError, match="required optimization parameter lr"):
        SignSGD([kiln.ones(1, requires_grad=True)])
    w = kiln.tensor([1.0, -1.0], requires_grad=True)
    opt = SignSGD([w], lr=0.25)
    w.grad = kiln.tensor([3.0, -0.5])
    opt.step()
    assert w.tolist() == [0.75, -0.75] and opt.state_dict()["state"] == {0: {"steps": 1}}


def test_repr_lists_each_group_like_pytorch():
    opt = optim.SGD([kiln.ones(1, requires_grad=True)], lr=0.1, momentum=0.9)
    text = repr(opt)
    assert text.startswith("SGD (\nParameter Group 0\n") and text.endswith("\n)")
    assert "    lr: 0.1\n" in text and "    momentum: 0.9\n" in text and "params" not in text


def test_bias_corrections_agree_with_pythons_float64_arithmetic():
    # NOTE: PyTorch computes these from Python floats; Kiln's tensor form may differ in the
    # last bits of float64 (NumPy's pow is not C's; `1 - beta**t` magnifies an ulp of the
    # power), far below float32's resolution: the float32 values it feeds are the same.
    from kiln.optim.adam import _bias_corrections
    for t in [1, 2, 3, 7, 10, 100, 999, 5000]:
        step_size, bc2_sqrt = _bias_corrections(kiln.tensor(float(t)), 0.9, 0.999, 1e-3)
        want_step_size, want_bc2_sqrt = 1e-3 / (1 - 0.9 ** t), (1 - 0.999 ** t) ** 0.5
        assert step_size.item() == pytest.approx(want_step_size, rel=1e-13, abs=0)
        assert bc2_sqrt.item() == pytest.approx(want_bc2_sqrt, rel=1e-13, abs=0)
        assert np.float32(step_size.item()) == np.float32(want_step_size)
        assert np.float32(bc2_sqrt.item()) == np.float32(want_bc2_sqrt)


def test_optimizer_step_is_captured_by_jit_without_graph_breaks():
    def train_step(x, g):
        p = (x * 1.0).detach().requires_grad_()
        p.grad = g
        opt = optim.Adam([p], lr=0.1, amsgrad=True, weight_decay=0.1)
        opt.step()
        opt.step()
        return p.detach()

    x, g = kiln.tensor([1.0, -2.0, 3.0]), kiln.tensor([0.5, 0.25, -1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", kiln.KilnJitWarning)
        got = kiln.jit(train_step)(x, g)
    np.testing.assert_allclose(got.numpy(), train_step(x, g).numpy(), rtol=1e-6)


MODULES = ["kiln.optim", "kiln.optim.optimizer", "kiln.optim.sgd", "kiln.optim.adam",
           "kiln.optim.rmsprop", "kiln.optim.lr_scheduler"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
