"""Compiled plans on disk (frontend/plan_cache.py): a warm process skips the passes, the
schedule and the memory plan and gives the same results; a changed compiler, a damaged entry
or a debugging flag (KILN_VERIFY, KILN_PRINT_AFTER) means the passes run again."""
import warnings

import numpy as np
import pytest

import kiln
from kiln.frontend import plan_cache
from kiln.frontend.jit import compile_stages
from kiln.runtime import disk_cache

PROGRAM = """
import json, sys
import numpy as np
import kiln
import kiln.nn as nn
kiln.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
opt = kiln.optim.SGD(model.parameters(), lr=0.1)

@kiln.jit
def step(x, y):
    opt.zero_grad()
    loss = kiln.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss

rng = np.random.default_rng(1)
x = kiln.from_numpy(rng.standard_normal((8, 6)).astype(np.float32))
y = kiln.from_numpy(rng.integers(0, 3, 8))
losses = [float(step(x, y)) for _ in range(3)]
print(json.dumps({"losses": losses, "passes_imported": "kiln.passes.fusion" in sys.modules}))
"""




def test_a_warm_process_skips_the_passes_and_gives_the_same_losses(tmp_path, run_program):
    cold = run_program(PROGRAM, tmp_path)
    assert cold["passes_imported"]
    warm = run_program(PROGRAM, tmp_path)
    assert not warm["passes_imported"], "the warm process ran the graph passes"
    np.testing.assert_allclose(warm["losses"], cold["losses"], rtol=0)


def test_a_debugging_flag_runs_the_passes(tmp_path, run_program):
    run_program(PROGRAM, tmp_path)
    assert run_program(PROGRAM, tmp_path, KILN_VERIFY="1")["passes_imported"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test its own cache folder: test processes may share the run's, and one test here
    damages an entry another reads."""
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


def _graph_fn(x):
    return kiln.exp(x) * 2.0 + 1.0


def _compile_once():
    f = kiln.jit(_graph_fn)
    x = kiln.ones(5)
    out = f(x)
    return f, out


def test_a_plan_from_the_cache_shows_every_stage_on_request():
    _compile_once()
    f, out = _compile_once()            # NOTE: the second compile finds the plan
    entry = f._fast[1]
    assert entry._stages is None
    names = [name for name, _ in entry.stages]
    assert names[0] == "traced" and "fusion" in names
    assert [n for n, _ in compile_stages(_graph_fn, [kiln.ones(5)])][:4] == \
        ["traced", "functionalize", "canonicalize", "fusion"]
    np.testing.assert_allclose(out.numpy(), np.exp(1.0) * 2 + 1, rtol=1e-6)


def test_a_changed_compiler_misses(monkeypatch):
    f, _ = _compile_once()
    key = plan_cache.plan_key(f._fast[1].traced, "cpu")
    monkeypatch.setattr(disk_cache, "compiler_stamp", lambda: "another compiler")
    assert plan_cache.plan_key(f._fast[1].traced, "cpu") != key


def test_a_damaged_plan_is_compiled_again(monkeypatch):
    f, _ = _compile_once()
    traced = f._fast[1].traced
    disk = disk_cache.default_disk_cache()
    disk.put(plan_cache.plan_key(traced, "cpu"), b"not a pickle")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g, out = _compile_once()
    assert any("could not be loaded" in str(w.message) for w in caught)
    assert g._fast[1]._stages is not None       # NOTE: the passes ran
    np.testing.assert_allclose(out.numpy(), np.exp(1.0) * 2 + 1, rtol=1e-6)
