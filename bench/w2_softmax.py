"""W2 (BENCHMARKS.md): row softmax of float32 (8192, 1024), max-subtracted.

    python bench/w2_softmax.py                                  # all peers, the table
    python bench/w2_softmax.py --rows 64 --reps 3 --peers kiln,kiln-jit,numpy   # a quick look

Each peer runs in its own process pinned to harness.THREADS cores; its result is checked
against NumPy float64 (max |error| / max |reference| <= 1e-5) before any time counts. The floor
is the bytes read once + written once (8 per element) over the copy bandwidth measured here.
"""
from __future__ import annotations

import sys

import harness  # noqa: F401  (sets the thread variables: before NumPy)
import numpy as np

PEERS = harness.STANDARD_PEERS
TOLERANCE = 1e-5


def make_input(rows: int, cols: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)


def reference(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---- peers: each maps the input to (args, function to time, result -> NumPy) ---------------
def peer_kiln(x, jit=False):
    kiln = harness.kiln_module()

    def f(a):
        return kiln.softmax(a, -1)
    return (kiln.from_numpy(x),), kiln.jit(f) if jit else f, lambda y: y.numpy()


def peer_numpy(x):
    def f(a):
        e = np.exp(a - a.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return (x,), f, np.asarray


def peer_torch(x, compiled=False):
    torch = harness.torch_module()

    def f(a):
        return torch.softmax(a, -1)
    return (torch.from_numpy(x),), torch.compile(f) if compiled else f, lambda y: y.numpy()


def peer_jax(x):
    import jax

    def f(a):
        return jax.nn.softmax(a, axis=-1)
    return harness.jax_jitted(f, (x,))


MAKERS = harness.makers(peer_kiln, peer_numpy, peer_torch, peer_jax)


def main(argv=None) -> int:
    p = harness.parser(__doc__, PEERS, TOLERANCE)
    p.add_argument("--rows", type=int, default=8192, help="rows (8192)")
    p.add_argument("--cols", type=int, default=1024, help="softmax length (1024)")
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = p.parse_args(argv)
    if ns.peer:
        x = make_input(ns.rows, ns.cols)
        return harness.child(ns, lambda peer: harness.measure(
            peer, MAKERS[peer], x, reference(x), ns))
    nbytes = 8 * ns.rows * ns.cols
    harness.header(f"W2 softmax: float32 ({ns.rows}, {ns.cols})", ns)
    return harness.compare(__file__, ns, argv, PEERS, "copy", nbytes, [
        harness.time_column(), harness.rate_column("GB/s", nbytes)])


if __name__ == "__main__":
    sys.exit(main())
