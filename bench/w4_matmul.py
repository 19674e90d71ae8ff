"""W4 (BENCHMARKS.md): float32 (1024, 1024) @ (1024, 1024), in GFLOP/s (2 n^3 flops).

    python bench/w4_matmul.py                                   # all peers, the table
    python bench/w4_matmul.py --n 128 --reps 3 --peers kiln,kiln-jit,numpy   # a quick look

Each peer runs in its own process pinned to harness.THREADS cores; its result is checked
against NumPy float64 (max |error| / max |reference| <= 1e-5) before any time counts. The floor
is 2 n^3 flops over the BLAS rate measured here (a NumPy float32 2048^3 product, same cores).
"""
from __future__ import annotations

import sys

import harness  # noqa: F401  (sets the thread variables: before NumPy)
import numpy as np

PEERS = ("kiln", "kiln-jit", "numpy", "torch", "torch.compile")
TOLERANCE = 1e-5


def make_inputs(n: int) -> tuple:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, n), dtype=np.float32),
            rng.standard_normal((n, n), dtype=np.float32))


def reference(a, b) -> np.ndarray:
    return a.astype(np.float64) @ b.astype(np.float64)


# ---- peers: each maps the inputs to (args, function to time, result -> NumPy) --------------
def matmul(a, b):
    return a @ b


def peer_kiln(inputs, jit=False):
    kiln = harness.kiln_module()
    args = tuple(kiln.from_numpy(a) for a in inputs)
    return args, kiln.jit(matmul) if jit else matmul, lambda y: y.numpy()


def peer_numpy(inputs):
    return inputs, matmul, np.asarray


def peer_torch(inputs, compiled=False):
    torch = harness.torch_module()
    args = tuple(torch.from_numpy(a) for a in inputs)
    return args, torch.compile(matmul) if compiled else matmul, lambda y: y.numpy()


MAKERS = harness.makers(peer_kiln, peer_numpy, peer_torch)


def main(argv=None) -> int:
    p = harness.parser(__doc__, PEERS, TOLERANCE)
    p.add_argument("--n", type=int, default=1024, help="matrix size (1024)")
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = p.parse_args(argv)
    if ns.peer:
        inputs = make_inputs(ns.n)
        return harness.child(ns, lambda peer: harness.measure(
            peer, MAKERS[peer], inputs, reference(*inputs), ns))
    flops = 2 * ns.n**3
    harness.header(f"W4 matmul: float32 ({ns.n}, {ns.n}) @ ({ns.n}, {ns.n})", ns)
    return harness.compare(__file__, ns, argv, PEERS, "blas", flops, [
        harness.time_column(fmt=".3f"), harness.rate_column("GFLOP/s", flops)])


if __name__ == "__main__":
    sys.exit(main())
