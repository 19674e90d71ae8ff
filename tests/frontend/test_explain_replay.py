"""kiln.explain takes the jit's decisions: where `@kiln.jit` runs a function eagerly (replay
mode with gradients, side effects on CUDA) it says so with the jit's reason and counts no
graph; CUDA arguments and captured CUDA tensors are traced for CUDA."""
import json
import warnings

import pytest

import kiln
import kiln.nn as nn
from kiln.frontend.jit import KilnJitWarning

LOG = []


def logs(x):
    LOG.append(1)
    return (x * 2).sum()


def branchy(x):
    if x.sum() > 0:
        return x * 2
    return x


def _jit_reason(fn, *args):
    """The reason in the jit's warning when it runs `fn(*args)` eagerly."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KilnJitWarning)
        kiln.jit(fn)(*args)
    [w] = [w for w in caught if issubclass(w.category, KilnJitWarning)]
    return str(w.message).split("running eagerly: ", 1)[1]


@pytest.mark.parametrize("fn", [logs, branchy])
def test_replay_with_an_argument_that_requires_grad_runs_eagerly_as_in_the_jit(fn):
    x = kiln.ones(3, requires_grad=True)
    report = kiln.explain(fn, x)
    assert report.graphs == 0 and report.compile_error is None and report.graph_break is None
    assert report.eager_reason == _jit_reason(fn, x)
    assert report.eager_reason.endswith("an argument requires grad and replay mode does not "
                                        "compute gradients yet")
    assert "runs eagerly: " in str(report)
    assert json.loads(report.to_json())["eager_reason"] == report.eager_reason
    with kiln.no_grad():        # NOTE: no gradients: replay mode compiles the graphs
        assert kiln.explain(fn, x).graphs >= 1


def test_side_effects_reading_parameters_run_eagerly_with_the_jits_reason():
    model = nn.Linear(3, 1)
    opt = kiln.optim.SGD(model.parameters(), lr=0.1)
    history = []

    def step(x):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        history.append(loss.item())
        return loss
    x = kiln.randn(4, 3)
    report = kiln.explain(step, x)
    # NOTE: not an AutogradError from a replay run under no_grad: the jit never replays it
    assert report.compile_error is None and report.graphs == 0
    assert report.eager_reason == _jit_reason(step, x)
    assert "it uses parameters that require grad" in report.eager_reason


def test_cuda_arguments_and_captured_cuda_tensors_are_traced_for_cuda(fake_gpu):
    x = kiln.ones(4, device="cuda")
    report = kiln.explain(lambda t: kiln.tanh(t) * 2, x)
    assert report.graphs == 1 and report.graph_break is None and report.kernels
    weight = kiln.ones(4, device="cuda")
    report = kiln.explain(lambda s: s * weight, kiln.tensor(3.0))   # NOTE: a DeviceBreak first
    assert report.graphs == 1 and report.graph_break is None
    report = kiln.explain(logs, x)
    assert report.graphs == 0 and report.eager_reason == _jit_reason(logs, x)
    assert report.eager_reason.endswith("replay mode is not supported yet on CUDA")


def test_a_replay_that_falls_back_mid_call_is_reported_as_eager():
    model = nn.Linear(3, 1)

    def f(x):
        y = model(x).sum()
        if y > 0:               # NOTE: the cut meets the model's parameters: eager
            return y * 2
        return y
    x = kiln.ones(2, 3)
    report = kiln.explain(f, x)
    assert report.graphs == 0 and report.compile_error is None
    assert report.eager_reason == _jit_reason(f, x)
    assert "replay mode (graph breaks, side effects) does not compute gradients yet" in \
        report.eager_reason
