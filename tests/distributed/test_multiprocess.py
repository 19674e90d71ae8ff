"""Real jobs: these tests start `kiln run` (mpiexec) themselves, on this machine, and kill
the whole job past a timeout (dist_helpers.run_ranks), so they never hang.

- every collective on 2 ranks, eagerly and jitted (workers/collectives.py);
- DDP on 2 ranks that do different things: other heads, loss terms, patterns PyTorch's DDP
  runs, frozen parameters; the gradients are the mean of each rank's own
  (workers/ddp_patterns.py);
- DDP training of the digits MLP for 20 steps on 1, 2 and 4 processes gives the parameters
  of single-process training on the same global batches (workers/digits_ddp.py);
- a rank killed, or raising, mid-step makes every other rank exit with an error naming it,
  long before the group's timeout (workers/faults.py).
"""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from dist_helpers import WORKERS, everything, rank_output, run_ranks

GROUP_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def reference():
    """Single-process training, no DDP, no process group: the parameters to match."""
    sys.path.insert(0, str(WORKERS))
    import digits_ddp
    return {mode: digits_ddp.train(mode)[0] for mode in ("eager", "accumulate")}


def test_collectives_on_two_ranks(tmp_path):
    done = run_ranks(2, "collectives.py", out_dir=tmp_path)
    assert done.returncode == 0, everything(tmp_path)
    for rank in (0, 1):
        assert rank_output(tmp_path, rank)[0].split() == ["OK"], everything(tmp_path)


def test_ddp_when_the_ranks_differ(tmp_path):
    done = run_ranks(2, "ddp_patterns.py", out_dir=tmp_path)
    assert done.returncode == 0, everything(tmp_path)
    for rank in (0, 1):
        assert rank_output(tmp_path, rank)[0].split() == ["OK"], everything(tmp_path)


@pytest.mark.parametrize("ranks, modes", [(1, ["eager"]), (2, ["eager", "jit", "accumulate"]),
                                          (4, ["eager"])])
def test_ddp_matches_single_process_training(ranks, modes, tmp_path, reference):
    done = run_ranks(ranks, "digits_ddp.py", tmp_path, *modes, out_dir=tmp_path)
    assert done.returncode == 0, everything(tmp_path)
    if "jit" in modes:      # NOTE: one trace for all 20 steps (no recompile between steps)
        assert "jit: done, traces=1" in rank_output(tmp_path, 0)[0], everything(tmp_path)
    for mode in modes:
        want = reference["accumulate" if mode == "accumulate" else "eager"]
        got = [np.load(tmp_path / f"{mode}_rank{r}.npy") for r in range(ranks)]
        for r in range(ranks):
            np.testing.assert_allclose(got[r], want, rtol=1e-5,
                                       atol=1e-5 * np.abs(want).max(),
                                       err_msg=f"{mode}, rank {r} of {ranks}")
            assert np.array_equal(got[r], got[0]), f"{mode}: the replicas differ"


@pytest.mark.parametrize("mode, says", [("kill", "rank 1 (pid "), ("raise", "rank 1 raised "
                                                                    "ValueError: boom")])
def test_a_failing_rank_is_named_by_every_other_rank(mode, says, tmp_path):
    start = time.monotonic()
    done = run_ranks(3, "faults.py", mode, GROUP_TIMEOUT_S, out_dir=tmp_path,
                     timeout=GROUP_TIMEOUT_S)
    took = time.monotonic() - start
    assert done.returncode != 0, everything(tmp_path)
    assert took < GROUP_TIMEOUT_S / 2, f"took {took:.1f} s\n{everything(tmp_path)}"
    for rank in (0, 2):
        err = rank_output(tmp_path, rank)[1]
        assert "DistError" in err and says in err, everything(tmp_path)
        assert f"while rank {rank} waited in collective" in err, everything(tmp_path)
    if mode == "kill":
        assert "killed by SIGKILL" in rank_output(tmp_path, 1)[1], everything(tmp_path)


@pytest.mark.slow
def test_the_ddp_example_trains_the_digits_classifier_on_two_processes(tmp_path):
    example = WORKERS.parent.parent.parent / "examples" / "ddp_digits.py"
    done = run_ranks(2, str(example), "--epochs", "20", "--jit", out_dir=tmp_path,
                     timeout=300)
    assert done.returncode == 0, everything(tmp_path)
    out = rank_output(tmp_path, 0)[0]
    accuracy = float(out.split("test accuracy: ")[1].split("%")[0])
    assert accuracy >= 95.0, out
    assert rank_output(tmp_path, 1)[0] == "", "only rank 0 prints"
