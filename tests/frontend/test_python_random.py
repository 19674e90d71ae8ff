"""Draws from Python's random generators (np.random, the random module, a NumPy Generator)
are side effects: a value drawn while tracing must not be baked into the graph, so the
jitted function re-runs its Python on every call (replay mode) and draws anew."""
import random
import warnings

import numpy as np
import pytest

import kiln
from kiln.frontend.jit import KilnJitWarning
from kiln.frontend.side_effects import find_side_effects

_RNG = np.random.default_rng(0)


def np_draw(x):
    return x * float(np.random.rand())


def py_draw(x):
    return x * random.random()


def generator_draw(x):
    return x + float(_RNG.normal())


def seeded_np(x):
    np.random.seed(3)
    return x + np.random.uniform()


def no_draw(x):
    return kiln.rand(2) * x + np.pi + np.exp(1.0)


def test_draws_are_found_in_the_bytecode_with_their_lines():
    assert [e.describe().split(" (")[0] for e in find_side_effects(np_draw)] == \
        ["np.random.rand()"]
    assert [e.kind for e in find_side_effects(py_draw)] == ["random draw"]
    assert [e.target for e in find_side_effects(generator_draw)] == ["_RNG.normal"]
    assert [e.target for e in find_side_effects(seeded_np)] == ["np.random.seed",
                                                               "np.random.uniform"]
    assert "test_python_random.py:" in find_side_effects(py_draw)[0].describe()
    assert find_side_effects(no_draw) == []      # NOTE: kiln's own RNG is per-call graph input


@pytest.mark.parametrize("fn", [np_draw, py_draw, generator_draw])
def test_a_jitted_function_draws_anew_on_every_call(fn):
    jf = kiln.jit(fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        values = [jf(kiln.ones(1)).item() for _ in range(4)]
    assert len(set(values)) == 4, values


def test_the_python_generators_advance_as_they_would_eagerly():
    jf = kiln.jit(np_draw)
    np.random.seed(7)
    jitted = [jf(kiln.ones(1)).item() for _ in range(3)]
    np.random.seed(7)
    eager = [np_draw(kiln.ones(1)).item() for _ in range(3)]
    assert jitted == pytest.approx(eager)
    jf = kiln.jit(seeded_np)                      # NOTE: re-seeded each call: same draw
    assert jf(kiln.ones(1)).item() == jf(kiln.ones(1)).item() == seeded_np(kiln.ones(1)).item()


def _make_helper():
    rng = random.Random(5)

    def helper(x):
        return x * rng.random()         # NOTE: a closure's generator, in a helper
    return helper


_draw_in_helper = _make_helper()


def calls_a_drawing_helper(x):
    return _draw_in_helper(x) + 1


def test_a_draw_inside_a_helper_is_not_baked_either():
    jf = kiln.jit(calls_a_drawing_helper)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        values = [jf(kiln.ones(1)).item() for _ in range(3)]
    assert len(set(values)) == 3, values
