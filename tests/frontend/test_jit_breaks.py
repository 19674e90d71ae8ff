"""Graph breaks split the graph; Python side effects run on every call (replay mode)."""
import contextlib
import io
import logging
import warnings

import numpy as np
import pytest

import kiln
from kiln.frontend.jit import KilnJitWarning
from kiln.frontend.side_effects import find_side_effects


@contextlib.contextmanager
def no_jit_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        yield


def branchy(x):
    y = x * 2
    if y.sum() > 0:  # branchy's break
        return kiln.tanh(y) + x
    return y * 3 - x


def item_middle(x):
    y = kiln.exp(x) * 0.5
    s = y.sum().item()  # item_middle's break
    return y * s + 1.0


def _inputs():
    rng = np.random.default_rng(0)
    pos = kiln.from_numpy(np.abs(rng.standard_normal(5)).astype(np.float32))
    neg = kiln.from_numpy(-np.abs(rng.standard_normal(5)).astype(np.float32))
    return [pos, neg, pos * 2, neg, pos, neg * 3]


@pytest.mark.parametrize("fn", [branchy, item_middle])
def test_break_gives_eager_results_in_any_order(fn):
    f = kiln.jit(fn)
    with no_jit_warnings():
        for x in _inputs() + _inputs()[::-1]:
            np.testing.assert_allclose(f(x).numpy(), fn(x).numpy(), rtol=1e-5, atol=1e-6)
    entry = f.cache[next(iter(f.cache))][0]
    assert f.traces == 1 and type(entry).__name__ == "ReplayEntry"


def test_break_segments_are_compiled_once_per_structure():
    f = kiln.jit(branchy)
    x = _inputs()[0]
    with no_jit_warnings():
        f(x)
        entry = f.cache[next(iter(f.cache))][0]
        assert len(entry.segments) == 2         # before the break, and the True branch
        f(x), f(x * 3)
        assert len(entry.segments) == 2
        f(-x)
        assert len(entry.segments) == 3         # the False branch is a new graph 2
        assert "graph 2 after bool()" in entry.reasons[0] and "read False" in entry.reasons[0]


LOG: list = []
STEPS = 0


def chatty(x):
    global STEPS
    print("chatty called with", x.shape[0])
    y = kiln.tanh(x) * 2
    LOG.append(y + 1)
    STEPS += 1
    return y


def test_print_and_append_happen_on_every_call():
    global STEPS
    LOG.clear()
    STEPS = 0
    f = kiln.jit(chatty)
    xs = [kiln.ones(3), kiln.zeros(3), kiln.ones(3) * -2, kiln.ones(3)]
    out = io.StringIO()
    with no_jit_warnings(), contextlib.redirect_stdout(out):
        got = [f(x) for x in xs]
    assert out.getvalue() == "chatty called with 3\n" * 4
    assert STEPS == 4 and len(LOG) == 4 and f.traces == 1
    for x, y, logged in zip(xs, got, LOG):
        want = np.tanh(x.numpy()) * 2
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-6)
        np.testing.assert_allclose(logged.numpy(), want + 1, rtol=1e-6)
        assert logged._trace is None            # an eager tensor, usable after the call
    entry = f.cache[next(iter(f.cache))][0]
    assert len(entry.segments) == 1             # the tensor work compiled once, reused


def test_attribute_write_and_logging_run_every_call(caplog):
    class State:
        calls = 0
    state = State()
    logger = logging.getLogger("kiln.test.breaks")

    @kiln.jit
    def f(x):
        state.calls += 1
        logger.warning("step %d", state.calls)
        state.last = x * 2
        return x + 1
    with no_jit_warnings(), caplog.at_level(logging.WARNING, "kiln.test.breaks"):
        for i in range(3):
            assert f(kiln.full((2,), float(i))).tolist() == [i + 1.0] * 2
            assert state.last.tolist() == [2.0 * i] * 2
    assert state.calls == 3
    assert [r.getMessage() for r in caplog.records] == ["step 1", "step 2", "step 3"]


def test_printing_a_traced_tensors_values_splits_the_graph():
    @kiln.jit
    def f(x):
        y = x + 1
        print(y.tolist())
        return y * 2
    out = io.StringIO()
    with no_jit_warnings(), contextlib.redirect_stdout(out):
        for v in (1.0, 2.0, 1.0):
            assert f(kiln.full((2,), v)).tolist() == [2 * (v + 1)] * 2
    assert out.getvalue() == "[2.0, 2.0]\n[3.0, 3.0]\n[2.0, 2.0]\n"


def test_tensors_kept_across_a_break_and_hidden_in_objects():
    class Box:
        pass
    box = Box()

    @kiln.jit
    def f(x):
        box.held = x * 3            # found only through the garbage collector
        a = x + 1
        n = int((a > 1.5).sum().item())
        return a * n + box.held
    with no_jit_warnings():
        for v in ([1.0, 2.0], [0.0, 1.0], [1.0, 2.0]):
            x = kiln.tensor(v)
            a = x.numpy() + 1
            want = a * int((a > 1.5).sum()) + x.numpy() * 3
            np.testing.assert_allclose(f(x).numpy(), want)
            np.testing.assert_allclose(box.held.numpy(), x.numpy() * 3)


def test_replay_with_gradients_falls_back_to_eager_with_a_warning():
    w = kiln.ones(3).requires_grad_()

    @kiln.jit
    def f(x):
        y = (x * w).sum()
        if y > 0:
            return y * 2
        return y
    with pytest.warns(KilnJitWarning, match="requires grad"):
        loss = f(kiln.ones(3))
    loss.backward()
    assert loss.item() == 6.0 and w.grad.tolist() == [2.0, 2.0, 2.0]


def test_argument_requiring_grad_in_replay_mode_runs_eagerly():
    seen = []

    @kiln.jit
    def f(x):
        seen.append(1)
        return (x * x).sum()
    x = kiln.ones(2).requires_grad_()
    with pytest.warns(KilnJitWarning, match="argument requires grad"):
        loss = f(x)
    loss.backward()
    assert x.grad.tolist() == [2.0, 2.0] and seen == [1]


def test_explain_shows_two_graphs_around_the_break():
    report = kiln.explain(branchy, kiln.ones(3))
    text = str(report)
    assert report.graphs == 2 and report.compile_error is None
    assert "branchy's break" in report.breaks[0] and "bool() = True" in report.breaks[0]
    assert any(k.startswith("graph 1: ") for k in report.kernels)
    assert any(k.startswith("graph 2: ") and "tanh" in k for k in report.kernels)
    assert "not analysed" not in text and "Python side effects: none found" in text

    report = kiln.explain(item_middle, kiln.ones(3))
    assert report.graphs == 2 and "item_middle's break" in report.breaks[0]


def test_explain_lists_side_effects_and_recompile_reasons():
    report = kiln.explain(chatty, kiln.ones(3))
    assert report.graphs == 1
    assert [e.split(" at ")[0] for e in report.side_effects] == [
        "print()", "LOG.append()", "global write STEPS"]
    assert all("test_jit_breaks.py:" in e for e in report.side_effects)

    f = kiln.jit(branchy)
    f(kiln.ones(3)), f(-kiln.ones(3)), f(kiln.ones(4))
    reasons = kiln.explain(f, kiln.ones(3)).recompiles
    assert any("graph 2 after bool()" in r for r in reasons)
    assert any("tensor (dtype, shape, requires_grad) guard failed" in r for r in reasons)


def test_no_side_effects_keeps_one_cached_graph():
    f = kiln.jit(lambda x: kiln.tanh(x) * 2)
    with no_jit_warnings():
        f(kiln.ones(2)), f(kiln.ones(2))
    entry = f.cache[next(iter(f.cache))][0]
    assert type(entry).__name__ == "_Compiled"


OUTSIDE: dict = {}


def effects_zoo(x, state, w):
    local = []
    local.append(x)              # a local list: no side effect
    y = x.add(w)                 # a tensor method named like a mutator: no side effect
    state["k"] = 1               # item write on an argument
    OUTSIDE.update(a=1)          # mutation of a global
    logging.info("hi")           # logging
    return y


def test_side_effect_analysis_kinds_and_lines():
    from kiln.frontend.side_effects import effects_for_call
    found = find_side_effects(effects_zoo)
    kinds = [(e.kind, e.target) for e in found]
    assert ("item write", "state['k']") in kinds
    assert ("mutation", "OUTSIDE.update") in kinds
    assert ("logging", "logging.info") in kinds
    assert all(e.target != "local.append" for e in found)
    assert ("mutation", "x.add") in kinds       # a parameter: decided per call
    line = effects_zoo.__code__.co_firstlineno
    assert {e.target: e.line - line for e in found}["OUTSIDE.update"] == 5
    per_call = effects_for_call(found, effects_zoo, (kiln.ones(1), {}, kiln.ones(1)), {})
    assert ("mutation", "x.add") not in [(e.kind, e.target) for e in per_call]


class _Holder:
    def __init__(self):
        self.w, self.log = kiln.ones(2), []


HOLDER = _Holder()


def module_functions_and_attribute_receivers(x):
    v, _ = kiln.sort(x)                 # kiln.sort, kiln.add: functions, not list methods
    y = kiln.add(v, x) + HOLDER.w.add(x)    # a tensor reached through an attribute
    HOLDER.log.append(1)                # a list reached through an attribute: an effect
    return y


def test_module_functions_and_tensor_attributes_are_not_container_mutations():
    from kiln.frontend.side_effects import effects_for_call
    fn = module_functions_and_attribute_receivers
    found = [(e.kind, e.target) for e in effects_for_call(
        find_side_effects(fn), fn, (kiln.ones(2),), {})]
    assert found == [("mutation", "HOLDER.log.append")]


@pytest.mark.parametrize("name", ["kiln.frontend.replay", "kiln.frontend.side_effects"])
def test_docstring_examples(name):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_grad_assignments_in_replay_mode_run_eagerly_never_lost():
    w = kiln.ones(2, requires_grad=True)
    (w * 2).sum().backward()
    opt = kiln.optim.SGD([w], lr=0.1)

    @kiln.jit
    def f(x):
        opt.zero_grad()
        print("side effect")
        return x * 2

    with kiln.no_grad(), pytest.warns(KilnJitWarning, match="assigns `.grad`"):
        f(kiln.ones(2))
    assert w.grad is None


def test_a_training_step_with_side_effects_runs_them_once_per_call():
    model = kiln.nn.Linear(4, 2)
    opt = kiln.optim.SGD(model.parameters(), lr=0.1)
    log = []

    @kiln.jit
    def step(x, y):
        opt.zero_grad()
        loss = kiln.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        log.append(1)
        return loss

    with pytest.warns(KilnJitWarning, match="parameters that require grad"):
        step(kiln.randn(3, 4), kiln.tensor([0, 1, 1]))
    step(kiln.randn(3, 4), kiln.tensor([0, 1, 1]))
    assert log == [1, 1]


HELPER_LOG = []


def _logging_helper(y):
    HELPER_LOG.append(1)
    return y + 1


def test_side_effects_in_helpers_and_module_forward_run_on_every_call():
    class Counter(kiln.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x * 2

    counter = Counter()
    HELPER_LOG.clear()

    @kiln.jit
    def f(x):
        return _logging_helper(counter(x))

    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        for k in range(3):
            assert f(kiln.ones(2)).tolist() == [3.0, 3.0]
    assert counter.calls == 3 and HELPER_LOG == [1, 1, 1]


def test_helper_side_effects_with_trainable_parameters_run_once_per_call():
    model = kiln.nn.Linear(2, 2)
    HELPER_LOG.clear()

    @kiln.jit
    def g(x):
        return _logging_helper(model(x)).sum()

    with pytest.warns(KilnJitWarning, match="side effects in _logging_helper"):
        g(kiln.ones(2))
    g(kiln.ones(2))
    assert HELPER_LOG == [1, 1]
