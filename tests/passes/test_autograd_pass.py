"""grad_graph: gradients equal central finite differences (float64, through the interpreter),
stay equal after canonicalize and fusion, and only the needed backward nodes are built."""
import numpy as np
import pytest
from pass_helpers import check_pass, graph, random_inputs

from kiln.ir.errors import KilnError
from kiln.ir.interpreter import interpret
from kiln.ir.verifier import verify
from kiln.passes.autograd import grad_graph
from kiln.passes.canonicalize import canonicalize
from kiln.passes.fusion import fuse_elementwise


def _numeric_grad(g, args, i, output, cot, eps=1e-6):
    """d/d args[i] of sum(cot * g(args)[output]), by central differences."""
    def f(a):
        return float(np.sum(cot * interpret(g, a)[output]))
    grad = np.zeros_like(args[i])
    for idx in np.ndindex(args[i].shape):
        plus = [a.copy() for a in args]
        minus = [a.copy() for a in args]
        plus[i][idx] += eps
        minus[i][idx] -= eps
        grad[idx] = (f(plus) - f(minus)) / (2 * eps)
    return grad


def check_grads(text, wrt, rng, output=0, positive=False):
    """grad_graph(IR text) matches finite differences, before and after canonicalize+fusion."""
    g = graph(text)
    gg = verify(grad_graph(g, wrt, output))
    args = random_inputs(g, rng, positive)
    y = g.outputs[output]
    cot = rng.standard_normal(y.shape) if y.shape else np.ones(())
    gargs = args + [cot] if y.shape else args
    assert len(gg.inputs) == len(gargs)
    got = interpret(gg, gargs)
    for want, have in zip(interpret(g, args), got):
        np.testing.assert_array_equal(have, want)
    for i, grad in zip(wrt, got[len(g.outputs):]):
        np.testing.assert_allclose(grad, _numeric_grad(g, args, i, output, cot),
                                   rtol=1e-6, atol=1e-7)
    simpler = verify(fuse_elementwise(canonicalize(gg)))
    for a, b in zip(interpret(simpler, gargs), got):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    return gg


def test_elementwise_chain_w1(rng):
    check_grads("""
        graph @w1(%x: f64[6]) {
          %0: f64[] = full {value=0.5, shape=[], dtype=f64}
          %1: f64[6] = expand %0 {shape=[6]}
          %2: f64[6] = sigmoid %x
          %3: f64[6] = mul %x, %2
          %4: f64[6] = mul %3, %1
          %5: f64[6] = tanh %x
          %6: f64[6] = add %4, %5
          %7: f64[] = sum %6 {axes=[0], keepdim=false}
          return %7
        }
        """, [0], rng)


def test_unary_and_binary_ops_with_a_cotangent_input(rng):
    gg = check_grads("""
        graph @f(%x: f64[2,3], %y: f64[2,3]) {
          %0: f64[2,3] = log %x
          %1: f64[2,3] = sqrt %y
          %2: f64[2,3] = div %0, %1
          %3: f64[2,3] = pow %x, %y
          %4: f64[2,3] = rsqrt %3
          %5: f64[2,3] = exp %4
          %6: f64[2,3] = sub %2, %5
          %7: f64[2,3] = erf %6
          %8: f64[2,3] = abs %7
          return %8
        }
        """, [0, 1], rng, positive=True)
    assert gg.inputs[-1].hint == "cotangent"


def test_where_relu_maximum_and_casts(rng):
    check_grads("""
        graph @f(%x: f64[8], %y: f64[8]) {
          %0: f64[8] = relu %x
          %1: f64[8] = maximum %0, %y
          %2: f64[8] = minimum %1, %x
          %3: bool[8] = gt %x, %y
          %4: f64[8] = where %3, %2, %y
          %5: i64[8] = cast %x {dtype=i64}
          %6: f64[8] = cast %5 {dtype=f64}
          %7: f64[8] = add %4, %6
          %8: f64[] = sum %7 {axes=[0], keepdim=false}
          return %8
        }
        """, [0, 1], rng)


def test_matmul(rng):
    check_grads("""
        graph @f(%x: f64[3,4], %w: f64[4,5]) {
          %0: f64[3,5] = matmul %x, %w
          %1: f64[3,5] = tanh %0
          %2: f64[] = sum %1 {axes=[0,1], keepdim=false}
          return %2
        }
        """, [0, 1], rng)


def test_batched_matmul(rng):
    check_grads("""
        graph @f(%x: f64[2,3,4], %w: f64[2,4,2]) {
          %0: f64[2,3,2] = matmul %x, %w
          return %0
        }
        """, [0, 1], rng)


def test_reductions(rng):
    check_grads("""
        graph @f(%x: f64[3,4]) {
          %0: f64[3] = max %x {axes=[1], keepdim=false}
          %1: f64[1,4] = mean %x {axes=[0], keepdim=true}
          %2: f64[4] = reshape %1 {shape=[4]}
          %3: f64[4] = min %x {axes=[0], keepdim=false}
          %4: f64[4] = mul %2, %3
          %5: f64[] = sum %4 {axes=[0], keepdim=false}
          %6: f64[] = sum %0 {axes=[0], keepdim=false}
          %7: f64[] = add %5, %6
          return %7
        }
        """, [0], rng)


def test_broadcasting_softmax(rng):
    check_grads("""
        graph @f(%x: f64[3,5], %b: f64[5]) {
          %0: f64[3,5] = expand %b {shape=[3,5]}
          %1: f64[3,5] = add %x, %0
          %2: f64[3,1] = max %1 {axes=[1], keepdim=true}
          %3: f64[3,5] = expand %2 {shape=[3,5]}
          %4: f64[3,5] = sub %1, %3
          %5: f64[3,5] = exp %4
          %6: f64[3,1] = sum %5 {axes=[1], keepdim=true}
          %7: f64[3,5] = expand %6 {shape=[3,5]}
          %8: f64[3,5] = div %5, %7
          return %8
        }
        """, [0, 1], rng)


def test_movement_ops(rng):
    check_grads("""
        graph @f(%x: f64[2,6], %y: f64[3,2]) {
          %0: f64[3,4] = reshape %x {shape=[3,4]}
          %1: f64[4,3] = permute %0 {perm=[1,0]}
          %2: f64[2,3] = slice %1 {starts=[1,0], stops=[4,3], steps=[2,1]}
          %3: f64[2,3] = permute %y {perm=[1,0]}
          %4: f64[4,3] = concat %2, %3 {axis=0}
          return %4
        }
        """, [0, 1], rng)


def test_only_wanted_gradients_are_built(rng):
    text = """
        graph @f(%x: f64[3,4], %w: f64[4,5]) {
          %0: f64[3,5] = matmul %x, %w
          %1: f64[] = sum %0 {axes=[0,1], keepdim=false}
          return %1
        }
        """
    assert check_grads(text, [0], rng).count("matmul") == 2
    assert check_grads(text, [1], rng).count("matmul") == 2
    assert check_grads(text, [0, 1], rng).count("matmul") == 3


def test_exact_ir_for_a_small_graph():
    check_pass(lambda g, fired: grad_graph(g, [0, 1]), """
        graph @f(%x: f32[3], %y: f32[3]) {
          %0: f32[3] = mul %x, %y
          %1: f32[3] = exp %0
          return %1
        }
        """, """
        graph @f_grad(%x: f32[3], %y: f32[3], %cotangent: f32[3]) {
          %0: f32[3] = mul %x, %y
          %1: f32[3] = exp %0
          %2: f32[3] = mul %cotangent, %1
          %3: f32[3] = mul %2, %y
          %4: f32[3] = mul %2, %x
          return %1, %3, %4
        }
        """)


def test_fan_out_accumulates_and_unused_input_gets_zeros():
    check_pass(lambda g, fired: grad_graph(g, [0, 1], output=1, seed=2.0), """
        graph @f(%x: f32[3], %y: f32[3]) {
          %0: f32[3] = tanh %x
          %1: f32[3] = add %0, %0
          return %0, %1
        }
        """, """
        graph @f_grad(%x: f32[3], %y: f32[3]) {
          %0: f32[3] = tanh %x
          %1: f32[3] = add %0, %0
          %2: f32[3] = full {value=2.0, shape=[3], dtype=f32}
          %3: f32[3] = add %2, %2
          %4: f32[3] = full {value=1.0, shape=[3], dtype=f32}
          %5: f32[3] = mul %0, %0
          %6: f32[3] = sub %4, %5
          %7: f32[3] = mul %3, %6
          %8: f32[3] = full {value=0, shape=[3], dtype=f32}
          return %0, %1, %7, %8
        }
        """)


def test_gradient_of_an_input_returned_as_output():
    g = grad_graph(graph("""
        graph @f(%x: f32[]) {
          return %x
        }
        """), [0])
    assert [n.op for n in g.nodes] == ["full"] and g.outputs[1] is g.nodes[0].outputs[0]


def test_errors_name_the_problem(rng):
    fused = fuse_elementwise(graph("""
        graph @f(%x: f32[3]) {
          %0: f32[3] = exp %x
          return %0
        }
        """))
    with pytest.raises(KilnError, match="'kernel' is not differentiable"):
        grad_graph(fused, [0])
    with pytest.raises(KilnError, match="only floating-point"):
        grad_graph(graph("""
            graph @f(%x: f32[3]) {
              %0: i64[3] = cast %x {dtype=i64}
              return %0
            }
            """), [0])
    with pytest.raises(KilnError, match="input 1 is i64"):
        grad_graph(graph("""
            graph @f(%x: f32[3], %n: i64[3]) {
              %0: f32[3] = exp %x
              return %0
            }
            """), [0, 1])
