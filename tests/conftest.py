"""Shared test set-up: a reproducible seed per test, an `rng` fixture, Hypothesis settings, and
GPU tests skipped (with the reason) where no GPU is usable."""
from __future__ import annotations

import os
import tempfile
import zlib

import numpy as np
import pytest
from hypothesis import settings

# NOTE: no deadline: the first example of a jit test compiles through MLIR and LLVM (seconds
# on a loaded 2-core CI machine), which a per-example deadline would call a failure. On CI the
# examples are derandomized so a red run is reproduced by rerunning it.
# NOTE: compiled code is cached in a folder of this test run, never in the user's cache
os.environ.setdefault("KILN_CACHE_DIR", tempfile.mkdtemp(prefix="kiln-test-cache-"))

settings.register_profile("kiln", deadline=None, print_blob=True)
settings.register_profile("ci", parent=settings.get_profile("kiln"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "kiln")


def _test_seed(nodeid: str) -> int:
    # NOTE: from the test's id, not from its order: under pytest-xdist tests run in any order
    # on any worker, and each still sees the same random numbers in every run.
    return zlib.crc32(nodeid.encode())


@pytest.fixture(autouse=True)
def _seed_everything(request):
    seed = _test_seed(request.node.nodeid)
    np.random.seed(seed)
    import kiln

    if hasattr(kiln, "manual_seed"):
        kiln.manual_seed(seed)
    yield


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A NumPy Generator seeded from the test's id: `rng.standard_normal((4, 8))`."""
    return np.random.default_rng(_test_seed(request.node.nodeid))


@pytest.fixture
def fake_gpu(monkeypatch):
    """The simulated GPU (KILN_FAKE_CUDA=1): device memory in host memory, each kernel
    compiled to PTX and computed by its NumPy reference; returns kiln.cuda. With
    KILN_TEST_REAL_GPU=1 on a machine with a GPU (tests/gpu/device_check.sh), the real one."""
    import kiln
    if os.environ.get("KILN_TEST_REAL_GPU") == "1" and kiln.cuda.driver_available():
        monkeypatch.delenv("KILN_FAKE_CUDA", raising=False)
        return kiln.cuda
    monkeypatch.setenv("KILN_FAKE_CUDA", "1")
    assert kiln.cuda.is_available()
    return kiln.cuda


@pytest.fixture(params=["runner", "steps"])
def call_path(request, monkeypatch):
    """Runs a test with the executables' generated runner and with the step interpreter it
    mirrors (runtime/runner.py): both must give the same results and effects."""
    if request.param == "steps":
        monkeypatch.setenv("KILN_RUNNER", "steps")
    else:
        monkeypatch.delenv("KILN_RUNNER", raising=False)
    return request.param


@pytest.fixture
def run_program():
    """`run(program, cache_dir, **env)`: the JSON object the Python source `program` prints
    last, run in a fresh process from the repository root on the disk cache `cache_dir`."""
    import json
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(program: str, cache_dir, **env_vars) -> dict:
        env = dict(os.environ, KILN_CACHE_DIR=str(cache_dir), **env_vars)
        proc = subprocess.run([sys.executable, "-c", program], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])
    return run


def _gpu_skip_reason() -> str | None:
    import kiln

    cuda = getattr(kiln, "cuda", None)
    if cuda is None:
        return "kiln.cuda is not in this build yet"
    if not cuda.driver_available():
        return "no NVIDIA GPU and driver here (kiln.cuda.driver_available() is False)"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = _gpu_skip_reason()
    if reason is None:
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=reason))
