"""W1 (BENCHMARKS.md): y = x * sigmoid(x) * 0.5 + tanh(x), x float32 of 2**24 elements.

    python bench/w1_elementwise.py                   # all peers, the table
    python bench/w1_elementwise.py --n 65536 --reps 5 --peers kiln,numpy   # a quick look

Each peer runs in its own process (`--peer NAME`, printing one JSON line) pinned to the same
THREADS cores; its result is checked against NumPy float64 before any time counts. The floor
is 8 bytes per element (read x once, write y once) over the copy bandwidth measured here.
"""
from __future__ import annotations

import os

THREADS = 2
# NOTE: set before NumPy (or any peer) is imported: thread pools read these once, at import.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = str(THREADS)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      f"intra_op_parallelism_threads={THREADS}")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

BYTES_PER_ELEMENT = 8
TOLERANCE = 1e-6       # max relative error vs float64; a peer above it has its timing voided
PEERS = ("kiln", "numpy", "torch", "torch.compile", "jax")
COPY_BYTES = 256 * 2**20


def pin_cpus() -> None:
    # NOTE: the env variables cover OpenMP/BLAS pools; pinning the process covers every other
    # pool too (Kiln's own, XLA's), so on a many-core machine each peer gets THREADS cores.
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:THREADS]
        os.sched_setaffinity(0, cpus)


def make_input(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n, dtype=np.float32)


def reference(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x * (1.0 / (1.0 + np.exp(-x))) * 0.5 + np.tanh(x)


def max_rel_error(got: np.ndarray, want: np.ndarray) -> float:
    # NOTE: the function is 0 only at x = 0 and shrinks with x there, so |want| is a fair scale.
    denom = np.maximum(np.abs(want), np.finfo(np.float32).tiny)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want) / denom))


# ---- peers: each returns (prepared input, function to time, result -> NumPy) ---------------
def peer_numpy(x):
    def f(a):
        return a * (1 / (1 + np.exp(-a))) * 0.5 + np.tanh(a)
    return x, f, np.asarray


def peer_kiln(x):
    import warnings

    import kiln
    # NOTE: where compilation fails, @kiln.jit warns and runs eagerly; timing that would
    # credit eager NumPy to the compiler, so here the warning is an error.
    warnings.simplefilter("error", kiln.KilnJitWarning)

    @kiln.jit
    def f(a):
        return a * kiln.sigmoid(a) * 0.5 + kiln.tanh(a)
    return kiln.from_numpy(x), f, lambda y: y.numpy()


def _torch():
    import torch
    torch.set_num_threads(THREADS)
    return torch


def peer_torch(x):
    torch = _torch()

    def f(a):
        return a * torch.sigmoid(a) * 0.5 + torch.tanh(a)
    return torch.from_numpy(x), f, lambda y: y.numpy()


def peer_torch_compile(x):
    xt, f, back = peer_torch(x)
    return xt, _torch().compile(f), back


def peer_jax(x):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def f(a):
        return a * jax.nn.sigmoid(a) * 0.5 + jnp.tanh(a)
    return jnp.asarray(x), lambda a: f(a).block_until_ready(), np.asarray


MAKERS = {"kiln": peer_kiln, "numpy": peer_numpy, "torch": peer_torch,
          "torch.compile": peer_torch_compile, "jax": peer_jax}


def time_calls(f, arg, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(arg)
        times.append(time.perf_counter() - t0)
    return times


def version_of(peer: str) -> str:
    module = sys.modules.get(peer.split(".")[0])
    return getattr(module, "__version__", "?")


def run_peer(name: str, n: int, reps: int, warmup: int) -> dict:
    """Check, warm up, time one peer; a dict for the parent's table."""
    x = make_input(n)
    try:
        arg, f, back = MAKERS[name](x)
    except ImportError as e:
        return {"peer": name, "status": "skipped", "why": f"not installed ({e.name})"}
    try:
        t0 = time.perf_counter()
        y = back(f(arg))
        first_s = time.perf_counter() - t0
    except Exception as e:  # NOTE: one broken peer must not hide the others' numbers
        return {"peer": name, "status": "error", "why": f"{type(e).__name__}: {e}"}
    err = max_rel_error(y, reference(x))
    if not err <= TOLERANCE:
        return {"peer": name, "status": "wrong", "err": err,
                "why": f"max relative error {err:.2e} > {TOLERANCE:.0e}: timing void"}
    time_calls(f, arg, warmup)
    times = time_calls(f, arg, reps)
    return {"peer": name, "status": "ok", "err": err, "first_s": first_s,
            "median_s": statistics.median(times), "min_s": min(times), "reps": reps,
            "version": version_of(name)}


def parallel_copy(dst: np.ndarray, src: np.ndarray, threads: int) -> None:
    """np.copyto in `threads` equal slices at once."""
    # NOTE: NumPy releases the GIL while copying, so the threads copy in parallel.
    edges = np.linspace(0, src.size, threads + 1).astype(int)
    workers = [threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b]))
               for a, b in zip(edges[:-1], edges[1:], strict=True)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def copy_bandwidth(reps: int) -> dict:
    """Bytes read + written per second by np.copyto of 256 MiB, on 1 and THREADS threads."""
    src = np.random.default_rng(1).random(COPY_BYTES // 8)
    dst = np.empty_like(src)
    by_threads = {}
    for threads in sorted({1, THREADS}):
        times = time_calls(lambda _, t=threads: parallel_copy(dst, src, t), None, reps + 2)
        by_threads[threads] = 2 * src.nbytes / statistics.median(times[2:])
    return {"peer": "copy", "status": "ok", "bytes_per_s": max(by_threads.values()),
            "by_threads": by_threads}


# ---- the parent: one process per peer, then the table -------------------------------------
def spawn(peer: str, ns) -> dict:
    cmd = [sys.executable, __file__, "--peer", peer, "--n", str(ns.n), "--reps", str(ns.reps),
           "--warmup", str(ns.warmup)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=ns.timeout)
    except subprocess.TimeoutExpired:
        return {"peer": peer, "status": "error", "why": f"timed out after {ns.timeout} s"}
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"peer": peer, "status": "error", "why": f"exit {r.returncode}: {tail}"}


def table(results: list[dict], n: int, copy: dict) -> str:
    floor_s = BYTES_PER_ELEMENT * n / copy["bytes_per_s"]
    kiln = next((r for r in results if r["peer"] == "kiln" and r["status"] == "ok"), None)
    rows = ["| system | median ms | GB/s | fraction of floor | time / Kiln's |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| floor (copy bandwidth) | {1e3 * floor_s:.2f} | "
            f"{copy['bytes_per_s'] / 1e9:.1f} | 1.00 | |"]
    for r in results:
        if r["status"] != "ok":
            rows.append(f"| {r['peer']} | {r['status']}: {r['why']} | | | |")
            continue
        t = r["median_s"]
        ratio = f"{t / kiln['median_s']:.2f}" if kiln else "n/a"
        rows.append(f"| {r['peer']} | {1e3 * t:.2f} | {BYTES_PER_ELEMENT * n / t / 1e9:.1f} | "
                    f"{floor_s / t:.2f} | {ratio} |")
    return "\n".join(rows)


def notes(results: list[dict], copy: dict) -> str:
    lines = ["copy bandwidth (np.copyto of 256 MiB, read + write), by threads: " + ", ".join(
        f"{k}: {v / 1e9:.1f} GB/s" for k, v in sorted(copy["by_threads"].items()))]
    for r in results:
        if r["status"] == "ok":
            lines.append(f"{r['peer']}: first call {r['first_s']:.3f} s, min {1e3 * r['min_s']:.2f}"
                         f" ms, max rel err {r['err']:.1e}, version {r.get('version', '?')}")
    return "\n".join(lines)


def parent(ns) -> int:
    peers = [p.strip() for p in ns.peers.split(",")] if ns.peers else list(PEERS)
    unknown = set(peers) - set(PEERS)
    if unknown:
        sys.exit(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    print(f"W1 elementwise: n = {ns.n:,} float32, {THREADS} threads per peer, "
          f"median of {ns.reps} after {ns.warmup} warm-up calls, tolerance {TOLERANCE:.0e}\n")
    copy = spawn("copy", ns)
    if copy["status"] != "ok":
        sys.exit(f"could not measure copy bandwidth: {copy['why']}")
    results = [spawn(p, ns) for p in peers]
    print(table(results, ns.n, copy))
    print()
    print(notes(results, copy))
    failed = [r["peer"] for r in results if r["peer"] in ("kiln", "numpy") and
              r["status"] != "ok"]
    if failed:
        print(f"\nFAILED: {', '.join(failed)} gave no valid timing", file=sys.stderr)
    return 1 if failed else 0


def child(ns) -> int:
    pin_cpus()
    if ns.peer == "copy":
        result = copy_bandwidth(max(ns.reps, 20))   # NOTE: the floor must not be noisy
    else:
        result = run_peer(ns.peer, ns.n, ns.reps, ns.warmup)
    print("RESULT " + json.dumps(result))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2**24, help="elements (2**24)")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions, median (20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after the check (3)")
    p.add_argument("--peers", help=f"comma-separated subset of {', '.join(PEERS)}")
    p.add_argument("--timeout", type=int, default=600, help="seconds per peer process (600)")
    p.add_argument("--peer", help=argparse.SUPPRESS)   # NOTE: internal: run one peer, print JSON
    ns = p.parse_args(argv)
    return child(ns) if ns.peer else parent(ns)


if __name__ == "__main__":
    sys.exit(main())
