"""One table over the op registry (tests/op_samples.py): eager vs reference, gradients vs
central finite differences in float64, and @kiln.jit vs eager. A new op is tested by being
declared and sampled."""
import warnings

import numpy as np
import pytest
from op_samples import all_cases

import kiln
from kiln.frontend.jit import KilnJitWarning
from kiln.ir import apply, get_op
from kiln.ir.interpreter import interpret

CASES = all_cases()


def _all_float64(case) -> bool:
    """Inputs and outputs in float64, so central differences resolve 1e-6."""
    outs = [v.type.dtype for v in case.graph().outputs]
    ins = [case.inputs[i].dtype for i in case.differentiable_inputs]
    return all(d == kiln.float64 for d in outs) and all(d == np.float64 for d in ins)


GRAD_CASES = [c for c in CASES if c.differentiable_inputs and _all_float64(c)]
IDENTITY_AFTER_AUTOGRAD = {"stop_gradient", "copy"}
# NOTE: samples that are valid IR but that codegen must refuse loudly (none today)
NOT_COMPILED: dict[str, str] = {}
FD_EPS = 1e-6


def _apply(case, tensors):
    return apply(case.op, tensors, dict(case.attrs), like=kiln.frontend.functional.SOURCE)


def _outputs(result):
    return list(result) if isinstance(result, tuple) else [result]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_eager_matches_reference(case):
    got = _outputs(_apply(case, [kiln.from_numpy(a) for a in case.inputs]))
    want = interpret(case.graph(), list(case.inputs))
    for g, w in zip(got, want):
        assert g.numpy().dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g.numpy(), w)


def _loss_reference(case, arrays, cotangents) -> float:
    outs = interpret(case.graph(), arrays)
    return float(sum(np.sum(o.astype(np.float64) * c) for o, c in zip(outs, cotangents)))


def _numeric_grad(case, arrays, i, cotangents) -> np.ndarray:
    x = arrays[i]
    grad = np.zeros(x.shape, np.float64)
    for idx in np.ndindex(x.shape):
        hi = [a.copy() for a in arrays]
        lo = [a.copy() for a in arrays]
        hi[i][idx] += FD_EPS
        lo[i][idx] -= FD_EPS
        grad[idx] = (_loss_reference(case, hi, cotangents)
                     - _loss_reference(case, lo, cotangents)) / (2 * FD_EPS)
    return grad


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.name)
def test_gradient_matches_finite_differences(case):
    """Eager autograd (registry VJPs) vs central differences, everything in float64."""
    arrays = list(case.inputs)
    tensors = [kiln.from_numpy(a) for a in arrays]
    for i in case.differentiable_inputs:
        tensors[i].requires_grad_()
    outs = _outputs(_apply(case, tensors))
    rng = np.random.default_rng(0)
    cots = [rng.standard_normal(o.shape) for o in outs]
    loss = sum((o * kiln.from_numpy(c)).sum() for o, c in zip(outs, cots))
    loss.backward()
    for i in case.differentiable_inputs:
        numeric = _numeric_grad(case, arrays, i, cots)
        analytic = tensors[i].grad.numpy()
        err = np.abs(analytic - numeric) / np.maximum(1.0, np.abs(numeric))
        assert analytic.shape == numeric.shape
        assert err.size == 0 or err.max() < 1e-6, f"input {i}: max scaled error {err.max():.3g}"


def _tolerance(dtype):
    if dtype == np.float32:
        return dict(rtol=2e-6, atol=1e-6)
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-14)
    return dict(rtol=0, atol=0)


def _jit_param(case):
    if case.name in NOT_COMPILED:
        return pytest.param(case, marks=pytest.mark.xfail(
            reason=NOT_COMPILED[case.name], raises=KilnJitWarning, strict=True))
    return case


@pytest.mark.parametrize("case", [_jit_param(c) for c in CASES], ids=lambda c: c.name)
def test_jit_matches_eager(case):
    tensors = [kiln.from_numpy(a) for a in case.inputs]

    def fn(*xs):
        return _apply(case, list(xs))
    jf = kiln.jit(fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        got = _outputs(jf(*tensors))
    want = _outputs(fn(*tensors))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g.numpy(), w.numpy(), **_tolerance(w.numpy().dtype))
    if get_op(case.op).kind == "elementwise":
        # NOTE: canonicalize removes identities (stop_gradient, and copy once values are
        # immutable) before fusion: no kernel left
        expected = 0 if case.op in IDENTITY_AFTER_AUTOGRAD else 1
        assert jf.graph_for(*tensors).count("kernel") == expected


def test_stop_gradient_blocks_gradients_eagerly_and_in_the_graph_pass():
    from kiln.ir.builder import GraphBuilder, Sym
    from kiln.ir.registry import P
    from kiln.ir.types import TensorType
    from kiln.passes.autograd import grad_graph
    x = kiln.tensor([1.0, 2.0, 3.0], dtype=kiln.float64, requires_grad=True)
    (x * apply("stop_gradient", [x])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 2.0, 3.0])      # not 2x
    b = GraphBuilder("f")
    s = Sym(b, b.add_input(TensorType(kiln.float64, (3,)), "x"))
    y = P.sum(P.mul(s, P.stop_gradient(s)), axes=(0,), keepdim=False)
    g = grad_graph(b.finish([y.value]), wrt=[0])
    _, grad = interpret(g, [np.array([1.0, 2.0, 3.0])])
    np.testing.assert_allclose(grad, [1.0, 2.0, 3.0])
