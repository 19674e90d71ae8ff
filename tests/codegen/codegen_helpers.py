"""Shared by the codegen tests: build kernel graphs, sample inputs, compare results."""
from __future__ import annotations

import numpy as np

from kiln.ir.builder import GraphBuilder
from kiln.ir.dtypes import DType
from kiln.ir.types import TensorType

FLOAT_SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -2.0, 3.0, 1e-40,
                  -1e-40, 1e30, -1e30, 88.5, -88.5, 100.0, -100.0, 700.0, -750.0, 1e-7, 4.5]


def t(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


def kernel_graph(in_types, build, name: str = "k0"):
    """A graph with one `kernel` node; `build(gb, *body_inputs)` returns the body outputs."""
    body = GraphBuilder("body")
    xs = [body.add_input(ty) for ty in in_types]
    outs = build(body, *xs)
    body_graph = body.finish(list(outs))
    outer = GraphBuilder(name)
    ys = [outer.add_input(ty) for ty in in_types]
    results = outer.emit("kernel", ys, {"name": name, "body": body_graph})
    return outer.finish(list(results))


def emit1(gb, op, inputs, attrs=None):
    """Emit a single-output op and return its value."""
    (v,) = gb.emit(op, list(inputs), attrs or {})
    return v


def sample(dtype: DType, shape, rng: np.random.Generator) -> np.ndarray:
    """Random values covering each dtype's interesting cases (specials first for floats)."""
    n = int(np.prod(shape))
    if dtype == DType.bool:
        return rng.random(n).reshape(shape) < 0.5
    if dtype.is_int:
        info = np.iinfo(dtype.np)
        small = rng.integers(-100, 100, n)
        wide = rng.integers(info.min, info.max, n, endpoint=True, dtype=dtype.np)
        return np.where(rng.random(n) < 0.8, small, wide).astype(dtype.np).reshape(shape)
    return _float_sample(dtype, n, rng).reshape(shape)


def _float_sample(dtype, n, rng):
    thirds = [rng.standard_normal(n) * 3,
              np.exp(rng.uniform(-14, 14, n)),
              rng.uniform(-20, 20, n)]
    pick = rng.integers(0, 3, n)
    x = np.choose(pick, thirds)
    x = np.where(rng.random(n) < 0.15, np.round(x), x)          # integers (pow's sign rules)
    k = min(n, len(FLOAT_SPECIALS))
    x[:k] = FLOAT_SPECIALS[:k]
    return x.astype(dtype.np)


def tiny(dtype) -> float:
    """Absolute slack for results in the denormal range."""
    return float(np.finfo(dtype).tiny) if np.dtype(dtype).kind == "f" else 0.0


def assert_matches(got, want, rtol: float = 0.0, what: str = ""):
    """Equal dtype and shape; floats: NaN where NaN, otherwise |got-want| <= rtol*|want| +
    tiny (elementwise relative error with a denormal-sized absolute floor)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype)
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaN positions differ"
    ok = ~np.isnan(want)
    g, w = got[ok].astype(np.float64), want[ok].astype(np.float64)
    same_inf = np.isinf(w) & (g == w)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - w)
        bad = ~same_inf & ~(err <= rtol * np.abs(w) + tiny(want.dtype))
    if bad.any():
        i = np.flatnonzero(bad)[:5]
        raise AssertionError(f"{what}: {bad.sum()} mismatches, e.g. got {g[i]} want {w[i]}")


def w1_graph(n: int, dtype: DType = DType.float32):
    """W1: x*sigmoid(x)*0.5 + tanh(x) as one kernel over n elements."""
    def build(gb, x):
        half = emit1(gb, "full", [], {"value": 0.5, "shape": (n,), "dtype": dtype})
        scaled = emit1(gb, "mul", [emit1(gb, "mul", [x, emit1(gb, "sigmoid", [x])]), half])
        return [emit1(gb, "add", [scaled, emit1(gb, "tanh", [x])])]
    return kernel_graph([t(dtype, n)], build, name="w1")


def w1_reference(x: np.ndarray) -> np.ndarray:
    """W1 in float64 (NumPy)."""
    x = x.astype(np.float64)
    return x / (1 + np.exp(-x)) * 0.5 + np.tanh(x)


def one_op_case(op, dtypes, attrs, shape, rng):
    """(graph, inputs, the interpreter's result) of `op` alone on random `shape` inputs
    (pow's exponents kept to [-40, 40], so that most results are finite)."""
    import warnings

    from kiln.ir.interpreter import interpret
    graph = kernel_graph([t(d, *shape) for d in dtypes],
                         lambda gb, *xs: [emit1(gb, op, xs, attrs)])
    inputs = [sample(d, shape, rng) for d in dtypes]
    if op == "pow":
        inputs[1] = np.clip(inputs[1], -40, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = interpret(graph, inputs)[0]
    return graph, inputs, want
