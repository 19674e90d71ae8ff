"""A jitted training step under a scheduler that changes more than the learning rate
(OneCycleLR cycles SGD's momentum and Adam's beta1) compiles once: those options are graph
inputs read per call, like `lr`, and the step gives eager's parameters."""
import warnings

import numpy as np
import pytest

import kiln
import kiln.nn.functional as F
from kiln.frontend.jit import KilnJitWarning


def _train(opt_name: str, jitted: bool, steps: int = 12):
    kiln.manual_seed(0)
    model = kiln.nn.Sequential(kiln.nn.Linear(6, 8), kiln.nn.ReLU(), kiln.nn.Linear(8, 3))
    opt = (kiln.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
           if opt_name == "sgd" else kiln.optim.Adam(model.parameters(), lr=0.01))
    sched = kiln.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    rng = np.random.default_rng(0)
    x = kiln.tensor(rng.standard_normal((16, 6)).astype(np.float32))
    y = kiln.tensor(rng.integers(0, 3, 16))

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    run = kiln.jit(step) if jitted else step
    losses = []
    for _ in range(steps):
        losses.append(run(x, y).item())
        sched.step()
    return losses, [p.detach().numpy().copy() for p in model.parameters()], run


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_one_cycle_momentum_does_not_recompile(opt_name):
    want, want_params, _ = _train(opt_name, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        got, params, run = _train(opt_name, True)
    assert run.traces == 1
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for g, w in zip(params, want_params):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
