"""The benchmark harnesses run end to end at tiny sizes (their correctness checks included), so
`make bench` cannot rot unnoticed. No timing is asserted. `make test` runs each with Kiln and
NumPy only; with every peer (importing torch and jax, and inductor compiling) they take minutes,
so those runs are marked slow (`make test-slow`)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# NOTE: the peers that may be absent from a venv: timed where installed, else `skipped`
OPTIONAL_PEERS = ("torch", "torch.compile", "jax")
QUICK = ("--reps", "2", "--warmup", "1", "--floor-reps", "1")
# NOTE: the peers `make test` runs; the others are the slow tests' (see module docstring)
OWN_PEERS = ("--peers", "kiln,kiln-jit,numpy")


def _run(*args, env: dict | None = None) -> str:
    """stdout of `python args` from the repository root; `env` adds to this environment
    (only the child's: the variables this process runs with stay as they are)."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def _rows(table_text: str) -> dict:
    """system -> its other cells, from a printed `| system | ... |` table."""
    rows = {}
    for line in table_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) >= 2 and not cells[0].startswith(("system", "-")):
            rows[cells[0]] = cells[1:]
    return rows


def _is_time(cell: str) -> bool:
    try:
        return float(cell) >= 0
    except ValueError:
        return False


def _assert_every_peer_ran(table_text: str, optional: tuple = OPTIONAL_PEERS) -> None:
    """Kiln and NumPy timed; each `optional` peer timed where installed, else skipped."""
    rows = _rows(table_text)
    assert "wrong" not in table_text, table_text
    for peer in ("kiln", "kiln-jit", "numpy"):
        assert _is_time(rows[peer][0]), (peer, rows[peer])
    for peer in optional:
        assert _is_time(rows[peer][0]) or rows[peer][0].startswith("skipped: not installed"), \
            (peer, rows[peer])


def _blas_line(out: str, what: str) -> str:
    """The header's `BLAS <what>...` line."""
    return next(line for line in out.splitlines() if line.startswith(f"BLAS {what}"))


def _assert_blas_recorded(out: str) -> None:
    """The header's BLAS record: NumPy's kernel, PyTorch's, and no forced OpenBLAS kernel."""
    numpy = _blas_line(out, "numpy ")
    assert "threadpoolctl not installed" in numpy or (
        "architecture" in numpy and "threads" in numpy), numpy
    assert _blas_line(out, "torch")
    assert "unset in every peer process" in _blas_line(out, "environment:")


def test_w1_harness_checks_and_prints_a_table():
    out = _run("bench/w1_elementwise.py", "--n", "4096", *QUICK, *OWN_PEERS)
    _assert_every_peer_ran(out, optional=())
    _assert_blas_recorded(out)


@pytest.mark.slow
def test_w1_harness_with_every_peer():
    out = _run("bench/w1_elementwise.py", "--n", "4096", *QUICK)
    _assert_every_peer_ran(out)


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


@pytest.mark.parametrize("peers", [
    ("kiln", "kiln-jit", "kiln-jit-loss"),
    # NOTE: torch.compile: its own slow test
    pytest.param(("kiln", "kiln-jit", "kiln-jit-loss", "torch", "jax"), marks=pytest.mark.slow),
], ids=("own", "peers"))
def test_w5_harness_checks_losses_and_says_how_the_jitted_step_ran(peers):
    out = _run("bench/w5_mlp_train.py", "--batches", "8", *QUICK, "--peers", ",".join(peers))
    rows = _w5_rows(out)
    assert "wrong" not in out and "error:" not in out
    for opt in ("sgd", "adam"):
        for peer in ("kiln", "kiln-jit", "kiln-jit-loss"):
            assert rows[(8, opt, peer)][1].isdigit(), rows[(8, opt, peer)]   # µs/step
        for peer in set(peers) & {"torch", "jax"}:   # NOTE: timed where installed, else said so
            assert rows[(8, opt, peer)][1].isdigit() or \
                rows[(8, opt, peer)][1].startswith("skipped: not installed")
        # NOTE: the row must tell the truth about the whole-step jit, whichever it is today
        how = rows[(8, opt, "kiln-jit")][0]
        if _kiln_jit_runs_eagerly():
            assert how.startswith("RAN EAGERLY (KilnJitWarning: running eagerly:"), how
            assert f"NOTE: kiln-jit (batch 8, {opt}) ran eagerly" in out
        else:
            assert how == "compiled as one graph"


@pytest.mark.slow
def test_w5_torch_compile_row_counts_its_graphs():
    pytest.importorskip("torch")
    out = _run("bench/w5_mlp_train.py", "--batches", "8", *QUICK, "--optimizers", "sgd",
               "--peers", "kiln,torch.compile")
    how = _w5_rows(out)[(8, "sgd", "torch.compile")]
    assert "graph(s)" in how[0] and how[1].isdigit(), how


def test_w2_softmax_harness_checks_and_prints_a_table():
    out = _run("bench/w2_softmax.py", "--rows", "64", "--cols", "256", *QUICK, *OWN_PEERS)
    _assert_every_peer_ran(out, optional=())
    _assert_blas_recorded(out)
    assert "kiln-jit profile (median" in out


def test_w3_layernorm_harness_checks_and_prints_a_table():
    out = _run("bench/w3_layernorm.py", "--rows", "64", "--cols", "256", *QUICK, *OWN_PEERS)
    _assert_every_peer_ran(out, optional=())
    _assert_blas_recorded(out)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["w2_softmax", "w3_layernorm"])
def test_w2_w3_harnesses_with_every_peer(script):
    out = _run(f"bench/{script}.py", "--rows", "64", "--cols", "256", *QUICK)
    _assert_every_peer_ran(out)


_ARCHITECTURE_PROBE = """
import os, sys
os.environ.pop("OPENBLAS_CORETYPE", None)
if len(sys.argv) > 1:
    os.environ["OPENBLAS_CORETYPE"] = sys.argv[1]
import numpy
try:
    from threadpoolctl import threadpool_info
except ImportError:
    print(None)
else:
    print([p.get("architecture") for p in threadpool_info() if p["user_api"] == "blas"][0])
"""


def _numpy_architecture(*coretype: str) -> str | None:
    """The architecture NumPy's OpenBLAS reports under OPENBLAS_CORETYPE=coretype, or with
    none given, the one it picks itself (None without threadpoolctl)."""
    found = _run("-c", _ARCHITECTURE_PROBE, *coretype).strip()
    return None if found == "None" else found


@pytest.mark.parametrize("every_peer", [
    False, pytest.param(True, marks=pytest.mark.slow)], ids=("own", "peers"))
def test_w4_matmul_and_linear_relu_tables_and_no_forced_kernel(every_peer):
    # NOTE: started with a forced (old) OpenBLAS kernel: the peers must not run with it
    out = _run("bench/w4_matmul.py", "--n", "64", *QUICK, *(() if every_peer else OWN_PEERS),
               env={"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_L2_SIZE": "65536"})
    matmul, linear_relu = out.split("### linear_relu: relu(x @ w.T + b)")
    assert "### matmul: a @ b" in matmul and "GFLOP/s" in linear_relu
    optional = OPTIONAL_PEERS if every_peer else ()
    _assert_every_peer_ran(matmul.split("### matmul")[1], optional)
    _assert_every_peer_ran(linear_relu, optional)
    _assert_blas_recorded(out)
    assert "this script was started with OPENBLAS_CORETYPE=Prescott" in out
    forced, chosen = _numpy_architecture("Prescott"), _numpy_architecture()
    if forced is not None and forced != chosen:    # NOTE: else nothing tells them apart
        assert f"architecture {chosen}," in _blas_line(out, "numpy ")


def test_make_bench_runs_scripts_without_a_forced_blas_kernel():
    out = _run("bench/run_all.py", "w6", "--", "--inner", "5", *QUICK, "--peers", "numpy",
               env={"OPENBLAS_CORETYPE": "Prescott"})
    assert "running the benchmarks without OPENBLAS_CORETYPE=Prescott" in out
    assert "this script was started with" not in out     # NOTE: removed before the script
    _assert_blas_recorded(out)


def test_scripts_run_without_threadpoolctl(tmp_path):
    # NOTE: a module of that name that fails to import hides the installed one
    (tmp_path / "threadpoolctl.py").write_text(
        "raise ImportError('hidden by the test', name='threadpoolctl')\n")
    out = _run("bench/w6_overhead.py", "--inner", "5", *QUICK, "--peers", "numpy",
               env={"PYTHONPATH": str(tmp_path)})
    assert "BLAS numpy" in out and "threadpoolctl not installed" in out
    assert "| numpy |" in out


@pytest.mark.parametrize("every_peer", [
    False, pytest.param(True, marks=pytest.mark.slow)], ids=("own", "peers"))
def test_w6_overhead_harness_checks_and_prints_a_table(every_peer):
    out = _run("bench/w6_overhead.py", "--inner", "20", *QUICK, *(() if every_peer else OWN_PEERS))
    _assert_every_peer_ran(out, OPTIONAL_PEERS if every_peer else ())
    _assert_blas_recorded(out)
    assert "µs/call" in out


def _assert_compile_rows(out: str, compiler: str) -> None:
    """A compiler's cold row timed (or skipped) and its warm row timed after it."""
    rows = _rows(out)
    cold, warm = rows[compiler][0], rows[f"{compiler}-warm"][0]
    if cold.startswith("skipped: not installed"):
        assert warm.startswith("skipped: not installed"), warm
    else:
        assert _is_time(cold) and _is_time(warm), (cold, warm)


def test_w7_compile_harness_checks_losses_and_prints_a_table():
    out = _run("bench/w7_compile.py", "--batch", "8", *QUICK, "--peers",
               "kiln-jit,kiln-jit-warm,jax,jax-warm")
    assert _is_time(_rows(out)["kiln-jit"][0]) and _is_time(_rows(out)["kiln-jit-warm"][0])
    assert "wrong" not in out and "by stage" in out
    # NOTE: the warm process finds every module in the disk cache its cold peer filled
    warm = next(line for line in out.splitlines() if line.startswith("kiln-jit-warm compile"))
    assert ", 0 by LLVM)" in warm and "LLVM optimize + object" not in warm, warm
    # NOTE: the run that primed the page cache compiled into caches of its own: the measured
    # cold row still compiles everything; its unprimed time is printed, the warm row has none
    cold = next(line for line in out.splitlines() if line.startswith("kiln-jit compile"))
    built, by_llvm = map(int, re.search(r"\((\d+) modules built, (\d+) by LLVM\)", cold).groups())
    assert built == by_llvm > 0, cold
    header = next(line for line in out.splitlines() if line.startswith("| system"))
    unprimed = [c.strip() for c in header.strip("|").split("|")].index("unprimed first step s")
    assert _is_time(_rows(out)["kiln-jit"][unprimed - 1])
    assert _rows(out)["kiln-jit-warm"][unprimed - 1] == ""
    _assert_compile_rows(out, "jax")
    _assert_blas_recorded(out)


@pytest.mark.slow
def test_w7_torch_compile_rows_cold_then_warm():
    # NOTE: slow: inductor compiles the forward and backward from an empty cache
    out = _run("bench/w7_compile.py", "--batch", "8", *QUICK, "--peers",
               "kiln-jit,torch.compile,torch.compile-warm")
    _assert_compile_rows(out, "torch.compile")
