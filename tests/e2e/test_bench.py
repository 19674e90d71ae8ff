"""The benchmark harnesses run end to end at tiny sizes (their correctness checks included),
so `make bench` cannot rot unnoticed. No timing is asserted."""
import os
import subprocess
import sys

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


def test_w5_harness_checks_losses_and_prints_a_table():
    out = _run("bench/w5_mlp_train.py", "--batches", "8", "--reps", "2", "--peers",
               "kiln,kiln-jit")
    assert "| 8 | kiln |" in out and "| 8 | kiln-jit |" in out and "wrong" not in out


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
