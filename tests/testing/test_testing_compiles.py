"""kiln.testing.assert_compiles and no_recompiles: a function compiles to the graphs a test
expects, and a loop does not retrace; failures give the reason and the source line."""
import pytest

import kiln
from kiln.frontend import jit as jit_module
from kiln.testing import RecompileError, assert_compiles, no_recompiles


def _one_graph(x, w):
    return kiln.relu(x @ w).sum()


def _breaks(x):
    y = x * 2
    if y.sum() > 0:  # the break's line
        return y + 1
    return y - 1


def test_one_graph_passes_and_returns_the_explanation():
    report = assert_compiles(_one_graph, kiln.ones(2, 3), kiln.ones(3, 4))
    assert report.graphs == 1 and report.kernels


def test_a_graph_break_fails_with_its_reason_and_source_line():
    with pytest.raises(AssertionError) as info:
        assert_compiles(_breaks, kiln.ones(3))
    text = str(info.value)
    assert text.startswith("assert_compiles(_breaks): expected 1 graph(s) and 0 graph "
                           "break(s), got 2 graph(s) and 1 graph break(s)")
    assert "bool() = True" in text and "test_testing_compiles.py:" in text
    assert "if y.sum() > 0:  # the break's line" in text
    assert_compiles(_breaks, kiln.ones(3), graphs=2, breaks=1)


def test_an_eager_fallback_says_why():
    def f(x):
        return kiln.tensor(x.sum().item()) * x
    with pytest.raises(AssertionError, match="got 2 graph"):
        assert_compiles(f, kiln.ones(2))
    with pytest.raises(ValueError, match="graphs must be a non-negative int"):
        assert_compiles(f, kiln.ones(2), graphs=-1)


def test_a_jitted_functions_cache_is_left_alone():
    jf = kiln.jit(_one_graph)
    assert_compiles(jf, kiln.ones(2, 3), kiln.ones(3, 4))
    assert jf.traces == 0 and not jf.cache


SCALE = 2.0


def test_a_stable_loop_passes_and_a_changed_global_names_the_guard_and_its_line():
    global SCALE
    f = kiln.jit(lambda x: x * SCALE)
    x = kiln.ones(3)
    with no_recompiles():
        for _ in range(5):
            f(x)
    try:
        with pytest.raises(RecompileError) as info:
            with no_recompiles():
                f(x)
                SCALE = 3.0
                f(x)  # the retracing call
    finally:
        SCALE = 2.0
    text = str(info.value)
    assert text.startswith("1 recompile inside no_recompiles():")
    assert "the global SCALE (read at test_testing_compiles.py:" in text
    assert "2.0 -> 3.0" in text and "f(x)  # the retracing call" in text


def test_a_shape_change_and_a_new_wrapper_per_step_are_recompiles():
    f = kiln.jit(lambda x: x + 1)
    with pytest.raises(RecompileError, match=r"tensor \(dtype, shape, requires_grad\) guard"):
        with no_recompiles():
            f(kiln.ones(2))
            f(kiln.ones(3))

    def g(x):
        return x * 2
    with pytest.raises(RecompileError, match="new kiln.jit wrapper of the same function"):
        with no_recompiles():
            for _ in range(2):
                kiln.jit(g)(kiln.ones(2))


def test_as_a_decorator_each_call_is_its_own_block():
    f = kiln.jit(lambda x, k: x * k)

    @no_recompiles
    def steady(k):
        for _ in range(3):
            f(kiln.ones(2), k)

    @no_recompiles()
    def changing():
        f(kiln.ones(2), 5.0)
        f(kiln.ones(2), 6.0)
    steady(1.0)         # NOTE: f's first trace, inside the block: allowed
    steady(1.0)
    with pytest.raises(RecompileError, match="static values guard failed"):
        changing()


def test_an_error_inside_the_block_propagates_and_the_listener_is_removed():
    listeners = list(jit_module.TRACE_LISTENERS)
    f = kiln.jit(lambda x: x - 1)
    with pytest.raises(ZeroDivisionError):
        with no_recompiles():
            f(kiln.ones(1))
            f(kiln.ones(2))
            1 / 0
    assert jit_module.TRACE_LISTENERS == listeners
    with pytest.raises(TypeError, match="takes no argument"):
        no_recompiles(3)


# ---- review fixes: what the jit really does ----------------------------------------------------
_LOG = []


def _logs(x):
    _LOG.append(1)
    return (x * 2).sum()


def test_a_function_the_jit_runs_eagerly_fails_with_the_jits_reason():
    x = kiln.ones(3, requires_grad=True)
    with pytest.raises(AssertionError) as info:
        assert_compiles(_logs, x)
    text = str(info.value)
    assert "got 0 graph(s) and 0 graph break(s)" in text
    assert "runs eagerly instead: Python side effects: _LOG.append() at " \
           "test_testing_compiles.py:" in text
    assert "an argument requires grad and replay mode does not compute gradients yet" in text
    with pytest.raises(AssertionError, match="got 0 graph"):
        assert_compiles(_breaks, x, graphs=2, breaks=1)
    with kiln.no_grad():
        assert_compiles(_breaks, x, graphs=2, breaks=1)


def test_cuda_arguments_compile_for_cuda(fake_gpu):
    x = kiln.ones(4, device="cuda")
    assert assert_compiles(lambda t: kiln.tanh(t) * 2, x).graphs == 1
