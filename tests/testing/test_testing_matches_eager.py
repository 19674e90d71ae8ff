"""kiln.testing.assert_matches_eager: jitted and eager runs from the same state agree on
outputs, mutated tensors and gradients; a difference in any of them is reported by name.

A miscompile is simulated by a jitted function whose cached graph no longer matches its
Python: it was traced from one function, then `.fn` (what the eager run calls) is replaced."""
import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
from kiln.testing import assert_matches_eager


def _stale(traced, eager, *args):
    """A jitted `traced` (called once, so its graph is cached) whose Python is now `eager`."""
    jf = kiln.jit(traced)
    jf(*args)
    jf.fn = eager
    return jf


def test_outputs_in_place_writes_and_random_draws_match():
    def f(x, w):
        w.mul_(2.0).add_(x)
        return kiln.tanh(w) + kiln.rand(3)      # NOTE: both runs draw the same numbers
    w = kiln.tensor([1.0, 2.0, 3.0])
    assert_matches_eager(f, kiln.ones(3), w)
    assert w.tolist() == [3.0, 5.0, 7.0]       # NOTE: the state of one (eager) call


def test_a_training_step_matches_parameters_grads_and_optimizer_state():
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = kiln.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    x, y = kiln.randn(5, 6), kiln.tensor([0, 1, 2, 1, 0])
    before = model[0].weight.detach().clone()
    assert_matches_eager(step, x, y)
    jitted = kiln.jit(step)
    jitted(x, y)
    assert_matches_eager(jitted, x, y)          # NOTE: the cached graph, with momentum
    assert not np.allclose(model[0].weight.detach().numpy(), before.numpy())


def test_a_wrong_output_is_reported_with_its_worst_element():
    jf = _stale(lambda x: x * 2.0, lambda x: x * 2.0 + kiln.tensor([0.0, 0.5]), kiln.ones(2))
    with pytest.raises(AssertionError, match=r"(?s)assert_matches_eager\(<lambda>\): output "
                                             r"differs \(actual: jitted, expected: eager\).*"
                                             r"index \(1,\): actual 2\.0, expected 2\.5"):
        assert_matches_eager(jf, kiln.ones(2))


def test_a_wrong_write_to_a_parameter_is_reported_by_its_path():
    model = nn.Linear(2, 2)

    def traced(x):
        with kiln.no_grad():
            model.bias.add_(x)
        return x

    def eager(x):
        with kiln.no_grad():
            model.bias.add_(x * 2)
        return x
    jf = _stale(traced, eager, kiln.ones(2))
    with pytest.raises(AssertionError, match=r"state model\.bias differs"):
        assert_matches_eager(jf, kiln.ones(2))


def test_a_wrong_gradient_is_reported_by_the_tensor_it_is_for():
    w = kiln.tensor([1.0, 2.0], requires_grad=True)

    def traced(x):
        return (x * w * w).sum()

    def eager(x):
        return (x * w * w.detach()).sum()       # NOTE: same value, half the gradient
    jf = _stale(traced, eager, kiln.ones(2))
    with pytest.raises(AssertionError, match=r"gradient of the outputs with respect to w "
                                             r"differs"):
        assert_matches_eager(jf, kiln.ones(2))
    assert_matches_eager(jf, kiln.ones(2), grads=False)


def test_an_eager_fallback_is_a_failure_not_a_comparison_with_itself():
    def reads_a_value(x):
        if x.sum() > 0:             # NOTE: replay mode cannot give gradients yet: eager
            return x * 2
        return x
    with pytest.raises(AssertionError, match="the jitted call did not run compiled code"):
        assert_matches_eager(reads_a_value, kiln.ones(2, requires_grad=True))
    jitted = kiln.jit(reads_a_value)
    with pytest.warns(kiln.KilnJitWarning):
        jitted(kiln.ones(2, requires_grad=True))    # NOTE: the warning, once; then quiet
    with pytest.raises(AssertionError, match=r"(?s)runs these arguments eagerly \(.*replay mode"):
        assert_matches_eager(jitted, kiln.ones(2, requires_grad=True))
    assert_matches_eager(jitted, kiln.ones(2))      # NOTE: no grad: replay mode, compiled


def test_the_state_is_restored_when_the_check_fails():
    w = kiln.zeros(2)

    def traced(x):
        w.add_(x)
        return x

    def eager(x):
        w.add_(x * 3)
        return x
    jf = _stale(traced, eager, kiln.ones(2))
    w.zero_()
    with pytest.raises(AssertionError, match="state w differs"):
        assert_matches_eager(jf, kiln.ones(2))
    assert w.tolist() == [3.0, 3.0]     # NOTE: after the eager run, as documented
    with pytest.raises(ValueError, match="rtol and atol together"):
        assert_matches_eager(jf, kiln.ones(2), rtol=1e-3)
