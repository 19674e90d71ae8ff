"""The benchmark harnesses run end to end at tiny sizes (their correctness checks included),
so `make bench` cannot rot unnoticed. No timing is asserted."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_w1_harness_checks_and_prints_a_table():
    out = _run("bench/w1_elementwise.py", "--n", "65536", "--reps", "3", "--warmup", "1",
               "--peers", "kiln,numpy")
    assert "| kiln |" in out and "| numpy |" in out and "wrong" not in out


def _w5_rows(out: str) -> dict:
    """(batch, optimizer, system) -> the row's other cells, from the printed W5 table."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].isdigit():
            rows[(int(cells[0]), cells[1], cells[2])] = cells[3:]
    return rows


_EAGER_PROBE = """
import sys, warnings
sys.path.insert(0, "bench")
import kiln, w5_mlp_train as w5
xs, ys = w5.batch(8)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    kiln.jit(w5.ordinary_step(kiln, "sgd"))(kiln.from_numpy(xs), kiln.from_numpy(ys))
print(any(issubclass(w.category, kiln.KilnJitWarning) for w in caught))
"""


def _kiln_jit_runs_eagerly() -> bool:
    """Whether @kiln.jit of W5's ordinary step warns that it runs eagerly, seen apart from the
    benchmark (in its own process: the benchmark's harness sets thread variables)."""
    return {"True": True, "False": False}[_run("-c", _EAGER_PROBE).strip().splitlines()[-1]]


def test_w5_harness_checks_losses_and_says_how_the_jitted_step_ran():
    peers = "kiln,kiln-jit,kiln-jit-loss,torch,jax"
    out = _run("bench/w5_mlp_train.py", "--batches", "8", "--reps", "2", "--warmup", "1",
               "--peers", peers)
    rows = _w5_rows(out)
    assert "wrong" not in out and "error:" not in out
    for opt in ("sgd", "adam"):
        for peer in ("kiln", "kiln-jit", "kiln-jit-loss"):
            assert rows[(8, opt, peer)][1].isdigit(), rows[(8, opt, peer)]   # µs/step
        for peer in ("torch", "jax"):   # NOTE: timed where installed, else said so
            assert rows[(8, opt, peer)][1].isdigit() or \
                rows[(8, opt, peer)][1].startswith("skipped: not installed")
        # NOTE: the row must tell the truth about the whole-step jit, whichever it is today
        how = rows[(8, opt, "kiln-jit")][0]
        if _kiln_jit_runs_eagerly():
            assert how.startswith("RAN EAGERLY (KilnJitWarning:") and "backward" in how
            assert f"NOTE: kiln-jit (batch 8, {opt}) ran eagerly" in out
        else:
            assert how == "compiled as one graph"


@pytest.mark.slow
def test_w5_torch_compile_row_counts_its_graphs():
    pytest.importorskip("torch")
    out = _run("bench/w5_mlp_train.py", "--batches", "8", "--reps", "2", "--warmup", "1",
               "--optimizers", "sgd", "--peers", "kiln,torch.compile")
    how = _w5_rows(out)[(8, "sgd", "torch.compile")]
    assert "graph(s)" in how[0] and how[1].isdigit(), how


def test_w2_softmax_harness_checks_and_prints_a_table():
    out = _run("bench/w2_softmax.py", "--rows", "64", "--cols", "256", "--reps", "3",
               "--warmup", "1", "--peers", "kiln,kiln-jit,numpy")
    assert "| kiln |" in out and "| kiln-jit |" in out and "| numpy |" in out
    assert "wrong" not in out and "kiln-jit profile (median" in out


def test_w3_layernorm_harness_checks_and_prints_a_table():
    out = _run("bench/w3_layernorm.py", "--rows", "64", "--cols", "256", "--reps", "3",
               "--warmup", "1", "--peers", "kiln,kiln-jit,numpy")
    assert "| kiln |" in out and "| kiln-jit |" in out and "| numpy |" in out
    assert "wrong" not in out


def test_w4_matmul_harness_checks_and_prints_a_table():
    out = _run("bench/w4_matmul.py", "--n", "64", "--reps", "3", "--warmup", "1", "--peers",
               "kiln,kiln-jit,numpy")
    assert "| kiln |" in out and "| kiln-jit |" in out and "GFLOP/s" in out
    assert "wrong" not in out


def test_w6_overhead_harness_checks_and_prints_a_table():
    out = _run("bench/w6_overhead.py", "--inner", "20", "--reps", "3", "--warmup", "1",
               "--peers", "kiln,kiln-jit,numpy")
    assert "| kiln |" in out and "| kiln-jit |" in out and "µs/call" in out
    assert "wrong" not in out


def test_w7_compile_harness_checks_losses_and_prints_a_table():
    out = _run("bench/w7_compile.py", "--batch", "8", "--reps", "3", "--peers",
               "kiln-jit,kiln-jit-warm")
    assert "| kiln-jit |" in out and "Kiln has no disk cache" in out
    assert "wrong" not in out and "by stage" in out
