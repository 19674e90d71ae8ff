"""Never silently wrong: random programs give the same answer under @kiln.jit as eagerly.

Hypothesis draws short programs over elementwise ops, broadcasting, Python scalars,
reductions, transposes and slices; each is run eagerly and jitted (traced, canonicalized,
fused, compiled through MLIR and LLVM) and the results compared.
"""
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import kiln
from kiln.frontend.jit import KilnJitWarning

UNARY = {
    "tanh": kiln.tanh, "sigmoid": kiln.sigmoid, "relu": kiln.relu, "neg": kiln.neg,
    "abs": kiln.abs, "exp_tanh": lambda t: kiln.exp(kiln.tanh(t)),
    "sqrt_abs": lambda t: kiln.sqrt(kiln.abs(t) + 0.5), "erf": kiln.erf,
}
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (abs(b) + 1.0), "max": kiln.maximum, "min": kiln.minimum,
    "where": lambda a, b: kiln.where(a > b, a, b * 0.5),
}


def _apply(step, values):
    kind = step[0]
    if kind == "unary":
        return UNARY[step[1]](values[step[2] % len(values)])
    if kind == "scalar":
        return BINARY[step[1]](values[step[2] % len(values)], step[3])
    if kind == "binary":
        a, b = values[step[2] % len(values)], values[step[3] % len(values)]
        try:
            np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
        except ValueError:
            return None
        return BINARY[step[1]](a, b)
    x = values[step[2] % len(values)]
    if x.ndim == 0:
        return None
    if kind == "reduce":
        dim = step[3] % x.ndim
        return getattr(x, step[1])(dim, keepdim=step[4]) if step[1] != "amax" else \
            kiln.amax(x, dim, keepdim=step[4])
    if kind == "transpose":
        return x.transpose(0, -1)
    return x[..., ::2]                                     # "slice"


steps = st.one_of(
    st.tuples(st.just("unary"), st.sampled_from(sorted(UNARY)), st.integers(0, 9)),
    st.tuples(st.just("scalar"), st.sampled_from(sorted(BINARY)), st.integers(0, 9),
              st.sampled_from([0.5, -2.0, 3, 1e-3])),
    st.tuples(st.just("binary"), st.sampled_from(sorted(BINARY)), st.integers(0, 9),
              st.integers(0, 9)),
    st.tuples(st.just("reduce"), st.sampled_from(["sum", "mean", "amax"]), st.integers(0, 9),
              st.integers(0, 3), st.booleans()),
    st.tuples(st.sampled_from(["transpose", "slice"]), st.none(), st.integers(0, 9)),
)


def make_program(program):
    def fn(x, y):
        values = [x, y]
        for step in program:
            out = _apply(step, values)
            if out is not None:
                values.append(out)
        return values[-1], values[len(values) // 2]
    return fn


@settings(max_examples=60)
@given(st.lists(steps, min_size=1, max_size=8), st.sampled_from([(3, 4), (2, 3, 5), (6,)]),
       st.integers(0, 2**16))
def test_random_programs_agree_jit_and_eager(program, shape, seed):
    rng = np.random.default_rng(seed)
    x = kiln.from_numpy(rng.standard_normal(shape).astype(np.float32))
    y = kiln.from_numpy(rng.standard_normal(shape[-1:]).astype(np.float32))
    fn = make_program(program)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        got = kiln.jit(fn)(x, y)
    want = fn(x, y)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=2e-5, atol=2e-6)


@settings(max_examples=40)
@given(st.lists(steps, min_size=1, max_size=8), st.sampled_from([(3, 4), (2, 3, 5), (6,)]),
       st.integers(0, 2**16))
def test_random_programs_gradients_agree_jit_and_eager(program, shape, seed):
    """The compiled backward (autograd pass over the traced graph) equals eager autograd."""
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal(shape).astype(np.float32)
    ys = rng.standard_normal(shape[-1:]).astype(np.float32)
    fn = make_program(program)

    def grads(jitted: bool):
        x = kiln.from_numpy(xs).requires_grad_()
        y = kiln.from_numpy(ys).requires_grad_()
        a, b = (kiln.jit(fn) if jitted else fn)(x, y)
        loss = (a * a).sum() + b.sum()
        if not loss.requires_grad:
            return None
        loss.backward()
        return [t.grad.numpy() if t.grad is not None else np.zeros_like(t.detach().numpy())
                for t in (x, y)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        got = grads(True)
    want = grads(False)
    if want is None:
        assert got is None
        return
    for g, w in zip(got, want):
        scale = max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * scale)
