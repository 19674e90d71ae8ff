"""W3 (BENCHMARKS.md): layer norm over the last dim of float32 (8192, 1024), with weight and
bias, eps 1e-5.

    python bench/w3_layernorm.py                                # all peers, the table
    python bench/w3_layernorm.py --rows 64 --reps 3 --peers kiln,kiln-jit,numpy   # a quick look

Each peer runs in its own process pinned to harness.THREADS cores; its result is checked
against NumPy float64 (max |error| / max |reference| <= 1e-5) before any time counts. The floor
is the bytes read once + written once (8 per element, + weight and bias) over the copy
bandwidth measured here.
"""
from __future__ import annotations

import sys

import harness  # noqa: F401  (sets the thread variables: before NumPy)
import numpy as np

PEERS = harness.STANDARD_PEERS
TOLERANCE = 1e-5
EPS = 1e-5


def make_inputs(rows: int, cols: int) -> tuple:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((rows, cols), dtype=np.float32),
            1 + 0.1 * rng.standard_normal(cols, dtype=np.float32),
            rng.standard_normal(cols, dtype=np.float32))


def reference(x, w, b) -> np.ndarray:
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * w + b


# ---- peers: each maps the inputs to (args, function to time, result -> NumPy) --------------
def peer_kiln(inputs, jit=False):
    kiln = harness.kiln_module()

    def f(x, w, b):
        return kiln.layer_norm(x, x.shape[-1], w, b, EPS)
    args = tuple(kiln.from_numpy(a) for a in inputs)
    return args, kiln.jit(f) if jit else f, lambda y: y.numpy()


def peer_numpy(inputs):
    def f(x, w, b):
        mu = x.mean(-1, keepdims=True)
        c = x - mu
        return c / np.sqrt((c * c).mean(-1, keepdims=True) + EPS) * w + b
    return inputs, f, np.asarray


def peer_torch(inputs, compiled=False):
    torch = harness.torch_module()

    def f(x, w, b):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], w, b, EPS)
    args = tuple(torch.from_numpy(a) for a in inputs)
    return args, torch.compile(f) if compiled else f, lambda y: y.numpy()


def peer_jax(inputs):
    import jax

    # NOTE: JAX has no layer_norm outside Flax; this is what a JAX user writes
    def f(x, w, b):
        mu = x.mean(-1, keepdims=True)
        c = x - mu
        return c * jax.lax.rsqrt((c * c).mean(-1, keepdims=True) + EPS) * w + b
    return harness.jax_jitted(f, inputs)


MAKERS = harness.makers(peer_kiln, peer_numpy, peer_torch, peer_jax)


def main(argv=None) -> int:
    p = harness.parser(__doc__, PEERS, TOLERANCE)
    p.add_argument("--rows", type=int, default=8192, help="rows (8192)")
    p.add_argument("--cols", type=int, default=1024, help="normalized length (1024)")
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = p.parse_args(argv)
    if ns.peer:
        inputs = make_inputs(ns.rows, ns.cols)
        return harness.child(ns, lambda peer: harness.measure(
            peer, MAKERS[peer], inputs, reference(*inputs), ns))
    nbytes = 8 * ns.rows * ns.cols + 8 * ns.cols
    harness.header(f"W3 layernorm: float32 ({ns.rows}, {ns.cols}), eps {EPS:g}", ns)
    return harness.compare(__file__, ns, argv, PEERS, "copy", nbytes, [
        harness.time_column(), harness.rate_column("GB/s", nbytes)])


if __name__ == "__main__":
    sys.exit(main())
