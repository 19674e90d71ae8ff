"""The registry is complete (every op: shape rule, reference, VJP or NOT_DIFFERENTIABLE, a
scalar body when elementwise, samples), and the interpreter agrees with each reference."""
from __future__ import annotations

import doctest

import numpy as np
import op_samples
import pytest
from op_samples import SAMPLED_OPS, all_cases, missing_ops, samples

from kiln.ir import NOT_DIFFERENTIABLE, all_ops
from kiln.ir import interpreter, parser, printer, registry, verifier
from kiln.ir.attrs import NORMALIZE
from kiln.ir.interpreter import interpret
from kiln.ir.registry import KINDS

OPS = all_ops()
SAMPLED = [op for op in OPS if op.kind != "collective"]   # NOTE: tests/distributed samples them
CASES = all_cases()


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_op_declaration_is_complete(op):
    assert op.kind in KINDS
    assert callable(op.infer) and callable(op.ref)
    assert callable(op.vjp) or op.vjp == NOT_DIFFERENTIABLE
    assert set(op.attrs.values()) <= set(NORMALIZE), f"{op.name}: unknown attribute kind"
    if op.kind == "elementwise":
        assert callable(op.scalar), f"elementwise op '{op.name}' has no scalar body"


def test_every_registered_op_has_samples():
    assert missing_ops() == [], "add these ops to tests/op_samples.py"
    assert set(SAMPLED_OPS) == {op.name for op in SAMPLED}, "op_samples names an unknown op"


def test_missing_samples_are_detected(monkeypatch):
    monkeypatch.delitem(op_samples._TABLE, "exp")
    assert missing_ops() == ["exp"]
    with pytest.raises(KeyError, match="no samples for op 'exp'"):
        samples("exp")


# NOTE: ops whose VJP is zero on purpose (not the derivative), so finite differences cannot
# check them; tests/ops/test_ops.py::test_stop_gradient_blocks_gradients_... does instead.
ZERO_COTANGENT_OPS = {"stop_gradient"}

@pytest.mark.parametrize("op", SAMPLED, ids=lambda op: op.name)
def test_samples_fit_the_op(op):
    cases = samples(op.name)
    assert len(cases) >= 2, f"{op.name}: at least two samples (dtypes, shapes)"
    assert len({c.id for c in cases}) == len(cases), f"{op.name}: duplicate case ids"
    for case in cases:
        if op.arity >= 0:
            assert len(case.inputs) == op.arity, case.name
        for i in case.differentiable_inputs:
            assert case.inputs[i].dtype.kind == "f", case.name
        case.graph()   # NOTE: the shape rule accepts the sample's types and attrs
    if op.differentiable and op.name not in ZERO_COTANGENT_OPS:
        assert any(c.differentiable_inputs for c in cases), f"{op.name}: no gradient samples"
    else:
        assert not any(c.differentiable_inputs for c in cases)


def test_float_ops_are_sampled_in_float64_and_float32():
    for op in SAMPLED:
        dtypes = {a.dtype.name for c in samples(op.name) for a in c.inputs}
        if "float64" in dtypes or "float32" in dtypes:
            assert {"float64", "float32"} <= dtypes, f"{op.name} sampled only in {dtypes}"


def test_samples_are_deterministic():
    a, b = samples("matmul"), samples("matmul")
    for x, y in zip(a, b):
        for u, v in zip(x.inputs, y.inputs):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_interpreter_matches_reference(case):
    """The reference already gives the declared dtype and shape (the interpreter's cast is
    not hiding a wrong dtype), and the interpreter returns exactly the reference's values."""
    g = case.graph()
    node = g.nodes[0]
    with np.errstate(all="ignore"):
        raw = registry.get_op(case.op).ref(list(case.inputs), node.attrs)
        got = interpret(g, list(case.inputs))
    raw = raw if isinstance(raw, tuple) else (raw,)
    assert len(raw) == len(node.outputs) == len(got)
    for r, out, v in zip(raw, got, node.outputs):
        r = np.asarray(r)
        assert (r.dtype, r.shape) == (v.type.dtype.np, v.type.shape)
        assert (out.dtype, out.shape) == (r.dtype, r.shape)
        np.testing.assert_array_equal(out, r)


@pytest.mark.parametrize("module", [parser, verifier, printer, interpreter, op_samples])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 or module is printer
    assert result.failed == 0
