"""no_recompiles (review fixes): replay-mode graphs compiled again, a new function object per
step, calls past the recompile limit, and guard messages that name the argument."""
import warnings

import pytest

import kiln
from kiln.testing import RecompileError, no_recompiles


def test_a_replay_graph_compiled_again_is_a_recompile():
    def h(x):
        return x * x.sum().item()       # NOTE: the value read is a constant of graph 2
    jh = kiln.jit(h)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jh(kiln.ones(3))
        with pytest.raises(RecompileError) as info:
            with no_recompiles():
                for i in range(2):
                    jh(kiln.ones(3) * (i + 2))
    text = str(info.value)
    assert text.startswith("2 recompiles inside no_recompiles():")
    assert "h traced again: graph 2 after item() at test_testing_recompiles.py:" in text
    assert "new ops recorded, compiled version 2" in text


def test_a_new_function_object_per_step_is_a_recompile():
    with pytest.raises(RecompileError, match=r"(?s)2 recompiles.*<lambda>: a new function "
                                             r"object traced again each time"):
        with no_recompiles():
            for _ in range(3):
                kiln.jit(lambda x: x + 1)(kiln.ones(3))


def test_calls_past_the_recompile_limit_run_eagerly_and_are_reported():
    jl = kiln.jit(lambda x: x * 3, recompile_limit=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in range(1, 5):
            jl(kiln.ones(n))            # NOTE: the limit is reached before the block
    with no_recompiles():
        jl(kiln.ones(1))                # NOTE: a compiled guard set: fine
    with pytest.raises(RecompileError) as info:
        with no_recompiles():
            jl(kiln.ones(7))            # NOTE: a new guard set, past the limit
            jl(kiln.ones(3))            # NOTE: the guard set that hit the limit
    text = str(info.value)
    assert "<lambda> runs eagerly: recompile limit reached before; this call matches no " \
           "compiled guard set" in text
    assert "<lambda> runs eagerly: recompile limit (2) reached; the tensor" in text


def test_guard_messages_name_the_argument_and_the_change():
    f = kiln.jit(lambda x, k, *, w=None: x * k)
    with pytest.raises(RecompileError) as info:
        with no_recompiles():
            f(kiln.ones(3), 2.0)
            f(kiln.ones(4), 2.0)
            f(kiln.ones(4), 3.0)
            f(kiln.ones(4, dtype=kiln.float64), 3.0)
            f(kiln.ones(4, dtype=kiln.float64), 3.0, w=kiln.ones(1))
            f(kiln.ones(4, dtype=kiln.float64), 3.0, w=kiln.ones(2))
    text = str(info.value)
    assert "argument 0 (x): shape (3,) -> (4,)" in text
    assert "static values guard failed: (Tensor, 2.0) -> (Tensor, 3.0)" in text
    assert "argument 0 (x): dtype float32 -> float64\n" in text
    assert "(Tensor, 3.0) -> (Tensor, 3.0, w=Tensor)" in text
    assert "argument 'w': shape (1,) -> (2,)" in text
    assert "b'" not in text and "<class" not in text        # NOTE: no raw guard tuples
