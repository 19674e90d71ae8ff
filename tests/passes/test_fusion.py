"""fuse_elementwise: exact IR for the shapes of fusion that matter, the kernel contract the
code generator relies on, and equal results on random graphs."""
import collections

import numpy as np
import pytest
from pass_helpers import assert_same_results, check_pass, finish, full, graph, start

from kiln.frontend.compile import compile_graph
from kiln.ir.builder import Sym
from kiln.ir.interpreter import interpret
from kiln.ir.ops.kernel import FUSIBLE_REDUCTIONS, kernel_space
from kiln.ir.registry import P, get_op
from kiln.ir.verifier import verify
from kiln.passes.canonicalize import canonicalize
from kiln.passes.fusion import fuse_elementwise


def _broadcasts(src, dst) -> bool:
    if len(src) > len(dst):
        return False
    return all(s in (1, d) for s, d in zip(reversed(src), reversed(dst)))


def check_kernels(g):
    """The rules codegen relies on (ir/ops/kernel.py's docstring), for every kernel in `g`."""
    names = []
    for node in g.nodes:
        if node.op != "kernel":
            assert get_op(node.op).kind != "elementwise", f"{node.op} left outside a kernel"
            continue
        body = node.attrs.body
        names.append(node.attrs.name)
        space, axes = kernel_space(node.attrs.name, body)
        row = tuple(1 if k in axes else d for k, d in enumerate(space))
        for v in body.outputs:
            p = v.producer
            flat = p is not None and p.op in FUSIBLE_REDUCTIONS and not p.attrs.keepdim
            assert flat or v.shape in (space, row)
        assert [v.type for v in body.inputs] == [v.type for v in node.inputs]
        assert len(set(node.inputs)) == len(node.inputs), "operands must not repeat"
        read = {v for n in body.nodes for v in n.inputs}
        assert all(v in read for v in body.inputs), "every body input is used"
        assert any(get_op(n.op).kind in ("elementwise", "reduce") for n in body.nodes)
        for n in body.nodes:
            assert get_op(n.op).kind == "elementwise" or n.op in ("full", "expand",
                                                                   *FUSIBLE_REDUCTIONS)
        assert all(_broadcasts(v.shape, space) for v in body.inputs)
    assert names == [f"fused_{i}" for i in range(len(names))]


def fuse(g, rng, **kw):
    counts = collections.Counter()
    out = verify(fuse_elementwise(g, counts))
    check_kernels(out)
    assert_same_results(g, out, rng, **kw)
    return out, counts


def check_fusion(before, after, rng, fired=None):
    """IR text in -> IR text out, plus the kernel contract and equal results."""
    g, out = check_pass(fuse_elementwise, before, after, fired)
    check_kernels(out)
    assert_same_results(g, out, rng)
    return out


def ops(text, rng):
    """The outer ops after fusing IR `text` (contract and results checked)."""
    out, _ = fuse(graph(text), rng)
    return [n.op for n in out.nodes]


def test_w1_becomes_one_kernel_with_one_operand_and_one_output(rng):
    # x * sigmoid(x) * 0.5 + tanh(x), as the frontend traces it (full + expand for 0.5)
    w1 = """
        graph @w1(%x: f32[1024]) {
          %0: f32[] = full {value=0.5, shape=[], dtype=f32}
          %1: f32[1024] = expand %0 {shape=[1024]}
          %2: f32[1024] = sigmoid %x
          %3: f32[1024] = mul %x, %2
          %4: f32[1024] = mul %3, %1
          %5: f32[1024] = tanh %x
          %6: f32[1024] = add %4, %5
          return %6
        }
        """
    check_fusion(w1, """
        graph @w1(%x: f32[1024]) {
          %0: f32[1024] = kernel %x {name="fused_0"} {
            body @fused_0(%1: f32[1024]) {
              %2: f32[1024] = sigmoid %1
              %3: f32[1024] = mul %1, %2
              %4: f32[] = full {value=0.5, shape=[], dtype=f32}
              %5: f32[1024] = expand %4 {shape=[1024]}
              %6: f32[1024] = mul %3, %5
              %7: f32[1024] = tanh %1
              %8: f32[1024] = add %6, %7
              return %8
            }
          }
          return %0
        }
        """, rng, {"kernel": 1, "fused_op": 5, "copied_full": 1, "copied_expand": 1})
    # after canonicalize the expand of the fill is itself a fill: still one kernel, one node
    assert len(fuse_elementwise(canonicalize(graph(w1))).nodes) == 1


def test_diamond_is_one_kernel(rng):
    check_fusion("""
        graph @f(%x: f32[4,8]) {
          %0: f32[4,8] = exp %x
          %1: f32[4,8] = sigmoid %0
          %2: f32[4,8] = tanh %0
          %3: f32[4,8] = add %1, %2
          return %3
        }
        """, """
        graph @f(%x: f32[4,8]) {
          %0: f32[4,8] = kernel %x {name="fused_0"} {
            body @fused_0(%1: f32[4,8]) {
              %2: f32[4,8] = exp %1
              %3: f32[4,8] = sigmoid %2
              %4: f32[4,8] = tanh %2
              %5: f32[4,8] = add %3, %4
              return %5
            }
          }
          return %0
        }
        """, rng, {"kernel": 1, "fused_op": 4})


def test_keepdim_false_reduction_ends_its_kernel(rng):
    # NOTE: the [4] result no longer lines up with the [4,8] space: its readers start anew
    check_fusion("""
        graph @f(%x: f32[4,8]) {
          %0: f32[4,8] = exp %x
          %1: f32[4,8] = tanh %0
          %2: f32[4] = sum %1 {axes=[1], keepdim=false}
          %3: f32[4] = neg %2
          %4: f32[4] = sigmoid %3
          return %4
        }
        """, """
        graph @f(%x: f32[4,8]) {
          %0: f32[4] = kernel %x {name="fused_0"} {
            body @fused_0(%1: f32[4,8]) {
              %2: f32[4,8] = exp %1
              %3: f32[4,8] = tanh %2
              %4: f32[4] = sum %3 {axes=[1], keepdim=false}
              return %4
            }
          }
          %5: f32[4] = kernel %0 {name="fused_1"} {
            body @fused_1(%6: f32[4]) {
              %7: f32[4] = neg %6
              %8: f32[4] = sigmoid %7
              return %8
            }
          }
          return %5
        }
        """, rng, {"kernel": 2, "fused_op": 5})


def test_value_used_inside_and_outside_is_a_kernel_output(rng):
    check_fusion("""
        graph @f(%x: f32[4,8]) {
          %0: f32[4,8] = exp %x
          %1: f32[4,8] = mul %0, %0
          %2: f32[8] = sum %0 {axes=[0], keepdim=false}
          return %1, %2, %0
        }
        """, """
        graph @f(%x: f32[4,8]) {
          %0: f32[4,8], %1: f32[4,8], %2: f32[8] = kernel %x {name="fused_0"} {
            body @fused_0(%3: f32[4,8]) {
              %4: f32[4,8] = exp %3
              %5: f32[4,8] = mul %4, %4
              %6: f32[8] = sum %4 {axes=[0], keepdim=false}
              return %4, %5, %6
            }
          }
          return %1, %2, %0
        }
        """, rng)


def test_column_sum_joins_the_kernel_of_its_producer(rng):
    check_fusion("""
        graph @f(%x: f32[4,8]) {
          %0: f32[4,8] = exp %x
          %1: f32[4,8] = mul %0, %0
          %2: f32[8] = sum %0 {axes=[0], keepdim=false}
          return %1, %2
        }
        """, """
        graph @f(%x: f32[4,8]) {
          %0: f32[4,8], %1: f32[8] = kernel %x {name="fused_0"} {
            body @fused_0(%2: f32[4,8]) {
              %3: f32[4,8] = exp %2
              %4: f32[4,8] = mul %3, %3
              %5: f32[8] = sum %3 {axes=[0], keepdim=false}
              return %4, %5
            }
          }
          return %0, %1
        }
        """, rng, {"kernel": 1, "fused_op": 3})


def test_broadcast_operand_keeps_its_small_shape(rng):
    check_fusion("""
        graph @f(%x: f32[8], %y: f32[4,8]) {
          %0: f32[4,8] = expand %x {shape=[4,8]}
          %1: f32[4,8] = add %0, %y
          return %1
        }
        """, """
        graph @f(%x: f32[8], %y: f32[4,8]) {
          %0: f32[4,8] = kernel %x, %y {name="fused_0"} {
            body @fused_0(%1: f32[8], %2: f32[4,8]) {
              %3: f32[4,8] = expand %1 {shape=[4,8]}
              %4: f32[4,8] = add %3, %2
              return %4
            }
          }
          return %0
        }
        """, rng, {"kernel": 1, "fused_op": 1, "copied_expand": 1})


def test_reduction_and_its_broadcast_reader_are_one_row_kernel(rng):
    # a -> sum -> expand -> b, and a -> b: one kernel, the sum's loop runs first in each row
    check_fusion("""
        graph @f(%x: f32[4,8]) {
          %a: f32[4,8] = exp %x
          %s: f32[4,1] = sum %a {axes=[1], keepdim=true}
          %e: f32[4,8] = expand %s {shape=[4,8]}
          %b: f32[4,8] = mul %e, %a
          return %b
        }
        """, """
        graph @f(%x: f32[4,8]) {
          %0: f32[4,8] = kernel %x {name="fused_0"} {
            body @fused_0(%1: f32[4,8]) {
              %2: f32[4,8] = exp %1
              %3: f32[4,1] = sum %2 {axes=[1], keepdim=true}
              %4: f32[4,8] = expand %3 {shape=[4,8]}
              %5: f32[4,8] = mul %4, %2
              return %5
            }
          }
          return %0
        }
        """, rng, {"kernel": 1, "fused_op": 3, "copied_expand": 1})


def test_no_cycle_through_a_reduction_over_other_axes(rng):
    # a -> sum over axis 0 -> expand -> b over axis-1 sums: the two reductions differ, and a
    # kernel holding a and b would read its own output through the outside sum
    out, _ = fuse(graph("""
        graph @f(%x: f32[4,8]) {
          %a: f32[4,8] = exp %x
          %s: f32[1,8] = sum %a {axes=[0], keepdim=true}
          %e: f32[4,8] = expand %s {shape=[4,8]}
          %b: f32[4,8] = mul %e, %a
          %t: f32[4,1] = sum %b {axes=[1], keepdim=true}
          return %t
        }
        """), rng)
    assert [n.op for n in out.nodes] == ["kernel", "kernel"]


def test_no_cycle_when_the_outside_path_leaves_mid_group(rng):
    # d = matmul(a, w) sits between a's group and e = c + d
    assert ops("""
        graph @f(%x: f32[4,4], %w: f32[4,4]) {
          %a: f32[4,4] = exp %x
          %t: f32[4,4] = tanh %x
          %c: f32[4,4] = mul %a, %t
          %d: f32[4,4] = matmul %a, %w
          %e: f32[4,4] = add %c, %d
          return %e
        }
        """, rng) == ["kernel", "matmul", "kernel"]


def test_different_iteration_shapes_are_different_kernels(rng):
    out, _ = fuse(graph("""
        graph @f(%x: f32[8], %y: f32[4,8]) {
          %0: f32[8] = exp %x
          %1: f32[4,8] = expand %0 {shape=[4,8]}
          %2: f32[4,8] = mul %1, %y
          return %2
        }
        """), rng)
    assert [len(n.inputs) for n in out.nodes] == [1, 2]
    assert out.nodes[1].inputs[0] is out.nodes[0].outputs[0]


def test_movement_and_fills_alone_are_not_kernels(rng):
    text = """
        graph @f(%x: f32[8], %w: f32[8,3]) {
          %0: f32[4,8] = expand %x {shape=[4,8]}
          %1: f32[4,3] = matmul %0, %w
          %2: f32[2] = full {value=1.0, shape=[2], dtype=f32}
          return %1, %2
        }
        """
    check_fusion(text, text, rng, {})


def test_fill_used_inside_and_outside_is_copied_into_the_body(rng):
    out = check_fusion("""
        graph @f(%x: f32[3,3], %w: f32[3,3]) {
          %0: f32[3,3] = full {value=1.0, shape=[3,3], dtype=f32}
          %1: f32[3,3] = matmul %0, %w
          %2: f32[3,3] = add %x, %0
          return %1, %2
        }
        """, """
        graph @f(%x: f32[3,3], %w: f32[3,3]) {
          %0: f32[3,3] = full {value=1.0, shape=[3,3], dtype=f32}
          %1: f32[3,3] = matmul %0, %w
          %2: f32[3,3] = kernel %x {name="fused_0"} {
            body @fused_0(%3: f32[3,3]) {
              %4: f32[3,3] = full {value=1.0, shape=[3,3], dtype=f32}
              %5: f32[3,3] = add %3, %4
              return %5
            }
          }
          return %1, %2
        }
        """, rng, {"kernel": 1, "fused_op": 1, "copied_full": 1})
    assert out.nodes[0].outputs[0] is not out.nodes[2].attrs.body.nodes[0].outputs[0]


def test_dead_code_is_dropped_first(rng):
    check_fusion("""
        graph @f(%x: f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = tanh %x
          return %0
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[4] = kernel %x {name="fused_0"} {
            body @fused_0(%1: f32[4]) {
              %2: f32[4] = exp %1
              return %2
            }
          }
          return %0
        }
        """, rng, {"dce": 1, "kernel": 1, "fused_op": 1})


def test_kernels_are_named_in_order_and_unfusable_nodes_stay(rng):
    assert ops("""
        graph @f(%x: f32[6]) {
          %0: f32[6] = exp %x
          %1: f32[2,3] = reshape %0 {shape=[2,3]}
          %2: f32[2,3] = neg %1
          %3: f32[3,2] = permute %2 {perm=[1,0]}
          %4: f32[3,2] = sigmoid %3
          return %4
        }
        """, rng) == ["kernel", "reshape", "kernel", "permute", "kernel"]


def _random_graph(rng, size=16):
    """Elementwise ops, reductions, expands and fills over shapes [4,8], [4,1], [8], []."""
    b, (x, y, z) = start("r", x="f32[4,8]", y="f32[4,1]", z="f32[8]")
    pool = {(4, 8): [x], (4, 1): [y], (8,): [z], (): []}

    def pick(shape):
        # NOTE: mostly recent values, so chains get deep and paths reconverge
        values = pool[shape]
        return values[max(0, len(values) - 1 - rng.geometric(0.5) + 1)]
    for _ in range(size):
        kind = rng.integers(6)
        if kind == 0:
            v = [P.tanh, P.sigmoid, P.neg, P.abs][rng.integers(4)](pick((4, 8)))
        elif kind in (1, 2):
            shape = [(4, 8), (4, 1), (8,)][rng.integers(3)]
            v = [P.add, P.mul, P.sub, P.maximum][rng.integers(4)](pick(shape), pick(shape))
        elif kind == 3:
            src = [(4, 1), (8,)][rng.integers(2)]
            v = P.expand(pick(src), shape=(4, 8))
        elif kind == 4:
            v = P.sum(pick((4, 8)), axes=(1,), keepdim=True)
        else:
            v = P.mul(pick((4, 8)), P.expand(full(x, 0.25, shape=()), shape=(4, 8)))
        pool[tuple(v.shape)].append(v)
    g = b.graph
    read = {v for n in g.nodes for v in n.inputs}
    return finish(b, *[Sym(b, v) for n in g.nodes for v in n.outputs if v not in read])


@pytest.mark.parametrize("seed", range(60))
def test_random_graphs_keep_meaning_and_contract(seed):
    rng = np.random.default_rng(seed)
    g = _random_graph(rng)
    fuse(g, rng, rtol=1e-5)
    fused, _ = fuse(canonicalize(g), rng, rtol=1e-5)
    if seed % 4 == 0:     # NOTE: compiling is slower; a quarter of the graphs also run compiled
        inputs = [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]
        want = interpret(g, inputs)
        got = compile_graph(fused)(inputs)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5)


def test_a_keepdim_false_reduction_is_not_read_in_its_own_kernel_through_a_sibling(rng):
    # the add joins the tanh's kernel (it reads the tanh); the sum is in that kernel too, and
    # the add also reads the sum's [3] result: the add must stay out of it
    out, _ = fuse(graph("""
        graph @f(%x: f64[2,3]) {
          %0: f64[2,3] = tanh %x
          %1: f64[3] = sum %0 {axes=[0], keepdim=false}
          %2: f64[2,3] = expand %1 {shape=[2,3]}
          %3: f64[2,3] = add %0, %2
          return %3
        }
        """), rng)
    assert [n.op for n in out.nodes] == ["kernel", "kernel"]
