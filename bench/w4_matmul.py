"""W4 (BENCHMARKS.md): float32 (1024, 1024) @ (1024, 1024), in GFLOP/s (2 n^3 flops); and the
same product with a bias + ReLU epilogue, relu(x @ w.T + b) (x, w (n, n), b (n)), as a second
table: what a Linear + ReLU layer costs, and whether a compiler fuses the epilogue.

    python bench/w4_matmul.py                                   # all peers, both tables
    python bench/w4_matmul.py --n 128 --reps 3 --peers kiln,kiln-jit,numpy   # a quick look

Each peer runs in its own process pinned to harness.THREADS cores; its result is checked
against NumPy float64 (max |error| / max |reference| <= 1e-5) before any time counts. The floor
is 2 n^3 flops over the BLAS rate measured here (a NumPy float32 2048^3 product, same cores),
for both tables: the epilogue's n^2 adds and maxima are not counted.
"""
from __future__ import annotations

import argparse
import functools
import sys

import harness  # noqa: F401  (sets the thread variables: before NumPy)
import numpy as np

PEERS = harness.STANDARD_PEERS
TOLERANCE = 1e-5
CASES = {"matmul": "a @ b", "linear_relu": "relu(x @ w.T + b)"}


def make_inputs(case: str, n: int) -> tuple:
    """matmul: a, b (n, n); linear_relu: x, w (n, n) and b (n)."""
    rng = np.random.default_rng(0)
    shapes = [(n, n), (n, n)] + ([(n,)] if case == "linear_relu" else [])
    return tuple(rng.standard_normal(s, dtype=np.float32) for s in shapes)


def reference(case: str, inputs: tuple) -> np.ndarray:
    a = [v.astype(np.float64) for v in inputs]
    if case == "matmul":
        return a[0] @ a[1]
    return np.maximum(a[0] @ a[1].T + a[2], 0)


# ---- peers: each maps the inputs to (args, function to time, result -> NumPy) --------------
def matmul(a, b):
    return a @ b


def program(case: str, relu):
    """The function to time for `case`, written with one library's relu."""
    if case == "matmul":
        return matmul

    def linear_relu(x, w, b):
        return relu(x @ w.T + b)
    return linear_relu


def numpy_relu(a):
    return np.maximum(a, 0)


def peer_kiln(case, inputs, jit=False):
    kiln = harness.kiln_module()
    f = program(case, kiln.relu)
    args = tuple(kiln.from_numpy(a) for a in inputs)
    return args, kiln.jit(f) if jit else f, lambda y: y.numpy()


def peer_numpy(case, inputs):
    return inputs, program(case, numpy_relu), np.asarray


def peer_torch(case, inputs, compiled=False):
    torch = harness.torch_module()
    f = program(case, torch.relu)
    args = tuple(torch.from_numpy(a) for a in inputs)
    return args, torch.compile(f) if compiled else f, lambda y: y.numpy()


def peer_jax(case, inputs):
    import jax
    return harness.jax_jitted(program(case, jax.nn.relu), inputs)


def makers(case: str) -> dict:
    return harness.makers(*(functools.partial(peer, case)
                            for peer in (peer_kiln, peer_numpy, peer_torch, peer_jax)))


# ---- the parent: one table per case, each with its own floor measurement -------------------
def compare_case(case: str, ns, argv: list, flops: float) -> int:
    """Every peer on `case`, its own processes, the BLAS floor taking turns with them; the
    table and notes; the exit status."""
    print(f"### {case}: {CASES[case]}\n", flush=True)
    results, floor = harness.peers_and_floor(__file__, ns, argv + ["--case", case], PEERS,
                                             "blas", flops)
    status = harness.report(results, [harness.time_column(fmt=".3f"),
                                      harness.rate_column("GFLOP/s", flops)], floor)
    print(flush=True)
    return status


def main(argv=None) -> int:
    p = harness.parser(__doc__, PEERS, TOLERANCE)
    p.add_argument("--n", type=int, default=1024, help="matrix size (1024)")
    p.add_argument("--case", choices=CASES, default="matmul", help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = p.parse_args(argv)
    if ns.peer:
        inputs = make_inputs(ns.case, ns.n)
        return harness.child(ns, lambda peer: harness.measure(
            peer, makers(ns.case)[peer], inputs, reference(ns.case, inputs), ns))
    flops = 2 * ns.n**3
    harness.header(f"W4 matmul: float32 ({ns.n}, {ns.n}) @ ({ns.n}, {ns.n}); then "
                   f"relu(x @ w.T + b), b of {ns.n}", ns)
    return max([compare_case(case, ns, argv, flops) for case in CASES])


if __name__ == "__main__":
    sys.exit(main())
