"""Kernel rendering: broadcasting, loop nests (unit axes dropped, contiguous neighbours
merged), multiple outputs, constants, the compile cache and the body rules' errors."""
from __future__ import annotations

import re

import numpy as np
import pytest

from kiln.codegen.cpu import CpuRenderer, loop_nest
from kiln.ir.dtypes import DType
from kiln.ir.errors import VerifyError
from kiln.ir.interpreter import interpret
from kiln.ir.types import Loc
from kiln.frontend.compile import compile_graph
from kiln.passes.schedule import build_schedule

from codegen_helpers import assert_matches, emit1, kernel_graph, sample, t

F32, F64, I32, I64, BOOL = (DType.float32, DType.float64, DType.int32, DType.int64,
                            DType.bool)


def _kernel(graph):
    """The schedule kernel of a graph holding one kernel node."""
    (kernel,) = build_schedule(graph).kernels
    return kernel


def _check_against_interpreter(graph, seed=0):
    rng = np.random.default_rng(seed)
    inputs = [sample(v.type.dtype, v.type.shape, rng) for v in graph.inputs]
    got = compile_graph(graph)(inputs)
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
    (got,) = compile_graph(graph)([a, b, c])
    np.testing.assert_array_equal(got, a + b * c)
    _check_against_interpreter(graph)


def test_broadcast_loop_nest_keeps_both_dims():
    kernel = _kernel(_broadcast_graph())
    nest = loop_nest(kernel)
    # strides per access: loads a [8], b [4,1], c [], then the store [4,8]
    assert [(d.extent, d.strides) for d in nest.parallel] == [(4, (0, 1, 0, 8)),
                                                               (8, (1, 0, 0, 1))]
    assert nest.reduce == () and nest.outer == 4 and nest.numel == 32
    head = CpuRenderer().render(kernel).split("\n")[1]
    assert [m for m in re.findall(r"memref<(\w+)>", head)] == ["8xf32", "4xf32", "1xf32",
                                                                 "32xf32"]


@pytest.mark.parametrize("in_shape,space,dims,strides", [
    ((8192, 1024), (8192, 1024), (8388608,), (1,)),
    ((3, 4), (2, 3, 4), (2, 12), (0, 1)),
    ((2, 1, 4), (2, 3, 4), (2, 3, 4), (4, 0, 1)),
    ((1, 5, 1), (1, 5, 1), (5,), (1,)),
    ((), (), (1,), (0,)),
])
def test_collapsed_iteration_space(in_shape, space, dims, strides):
    """`loop_nest`: unit axes dropped, neighbours merged where every access is contiguous
    across them; `strides` is the input's element stride along each loop."""
    def build(gb, x):
        return [emit1(gb, "neg", [emit1(gb, "expand", [x], {"shape": space})])]
    kernel = _kernel(kernel_graph([t(F32, *in_shape)], build))
    nest = loop_nest(kernel)
    assert tuple(d.extent for d in nest.parallel) == dims and nest.reduce == ()
    assert tuple(d.strides[0] for d in nest.parallel) == strides
    assert nest.outer == dims[0]
    art = CpuRenderer().compile(kernel)
    assert (art.outer, art.numel, art.nest) == (dims[0], int(np.prod(dims)), nest)


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
    full, expanded, sq = compile_graph(graph)([x])
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
    text = CpuRenderer().render(_kernel(kernel_graph([t(BOOL, 2, 3), t(F32, 2, 3)],
                                                     build, name="my.kernel")))
    assert "func.func @kiln_my_kernel(" in text
    assert "memref<6xi8> {llvm.noalias}" in text
    assert "scf.for %p0 = %lo to %hi step %c1" in text
    assert "arith.select" in text


def test_unused_input_is_not_loaded():
    graph = kernel_graph([t(F32, 4), t(F32, 4)], lambda gb, x, y: [emit1(gb, "exp", [y])])
    text = CpuRenderer().render(_kernel(graph))
    assert "%in0[" not in text and "%in1[" in text


def test_identical_bodies_compile_once():
    renderer = CpuRenderer()
    graph_a = kernel_graph([t(F32, 9)], lambda gb, x: [emit1(gb, "tanh", [x])], name="a")
    graph_b = kernel_graph([t(F32, 9)], lambda gb, x: [
        gb.emit("tanh", [x], {}, loc=Loc("model.py", 3))[0]], name="b")
    graph_c = kernel_graph([t(F64, 9)], lambda gb, x: [emit1(gb, "tanh", [x])], name="c")
    ka = renderer.compile(_kernel(graph_a))
    kb = renderer.compile(_kernel(graph_b))
    kc = renderer.compile(_kernel(graph_c))
    assert renderer.stats == {"compiled": 2, "hits": 1}
    assert ka.address == kb.address != kc.address
    assert (ka.name, kb.name) == ("a", "b")


def test_reduction_in_body_compiles():
    """A sum inside a kernel body is no longer an error: it is a reduction axis."""
    graph = kernel_graph([t(F32, 4, 6)], lambda gb, x: [
        emit1(gb, "sum", [emit1(gb, "exp", [x])], {"axes": (1,), "keepdim": False})])
    kernel = _kernel(graph)
    assert kernel.space == (4, 6) and kernel.reduce == (1,)
    assert kernel.stores[0].strides == (1, 0)
    _check_against_interpreter(graph)


@pytest.mark.parametrize("op,attrs,arity", [("argmax", {"axis": 1, "keepdim": True}, 1),
                                            ("matmul", {}, 2)])
def test_unsupported_op_in_body_is_named(op, attrs, arity):
    kind = "reduce" if op == "argmax" else "matmul"
    with pytest.raises(VerifyError, match=rf"kernel k0: '{op}' \({kind}\) cannot be part of "
                                          "a kernel body"):
        kernel_graph([t(F32, 4, 4)] * arity, lambda gb, *xs: [emit1(gb, op, xs, attrs)])


def test_non_broadcastable_input_is_a_verify_error():
    with pytest.raises(VerifyError, match=r"value f32\[3\] does not broadcast to the "
                                          r"iteration space \[4, 8\]"):
        kernel_graph([t(F32, 3)], lambda gb, x: [
            emit1(gb, "full", [], {"value": 1.0, "shape": (4, 8), "dtype": F32})])


def test_outputs_of_different_shapes_are_rejected():
    with pytest.raises(VerifyError, match=r"output f32\[4\] is neither the iteration "
                                          r"space \[2, 4\]"):
        kernel_graph([t(F32, 4), t(F32, 2, 4)], lambda gb, x, y: [y, x])
    with pytest.raises(VerifyError, match=r"value f32\[2,4\] does not broadcast"):
        kernel_graph([t(F32, 4), t(F32, 2, 4)], lambda gb, x, y: [x, y])


def test_reductions_over_different_axes_are_rejected():
    with pytest.raises(VerifyError, match="reductions over different spaces or axes"):
        kernel_graph([t(F32, 4, 5)], lambda gb, x: [
            emit1(gb, "sum", [x], {"axes": (1,), "keepdim": True}),
            emit1(gb, "max", [x], {"axes": (0,), "keepdim": True})])


def test_reading_a_flat_reduction_is_rejected():
    with pytest.raises(VerifyError, match="'neg' reads the result of a reduction with "
                                          "keepdim=false"):
        kernel_graph([t(F32, 4, 5)], lambda gb, x: [emit1(gb, "neg", [
            emit1(gb, "sum", [x], {"axes": (1,), "keepdim": False})])])


def test_empty_kernel_runs_without_compiling():
    graph = kernel_graph([t(F32, 0, 3)], lambda gb, x: [emit1(gb, "exp", [x])])
    exe = compile_graph(graph)
    (out,) = exe([np.zeros((0, 3), np.float32)])
    assert out.shape == (0, 3) and out.dtype == np.float32 and exe.kernels == []
