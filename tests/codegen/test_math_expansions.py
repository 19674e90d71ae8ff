"""Accuracy of codegen/math_expansions.py over the whole float range, and the W1 target.

Inputs: random bit patterns (every exponent: denormals, huge values, inf, NaN), a dense
range where the functions vary, and special values. Reference: NumPy float64 for f32
results; 80-bit long double (or libm's double erf) for f64 results. Error: ulps of the
result dtype at the reference value (`np.spacing`), so denormal results are judged by their
own precision.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from kiln.codegen.math_expansions import EXPANSIONS
from kiln.ir.dtypes import DType
from kiln.frontend.compile import compile_graph

from codegen_helpers import FLOAT_SPECIALS, emit1, kernel_graph, t

F32, F64 = DType.float32, DType.float64
N = 1 << 16
# NOTE: measured maxima on this machine (znver4) are in the comments; the bounds leave about
# 1.5x room. f64 erf and pow are libm calls (the reference is libm too for erf).
MAX_ULPS = {
    ("exp", F32): 1.5, ("exp", F64): 1.5,            # 0.84, 0.83
    ("log", F32): 1.5, ("log", F64): 1.5,            # 0.75, 0.73
    ("tanh", F32): 2.5, ("tanh", F64): 2.5,          # 1.54, 1.61
    ("sigmoid", F32): 3.5, ("sigmoid", F64): 3.5,    # 2.34, 2.42
    ("erf", F32): 3.5, ("erf", F64): 1.0,            # 2.38, 0
    ("pow", F32): 1.0, ("pow", F64): 1.0,            # 0 (one rounding from f64), 0.51
    ("sin", F32): 1.0, ("sin", F64): 1.0,            # 0.56, 0.51 (libm calls)
    ("cos", F32): 1.0, ("cos", F64): 1.0,            # 0.56, 0.51 (libm calls)
    ("log1p", F32): 2.0, ("log1p", F64): 2.0,        # 1.44, 1.40
    ("expm1", F32): 2.0, ("expm1", F64): 2.5,        # 1.13, 1.70
}


def _bits_sample(dtype: DType, n: int, rng) -> np.ndarray:
    int_type = np.uint32 if dtype == F32 else np.uint64
    return rng.integers(0, np.iinfo(int_type).max, n, dtype=int_type, endpoint=True
                        ).view(dtype.np)


def inputs(dtype: DType, rng, dense: float = 12.0) -> np.ndarray:
    """Bit patterns + dense [-dense, dense] + tiny magnitudes near 0 + specials."""
    parts = [_bits_sample(dtype, N, rng),
             rng.uniform(-dense, dense, N),
             rng.uniform(-1, 1, N) * 10.0 ** rng.uniform(-12, 0, N),
             np.array(FLOAT_SPECIALS + [np.nextafter(0, 1), -np.nextafter(0, 1)])]
    return np.concatenate([p.astype(dtype.np) for p in parts])


def _reference(op: str, dtype: DType, *xs):
    wide = np.float64 if dtype == F32 else np.longdouble
    with np.errstate(all="ignore"):         # NOTE: signaling-NaN bit patterns warn on cast
        ws = [x.astype(wide) for x in xs]
        if op == "sigmoid":
            e = np.exp(-np.abs(ws[0]))
            return np.where(ws[0] >= 0, 1 / (1 + e), e / (1 + e))
        if op == "erf":
            return np.array([math.erf(v) for v in xs[0].astype(np.float64)])
        fn = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "pow": np.power, "sin": np.sin,
              "cos": np.cos, "log1p": np.log1p, "expm1": np.expm1}[op]
        return fn(*ws)


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype: DType) -> np.ndarray:
    """|got - ref| in ulps of dtype at ref; 0 where both are the same inf; inf for NaN
    mismatches."""
    with np.errstate(all="ignore"):
        rounded = ref.astype(dtype.np)
        spacing = np.spacing(np.abs(rounded)).astype(ref.dtype)
        err = np.abs(got.astype(ref.dtype) - ref) / spacing
    err = np.where(got == rounded, 0.0, err)                 # includes equal infinities
    nan_got, nan_ref = np.isnan(got), np.isnan(ref)
    err = np.where(nan_got & nan_ref, 0.0, err)
    return np.where(nan_got != nan_ref, np.inf, err)


def _run(op: str, dtype: DType, xs):
    graph = kernel_graph([t(dtype, len(xs[0]))] * len(xs),
                         lambda gb, *vs: [emit1(gb, op, vs)])
    return compile_graph(graph)(list(xs))[0]


def _operands(op: str, dtype: DType, rng):
    x = inputs(dtype, rng)
    if op != "pow":
        return [x]
    dense = [rng.uniform(-30, 30, N), np.round(rng.uniform(-30, 30, N))]
    y = np.concatenate([d.astype(dtype.np) for d in dense] + [_bits_sample(dtype, N, rng)])
    y = np.resize(y, len(x))
    return [np.abs(x[: len(x) // 2]).tolist() + x[len(x) // 2:].tolist(), y]


CASES = [(op, d) for op, by_dtype in EXPANSIONS.items() for d in by_dtype]


def test_every_expansion_has_a_bound():
    assert set(CASES) == set(MAX_ULPS)


@pytest.mark.parametrize("op,dtype", CASES, ids=[f"{o}-{d.value}" for o, d in CASES])
def test_expansion_accuracy(op, dtype):
    rng = np.random.default_rng(7)
    xs = [np.asarray(x, dtype.np) for x in _operands(op, dtype, rng)]
    got = _run(op, dtype, xs)
    err = ulp_error(got, _reference(op, dtype, *xs), dtype)
    worst = int(np.argmax(err))
    print(f"\n{op:8s} {dtype.value}: max {err[worst]:.3f} ulp at x={xs[0][worst]!r}"
          + (f", y={xs[1][worst]!r}" if len(xs) > 1 else ""))
    assert err[worst] <= MAX_ULPS[(op, dtype)], (op, dtype, xs[0][worst], got[worst])
