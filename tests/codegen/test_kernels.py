"""Kernel lowering: broadcasting, collapsed iteration spaces, multiple outputs, constants,
the compile cache and error messages."""
from __future__ import annotations

import numpy as np
import pytest

from kiln.codegen import cpu_kernel
from kiln.codegen.lower_kernel import lower_kernel_to_mlir, plan_kernel
from kiln.ir.dtypes import DType
from kiln.ir.errors import NotSupportedError, ShapeError
from kiln.ir.interpreter import interpret
from kiln.ir.types import Loc
from kiln.runtime.executable import build_executable

from codegen_helpers import assert_matches, emit1, kernel_graph, sample, t

F32, F64, I32, I64, BOOL = (DType.float32, DType.float64, DType.int32, DType.int64,
                            DType.bool)


def _kernel_node(graph):
    (node,) = [n for n in graph.nodes if n.op == "kernel"]
    return node


def _check_against_interpreter(graph, seed=0):
    rng = np.random.default_rng(seed)
    inputs = [sample(v.type.dtype, v.type.shape, rng) for v in graph.inputs]
    got = build_executable(graph)(inputs)
    with np.errstate(all="ignore"):
        want = interpret(graph, inputs)
    for g, w in zip(got, want):
        assert_matches(g, w, rtol=1e-6 if w.dtype.kind == "f" else 0)
    return got


def _broadcast_graph():
    def build(gb, a, b, c):
        a, b, c = (emit1(gb, "expand", [v], {"shape": (4, 8)}) for v in (a, b, c))
        return [emit1(gb, "add", [a, emit1(gb, "mul", [b, c])])]
    return kernel_graph([t(F32, 8), t(F32, 4, 1), t(F32)], build)


def test_broadcast_inputs_into_4x8():
    graph = _broadcast_graph()
    a = np.arange(8, dtype=np.float32)
    b = np.arange(4, dtype=np.float32).reshape(4, 1) * 10
    c = np.array(3, np.float32)
    (got,) = build_executable(graph)([a, b, c])
    np.testing.assert_array_equal(got, a + b * c)
    _check_against_interpreter(graph)


def test_broadcast_plan_keeps_both_dims():
    plan = plan_kernel(_kernel_node(_broadcast_graph()))
    assert plan.dims == (4, 8)
    assert [op.present for op in plan.inputs] == [(False, True), (True, False),
                                                   (False, False)]
    assert [op.shape for op in plan.inputs] == [(8,), (4,), (1,)]


@pytest.mark.parametrize("in_shape,space,dims,present", [
    ((8192, 1024), (8192, 1024), (8388608,), (True,)),
    ((3, 4), (2, 3, 4), (2, 12), (False, True)),
    ((2, 1, 4), (2, 3, 4), (2, 3, 4), (True, False, True)),
    ((1, 5, 1), (1, 5, 1), (5,), (True,)),
    ((), (), (1,), (False,)),
])
def test_collapsed_iteration_space(in_shape, space, dims, present):
    def build(gb, x):
        return [emit1(gb, "neg", [emit1(gb, "expand", [x], {"shape": space})])]
    plan = plan_kernel(_kernel_node(kernel_graph([t(F32, *in_shape)], build)))
    assert plan.dims == dims
    assert plan.inputs[0].present == present
    assert plan.outer == dims[0]


@pytest.mark.parametrize("in_shape,space", [((3, 4), (2, 3, 4)), ((2, 1, 4), (2, 3, 4)),
                                            ((1, 5, 1), (1, 5, 1)), ((), ())])
def test_collapsed_kernels_run(in_shape, space):
    def build(gb, x, y):
        x = emit1(gb, "expand", [x], {"shape": space})
        return [emit1(gb, "sub", [x, y])]
    _check_against_interpreter(kernel_graph([t(I64, *in_shape), t(I64, *space)], build))


def test_multiple_outputs_of_different_dtypes():
    def build(gb, x, y):
        s = emit1(gb, "add", [x, y])
        return [s, emit1(gb, "gt", [s, x]), emit1(gb, "cast", [s], {"dtype": I32}), y]
    graph = kernel_graph([t(F64, 5, 7), t(F64, 5, 7)], build)
    got = _check_against_interpreter(graph)
    assert [a.dtype for a in got] == [np.float64, np.bool_, np.int32, np.float64]


def test_full_and_expand_as_outputs():
    def build(gb, x):
        k = emit1(gb, "full", [], {"value": 2, "shape": (3, 4), "dtype": I32})
        return [k, emit1(gb, "expand", [x], {"shape": (3, 4)}), emit1(gb, "mul", [k, k])]
    graph = kernel_graph([t(I32, 4)], build)
    x = np.array([1, -2, 3, -4], np.int32)
    full, expanded, sq = build_executable(graph)([x])
    np.testing.assert_array_equal(full, np.full((3, 4), 2, np.int32))
    np.testing.assert_array_equal(expanded, np.broadcast_to(x, (3, 4)))
    np.testing.assert_array_equal(sq, np.full((3, 4), 4, np.int32))


def test_bool_full_and_where():
    def build(gb, c, x):
        yes = emit1(gb, "full", [], {"value": True, "shape": (6,), "dtype": BOOL})
        both = emit1(gb, "eq", [c, yes])
        return [emit1(gb, "where", [both, x, emit1(gb, "neg", [x])])]
    _check_against_interpreter(kernel_graph([t(BOOL, 6), t(F32, 6)], build))


def test_mlir_text_shape():
    def build(gb, c, x):
        return [emit1(gb, "where", [c, x, x])]
    text = lower_kernel_to_mlir(_kernel_node(kernel_graph([t(BOOL, 2, 3), t(F32, 2, 3)],
                                                          build, name="my.kernel")))
    assert "func.func @kiln_my_kernel(" in text
    assert "memref<6xi8> {llvm.noalias}" in text
    assert "scf.for %i0 = %lo to %hi step %c1" in text
    assert "arith.select" in text


def test_unused_input_is_not_loaded():
    graph = kernel_graph([t(F32, 4), t(F32, 4)], lambda gb, x, y: [emit1(gb, "exp", [y])])
    text = lower_kernel_to_mlir(_kernel_node(graph))
    assert "%in0[" not in text and "%in1[" in text


def test_identical_bodies_compile_once():
    cpu_kernel.clear_cache()
    graph_a = kernel_graph([t(F32, 9)], lambda gb, x: [emit1(gb, "tanh", [x])], name="a")
    graph_b = kernel_graph([t(F32, 9)], lambda gb, x: [
        gb.emit("tanh", [x], {}, loc=Loc("model.py", 3))[0]], name="b")
    graph_c = kernel_graph([t(F64, 9)], lambda gb, x: [emit1(gb, "tanh", [x])], name="c")
    before = dict(cpu_kernel.STATS)
    ka = cpu_kernel.compile_kernel(_kernel_node(graph_a))
    kb = cpu_kernel.compile_kernel(_kernel_node(graph_b))
    kc = cpu_kernel.compile_kernel(_kernel_node(graph_c))
    assert cpu_kernel.STATS["compiled"] - before["compiled"] == 2
    assert cpu_kernel.STATS["hits"] - before["hits"] == 1
    assert ka.address == kb.address != kc.address
    assert (ka.name, kb.name) == ("a", "b")


def test_unsupported_op_in_body_is_named():
    graph = kernel_graph([t(F32, 4, 4)], lambda gb, x: [
        emit1(gb, "sum", [x], {"axes": (1,), "keepdim": False})])
    with pytest.raises(NotSupportedError, match="op 'sum' inside CPU kernel k0"):
        lower_kernel_to_mlir(_kernel_node(graph))


def test_non_broadcastable_input_is_a_shape_error():
    graph = kernel_graph([t(F32, 3)], lambda gb, x: [
        emit1(gb, "full", [], {"value": 1.0, "shape": (4, 8), "dtype": F32})])
    with pytest.raises(ShapeError, match=r"input shape \[3\] does not broadcast to the "
                                         r"iteration space \[4, 8\]"):
        plan_kernel(_kernel_node(graph))


def test_outputs_of_different_shapes_are_rejected():
    graph = kernel_graph([t(F32, 4), t(F32, 2, 4)], lambda gb, x, y: [x, y])
    with pytest.raises(ShapeError, match="outputs have different shapes"):
        plan_kernel(_kernel_node(graph))


def test_empty_kernel_runs_without_compiling():
    graph = kernel_graph([t(F32, 0, 3)], lambda gb, x: [emit1(gb, "exp", [x])])
    exe = build_executable(graph)
    (out,) = exe([np.zeros((0, 3), np.float32)])
    assert out.shape == (0, 3) and out.dtype == np.float32 and exe.kernels == []
