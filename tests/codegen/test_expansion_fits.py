"""The fitted f32 polynomials of codegen/math_expansions.py, and how the expansions compile:
truncation error before rounding (float64 arithmetic against NumPy float64), the exp shared
by sigmoid and tanh, and both ways of scaling by 2**n."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from kiln.codegen import math_expansions as mx
from kiln.codegen.cpu import default_cpu_renderer
from kiln.frontend.compile import compile_graph
from kiln.ir.dtypes import DType

from codegen_helpers import emit1, kernel_graph, t, w1_graph, w1_reference
from test_math_expansions import MAX_ULPS, _reference, inputs, ulp_error

F32 = DType.float32


def _poly(coeffs, x):
    return np.polynomial.polynomial.polyval(x, coeffs)


def test_exp_fit_is_below_a_tenth_ulp_on_the_reduced_range():
    r = np.linspace(-math.log(2) / 2, math.log(2) / 2, 200_001)
    rel = np.abs(_poly(mx.EXP_FIT_F32, r) / np.exp(r) - 1)
    assert rel.max() < 4e-9, rel.max()          # 0.03 ulp of f32 (2**-24 = 6e-8)


def test_tanh_fit_is_below_a_tenth_ulp_near_zero():
    x = np.linspace(1e-4, mx.TANH_SMALL, 200_001)
    approx = x + x ** 3 * _poly(mx.TANH_FIT_F32, x * x)
    rel = np.abs(approx / np.tanh(x) - 1)
    assert rel.max() < 2e-9, rel.max()


def _one_op(op: str, n: int = 64):
    return compile_graph(kernel_graph([t(F32, n)], lambda gb, x: [emit1(gb, op, [x])]))


def _roundevens(exe) -> int:
    return len(re.findall(r"call .*@llvm\.roundeven", exe.kernels[0].llvm_ir_optimized))


def test_sigmoid_and_tanh_in_one_kernel_share_their_exp():
    """W1 computes exp(-|x|) once per element: tanh squares it instead of exp(-2|x|)."""
    w1 = compile_graph(w1_graph(1 << 12))
    assert _roundevens(w1) == _roundevens(_one_op("sigmoid", 1 << 12)) > 0


@pytest.fixture
def scaling(monkeypatch):
    """Pick the 2**n scaling: set(fast). The renderer caches kernels by signature, not by how
    they expand, so its cache is emptied around the change."""
    renderer = default_cpu_renderer()

    def pick(fast: bool):
        if fast and not mx.fast_ldexp.__wrapped__():
            pytest.skip("this host has no vector ldexp instruction (x86 AVX-512)")
        renderer.clear()
        monkeypatch.setattr(mx, "fast_ldexp", lambda: fast)
    yield pick
    renderer.clear()


@pytest.mark.parametrize("fast", [False, True], ids=["two-multiplies", "ldexp"])
def test_both_scalings_are_accurate(scaling, fast):
    """The portable 2**n scaling and the one-instruction ldexp give the same accuracy."""
    scaling(fast)
    x = inputs(F32, np.random.default_rng(3))
    for op in ("exp", "sigmoid", "tanh"):
        exe = _one_op_on(op, x)
        assert ("llvm.ldexp" in exe.kernels[0].llvm_ir_optimized) == fast
        err = ulp_error(exe([x])[0], _reference(op, F32, x), F32)
        assert err.max() <= MAX_ULPS[(op, F32)], (op, float(err.max()))


def _one_op_on(op: str, x: np.ndarray):
    return compile_graph(kernel_graph([t(F32, len(x))], lambda gb, v: [emit1(gb, op, [v])]))


def test_w1_with_the_portable_scaling_matches_float64(scaling):
    scaling(False)
    x = np.random.default_rng(4).standard_normal(1 << 14).astype(np.float32) * 6
    got = compile_graph(w1_graph(len(x)))([x])[0]
    ref = w1_reference(x)
    assert np.max(np.abs(got - ref) / (np.abs(ref) + 1e-30)) <= 1e-6
