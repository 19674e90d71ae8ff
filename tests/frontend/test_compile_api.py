"""`kiln.compile` (frontend/compile_api.py): torch.compile's signature over kiln.jit."""
from __future__ import annotations

import doctest
import importlib
import warnings

import numpy as np
import pytest

import kiln
from kiln import nn
from kiln.frontend.compile_api import FullGraphFunction, compile as kcompile
from kiln.frontend.jit import JitFunction
from kiln.testing import assert_matches_eager


def _f(x):
    return kiln.tanh(x) * 2 + 1


def test_compile_is_jit_and_ignores_torchs_tuning_arguments():
    x = kiln.tensor([0.5, -1.0])
    for kwargs in [{}, {"mode": "reduce-overhead"}, {"dynamic": True, "backend": "inductor"},
                   {"options": {"triton.cudagraphs": False}}, {"mode": "max-autotune"}]:
        f = kcompile(_f, **kwargs)
        assert isinstance(f, JitFunction)
        assert_matches_eager(f, x, rtol=1e-6, atol=0)   # NOTE: and no eager fallback
        assert f.traces == 1


def test_compile_as_decorator_with_and_without_arguments_and_disable():
    @kcompile
    def g(x):
        return x * 3

    @kcompile(fullgraph=True, dynamic=False)
    def h(x):
        return x + 1

    assert g(kiln.ones(2)).tolist() == [3.0, 3.0] and h(kiln.ones(2)).tolist() == [2.0, 2.0]
    assert kcompile(_f, disable=True) is _f
    model = nn.Linear(2, 2)
    assert kcompile(model, disable=True) is model


def test_compiled_module_trains_like_the_original_and_prefixes_its_state_dict():
    kiln.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    compiled = kcompile(model)
    assert compiled._orig_mod is model
    assert kcompile(nn.Linear(2, 3)).out_features == 3     # NOTE: read from _orig_mod
    assert list(compiled.state_dict())[0] == "_orig_mod.0.weight"
    assert [id(p) for p in compiled.parameters()] == [id(p) for p in model.parameters()]
    x = kiln.tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    assert_matches_eager(compiled, x, rtol=1e-6, atol=0)    # NOTE: outputs and gradients
    compiled(x).sum().backward()
    assert model[0].weight.grad is not None
    compiled.eval()
    assert not model.training


def test_fullgraph_raises_where_kiln_would_run_eagerly_or_split_the_graph():
    def reads_a_value(x):
        if x.sum().item() > 0:
            return x * 2
        return x

    f = kcompile(reads_a_value, fullgraph=True)
    assert isinstance(f, FullGraphFunction)
    with pytest.raises(kiln.NotSupportedError, match="fullgraph=True"):
        f(kiln.ones(2))
    plain = kcompile(reads_a_value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert plain(kiln.ones(2)).tolist() == [2.0, 2.0]


def test_bad_compile_arguments_are_rejected_like_torch():
    with pytest.raises(RuntimeError, match="Either mode or options"):
        kcompile(_f, mode="default", options={})
    with pytest.raises(RuntimeError, match="Unrecognized mode=fastest"):
        kcompile(_f, mode="fastest")
    with pytest.raises(kiln.NotSupportedError, match="custom torch.compile backend"):
        kcompile(_f, backend=lambda gm, inputs: gm)
    with pytest.raises(TypeError, match="expects a function or an nn.Module"):
        kcompile(3)


@pytest.mark.parametrize("name", ["kiln.frontend.compile_api", "kiln.autograd",
                                  "kiln.nn.utils.hooks"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
