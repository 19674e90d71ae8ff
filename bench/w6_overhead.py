"""W6 (BENCHMARKS.md): per-call overhead: 8 chained elementwise ops and a sum on a float32
vector of 16 elements, in µs per call.

    python bench/w6_overhead.py                                 # all peers, the table
    python bench/w6_overhead.py --inner 50 --reps 3 --peers kiln,kiln-jit,numpy   # a quick look

The work is ~200 flops, so the time is what a system spends around it (dispatch, guards,
allocation, launches). Each repetition times `--inner` calls (µs per call = its time / inner);
the median of the repetitions counts. Each peer runs in its own process pinned to
harness.THREADS cores; its result is checked against NumPy float64 (relative error <= 1e-5)
first. No floor: the workload measures overhead, not bandwidth or flops.
"""
from __future__ import annotations

import sys

import harness  # noqa: F401  (sets the thread variables: before NumPy)
import numpy as np

PEERS = harness.STANDARD_PEERS
TOLERANCE = 1e-5


def program(tanh, sigmoid, abs_, sum_):
    """The workload for one library: mul add tanh mul sub sigmoid mul abs, then a sum."""
    def f(x):
        y = x * 2.0 + 1.0
        y = tanh(y) * x - 0.5
        y = sigmoid(y) * y
        return sum_(abs_(y))
    return f


def np_sigmoid(a):
    return 1 / (1 + np.exp(-a))


def make_input(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n, dtype=np.float32)


def reference(x: np.ndarray) -> np.ndarray:
    return np.asarray(program(np.tanh, np_sigmoid, np.abs, np.sum)(x.astype(np.float64)))


# ---- peers: each maps the input to (args, function to time, result -> NumPy) ---------------
def peer_kiln(x, jit=False):
    kiln = harness.kiln_module()
    f = program(kiln.tanh, kiln.sigmoid, kiln.abs, kiln.sum)
    return (kiln.from_numpy(x),), kiln.jit(f) if jit else f, lambda y: y.numpy()


def peer_numpy(x):
    return (x,), program(np.tanh, np_sigmoid, np.abs, np.sum), np.asarray


def peer_torch(x, compiled=False):
    torch = harness.torch_module()
    f = program(torch.tanh, torch.sigmoid, torch.abs, torch.sum)
    return (torch.from_numpy(x),), torch.compile(f) if compiled else f, lambda y: y.numpy()


def peer_jax(x):
    import jax
    jnp = jax.numpy
    return harness.jax_jitted(program(jnp.tanh, jax.nn.sigmoid, jnp.abs, jnp.sum), (x,))


MAKERS = harness.makers(peer_kiln, peer_numpy, peer_torch, peer_jax)


def main(argv=None) -> int:
    p = harness.parser(__doc__, PEERS, TOLERANCE)
    p.add_argument("--n", type=int, default=16, help="vector length (16)")
    p.add_argument("--inner", type=int, default=1000, help="calls per repetition (1000)")
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = p.parse_args(argv)
    if ns.peer:
        x = make_input(ns.n)
        return harness.child(ns, lambda peer: harness.measure(
            peer, MAKERS[peer], x, reference(x), ns, inner=ns.inner))
    harness.header(f"W6 overhead: 8 elementwise ops + sum on float32[{ns.n}], "
                   f"{ns.inner} calls per repetition", ns)
    return harness.compare(__file__, ns, argv, PEERS, None, 0, [
        harness.time_column("µs/call", 1e6, ".1f"), harness.rate_column("calls/s", 1, 1, ".0f")])


if __name__ == "__main__":
    sys.exit(main())
