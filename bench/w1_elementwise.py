"""W1 (BENCHMARKS.md): y = x * sigmoid(x) * 0.5 + tanh(x), x float32 of 2**24 elements.

    python bench/w1_elementwise.py                   # all peers, the table
    python bench/w1_elementwise.py --n 65536 --reps 5 --peers kiln-jit,numpy   # a quick look

Each peer runs in its own process pinned to harness.THREADS cores; its result is checked
elementwise against NumPy float64 (max relative error <= 1e-6) before any time counts. The
floor is 8 bytes per element (read x once, write y once) over the copy bandwidth measured here.
"""
from __future__ import annotations

import sys

import harness  # noqa: F401  (sets the thread variables: before NumPy)
import numpy as np

PEERS = harness.STANDARD_PEERS
TOLERANCE = 1e-6
BYTES_PER_ELEMENT = 8


def make_input(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n, dtype=np.float32)


def reference(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x * (1.0 / (1.0 + np.exp(-x))) * 0.5 + np.tanh(x)


def max_rel_error(got, want: np.ndarray) -> float:
    # NOTE: the function is 0 only at x = 0 and shrinks with x there, so |want| is a fair scale.
    denom = np.maximum(np.abs(want), np.finfo(np.float32).tiny)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want) / denom))


# ---- peers: each maps the input to (args, function to time, result -> NumPy) ---------------
def peer_kiln(x, jit=False):
    kiln = harness.kiln_module()

    def f(a):
        return a * kiln.sigmoid(a) * 0.5 + kiln.tanh(a)
    return (kiln.from_numpy(x),), kiln.jit(f) if jit else f, lambda y: y.numpy()


def peer_numpy(x):
    def f(a):
        return a * (1 / (1 + np.exp(-a))) * 0.5 + np.tanh(a)
    return (x,), f, np.asarray


def peer_torch(x, compiled=False):
    torch = harness.torch_module()

    def f(a):
        return a * torch.sigmoid(a) * 0.5 + torch.tanh(a)
    return (torch.from_numpy(x),), torch.compile(f) if compiled else f, lambda y: y.numpy()


def peer_jax(x):
    import jax

    def f(a):
        return a * jax.nn.sigmoid(a) * 0.5 + jax.numpy.tanh(a)
    return harness.jax_jitted(f, (x,))


MAKERS = harness.makers(peer_kiln, peer_numpy, peer_torch, peer_jax)


def main(argv=None) -> int:
    p = harness.parser(__doc__, PEERS, TOLERANCE)
    p.add_argument("--n", type=int, default=2**24, help="elements (2**24)")
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = p.parse_args(argv)
    if ns.peer:
        x = make_input(ns.n)
        return harness.child(ns, lambda peer: harness.measure(
            peer, MAKERS[peer], x, reference(x), ns, error=max_rel_error))
    nbytes = BYTES_PER_ELEMENT * ns.n
    harness.header(f"W1 elementwise: float32[{ns.n:,}], tolerance {ns.tol:g}", ns)
    return harness.compare(__file__, ns, argv, PEERS, "copy", nbytes, [
        harness.time_column(), harness.rate_column("GB/s", nbytes)])


if __name__ == "__main__":
    sys.exit(main())
