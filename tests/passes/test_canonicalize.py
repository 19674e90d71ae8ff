"""canonicalize: IR text in -> IR text out for every rule, folding, CSE and DCE; meaning kept."""
import collections
import warnings

import pytest
from pass_helpers import assert_same_results, check_pass, graph

from kiln.passes.canonicalize import RULES, canonicalize, dce

X4 = "graph @f(%x: f32[4]) {\n  return %x\n}\n"
X23 = "graph @f(%x: f32[2,3]) {\n  return %x\n}\n"

# (case name, IR in, IR out, rules fired)
CASES = [
    ("mul_one_right", """
        graph @f(%x: f32[4]) {
          %1: f32[4] = full {value=1.0, shape=[4], dtype=f32}
          %2: f32[4] = mul %x, %1
          return %2
        }
        """, X4, {"mul_one": 1, "dce": 1}),
    ("mul_one_left", """
        graph @f(%x: f32[4]) {
          %1: f32[4] = full {value=1.0, shape=[4], dtype=f32}
          %2: f32[4] = mul %1, %x
          return %2
        }
        """, X4, {"mul_one": 1, "dce": 1}),
    ("add_zero_both_sides", """
        graph @f(%x: f32[4]) {
          %1: f32[4] = full {value=0.0, shape=[4], dtype=f32}
          %2: f32[4] = add %x, %1
          %3: f32[4] = full {value=0.0, shape=[4], dtype=f32}
          %4: f32[4] = add %3, %2
          return %4
        }
        """, X4, {"add_zero": 2, "cse": 1, "dce": 1}),
    ("sub_zero", """
        graph @f(%x: f32[4]) {
          %1: f32[4] = full {value=0.0, shape=[4], dtype=f32}
          %2: f32[4] = sub %x, %1
          return %2
        }
        """, X4, {"sub_zero": 1, "dce": 1}),
    ("div_one", """
        graph @f(%x: f32[4]) {
          %1: f32[4] = full {value=1.0, shape=[4], dtype=f32}
          %2: f32[4] = div %x, %1
          return %2
        }
        """, X4, {"div_one": 1, "dce": 1}),
    ("stop_gradient_is_the_identity_after_autograd", """
        graph @f(%x: f32[4]) {
          %1: f32[4] = stop_gradient %x
          %2: f32[4] = exp %1
          return %2
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[4] = exp %x
          return %0
        }
        """, {"stop_gradient_identity": 1}),
    ("copy_is_the_identity_after_functionalize", """
        graph @f(%x: f32[4]) {
          %1: f32[4] = copy %x
          %2: f32[4] = exp %1
          return %2
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[4] = exp %x
          return %0
        }
        """, {"copy_identity": 1}),
    ("neg_neg_chain", """
        graph @f(%x: f32[4]) {
          %1: f32[4] = neg %x
          %2: f32[4] = neg %1
          %3: f32[4] = neg %2
          return %3
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[4] = neg %x
          return %0
        }
        """, {"neg_neg": 1, "cse": 1}),
    ("cast_same", """
        graph @f(%x: f32[4]) {
          %1: f32[4] = cast %x {dtype=f32}
          return %1
        }
        """, X4, {"cast_same": 1}),
    ("reshape_same", """
        graph @f(%x: f32[2,3]) {
          %1: f32[2,3] = reshape %x {shape=[2,3]}
          return %1
        }
        """, X23, {"reshape_same": 1}),
    ("reshape_reshape", """
        graph @f(%x: f32[2,3]) {
          %1: f32[6] = reshape %x {shape=[6]}
          %2: f32[3,2] = reshape %1 {shape=[3,2]}
          %3: f32[1,6] = reshape %2 {shape=[1,6]}
          return %3
        }
        """, """
        graph @f(%x: f32[2,3]) {
          %0: f32[1,6] = reshape %x {shape=[1,6]}
          return %0
        }
        """, {"reshape_reshape": 2, "dce": 2}),
    ("permute_identity", """
        graph @f(%x: f32[2,3]) {
          %1: f32[2,3] = permute %x {perm=[0,1]}
          return %1
        }
        """, X23, {"permute_identity": 1}),
    ("permute_permute", """
        graph @f(%x: f32[2,3,5]) {
          %1: f32[3,5,2] = permute %x {perm=[1,2,0]}
          %2: f32[3,2,5] = permute %1 {perm=[0,2,1]}
          return %2
        }
        """, """
        graph @f(%x: f32[2,3,5]) {
          %0: f32[3,2,5] = permute %x {perm=[1,0,2]}
          return %0
        }
        """, {"permute_permute": 1, "dce": 1}),
    ("expand_same", """
        graph @f(%x: f32[2,3]) {
          %1: f32[2,3] = expand %x {shape=[2,3]}
          return %1
        }
        """, X23, {"expand_same": 1}),
    ("expand_expand", """
        graph @f(%x: f32[2,3]) {
          %1: f32[1,2,3] = expand %x {shape=[1,2,3]}
          %2: f32[4,2,3] = expand %1 {shape=[4,2,3]}
          return %2
        }
        """, """
        graph @f(%x: f32[2,3]) {
          %0: f32[4,2,3] = expand %x {shape=[4,2,3]}
          return %0
        }
        """, {"expand_expand": 1, "dce": 1}),
    ("expand_of_full", """
        graph @f(%x: f32[2,3]) {
          %1: f32[] = full {value=0.5, shape=[], dtype=f32}
          %2: f32[2,3] = expand %1 {shape=[2,3]}
          %3: f32[2,3] = add %x, %2
          return %3
        }
        """, """
        graph @f(%x: f32[2,3]) {
          %0: f32[2,3] = full {value=0.5, shape=[2,3], dtype=f32}
          %1: f32[2,3] = add %x, %0
          return %1
        }
        """, {"movement_of_full": 1, "dce": 1}),
    ("permute_reshape_slice_of_full", """
        graph @f(%x: f32[2,3]) {
          %1: i64[3,2] = full {value=2, shape=[3,2], dtype=i64}
          %2: i64[2,3] = permute %1 {perm=[1,0]}
          %3: i64[2,1] = slice %1 {starts=[1,0], stops=[3,2], steps=[1,2]}
          %4: i64[6] = reshape %1 {shape=[6]}
          return %2, %3, %4
        }
        """, """
        graph @f(%x: f32[2,3]) {
          %0: i64[2,3] = full {value=2, shape=[2,3], dtype=i64}
          %1: i64[2,1] = full {value=2, shape=[2,1], dtype=i64}
          %2: i64[6] = full {value=2, shape=[6], dtype=i64}
          return %0, %1, %2
        }
        """, {"movement_of_full": 3, "dce": 1}),
    ("slice_whole", """
        graph @f(%x: f32[2,3]) {
          %1: f32[2,3] = slice %x {starts=[0,0], stops=[2,3], steps=[1,1]}
          return %1
        }
        """, X23, {"slice_whole": 1}),
    ("slice_whole_of_unit_axis_with_a_step", """
        graph @f(%x: f32[1,3]) {
          %1: f32[1,3] = slice %x {starts=[0,0], stops=[1,3], steps=[5,1]}
          return %1
        }
        """, "graph @f(%x: f32[1,3]) {\n  return %x\n}\n", {"slice_whole": 1}),
]


@pytest.mark.parametrize("name, before, after, fired", CASES, ids=[c[0] for c in CASES])
def test_rule(name, before, after, fired, rng):
    g, out = check_pass(canonicalize, before, after, fired)
    assert_same_results(g, out, rng)


def test_every_rule_has_a_case():
    tested = {rule for *_, fired in CASES for rule in fired}
    assert {rule.__name__ for rules in RULES.values() for rule in rules} <= tested


def test_rules_leave_near_misses_alone():
    text = """
        graph @f(%x: f32[2,3]) {
          %0: f32[2,3] = full {value=0.0, shape=[2,3], dtype=f32}
          %1: f32[2,3] = sub %0, %x
          %2: f32[2,3] = full {value=1.0, shape=[2,3], dtype=f32}
          %3: f32[2,3] = div %2, %x
          %4: f32[2,3] = full {value=2.0, shape=[2,3], dtype=f32}
          %5: f32[2,3] = mul %x, %4
          %6: f32[2,3] = add %x, %2
          %7: f32[2,2] = slice %x {starts=[0,1], stops=[2,3], steps=[1,1]}
          %8: f32[3,2] = reshape %x {shape=[3,2]}
          %9: f32[2,3] = permute %8 {perm=[1,0]}
          %10: f64[2,3] = cast %x {dtype=f64}
          %11: f32[2,3] = neg %x
          %12: f32[2,3] = exp %11
          return %1, %3, %5, %6, %7, %9, %10, %12
        }
        """
    check_pass(canonicalize, text, text, {})


def test_fold_elementwise_of_fills_is_a_fill_at_any_size():
    check_pass(canonicalize, """
        graph @f(%x: f32[4]) {
          %0: f32[1000,1000] = full {value=0.0, shape=[1000,1000], dtype=f32}
          %1: f32[1000,1000] = exp %0
          %2: f32[4] = full {value=0.0, shape=[4], dtype=f32}
          %3: f32[4] = neg %2
          return %1, %3
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[1000,1000] = full {value=1.0, shape=[1000,1000], dtype=f32}
          %1: f32[4] = full {value=-0.0, shape=[4], dtype=f32}
          return %0, %1
        }
        """, {"fold": 2, "dce": 2})


def test_fold_small_results_to_constants():
    check_pass(canonicalize, """
        graph @f(%x: f32[3]) {
          %0: f32[3] = constant {data=[1.0,2.0,3.0], shape=[3], dtype=f32}
          %1: f32[3] = mul %0, %0
          %2: f32[3] = add %1, %x
          %3: f32[] = sum %0 {axes=[0], keepdim=false}
          %4: f32[3] = full {value=1.5, shape=[3], dtype=f32}
          %5: bool[3] = gt %0, %4
          %6: f32[3,1] = reshape %0 {shape=[3,1]}
          %7: f32[1,3] = permute %6 {perm=[1,0]}
          %8: f32[3,3] = matmul %6, %7
          return %2, %3, %5, %8
        }
        """, """
        graph @f(%x: f32[3]) {
          %0: f32[3] = constant {data=[1.0,4.0,9.0], shape=[3], dtype=f32}
          %1: f32[3] = add %0, %x
          %2: f32[] = full {value=6.0, shape=[], dtype=f32}
          %3: bool[3] = constant {data=[false,true,true], shape=[3], dtype=bool}
          %4: f32[3,3] = constant {data=[[1.0,2.0,3.0],[2.0,4.0,6.0],[3.0,6.0,9.0]], \
shape=[3,3], dtype=f32}
          return %1, %2, %3, %4
        }
        """, {"fold": 6, "dce": 4})


def test_fold_uniform_results_to_fills_by_bit_pattern():
    check_pass(canonicalize, """
        graph @f(%x: f32[2]) {
          %0: f32[2] = constant {data=[1.0,2.0], shape=[2], dtype=f32}
          %1: f32[2] = constant {data=[2.0,1.0], shape=[2], dtype=f32}
          %2: f32[2] = add %0, %1
          %3: f32[2] = constant {data=[1.0,-1.0], shape=[2], dtype=f32}
          %4: f32[2] = full {value=0.0, shape=[2], dtype=f32}
          %5: f32[2] = mul %3, %4
          return %2, %5
        }
        """, """
        graph @f(%x: f32[2]) {
          %0: f32[2] = full {value=3.0, shape=[2], dtype=f32}
          %1: f32[2] = constant {data=[0.0,-0.0], shape=[2], dtype=f32}
          return %0, %1
        }
        """, {"fold": 2, "dce": 4})


def test_fold_keeps_infinities_and_nans_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_pass(canonicalize, """
            graph @f(%x: f32[2]) {
              %0: f32[2] = full {value=0.0, shape=[2], dtype=f32}
              %1: f32[2] = log %0
              %2: f32[2] = full {value=-1.0, shape=[2], dtype=f32}
              %3: f32[2] = sqrt %2
              %4: f32[2] = constant {data=[0.0,1.0], shape=[2], dtype=f32}
              %5: f32[2] = div %4, %0
              return %1, %3, %5
            }
            """, """
            graph @f(%x: f32[2]) {
              %0: f32[2] = full {value=-inf, shape=[2], dtype=f32}
              %1: f32[2] = full {value=nan, shape=[2], dtype=f32}
              %2: f32[2] = constant {data=[nan,inf], shape=[2], dtype=f32}
              return %0, %1, %2
            }
            """, {"fold": 3, "dce": 3})


def test_no_fold_of_large_results_large_work_random_or_sources():
    text = """
        graph @f(%x: f32[65]) {
          %0: f32[65] = arange {start=0, stop=65, step=1, dtype=f32}
          %1: f32[65] = exp %0
          %2: i64[] = full {value=7, shape=[], dtype=i64}
          %3: f32[2] = random_normal %2 {shape=[2], dtype=f32}
          %4: f32[65] = full {value=1.0, shape=[65], dtype=f32}
          %5: f32[65,1] = reshape %0 {shape=[65,1]}
          %6: f32[1,65] = reshape %0 {shape=[1,65]}
          %7: f32[65,65] = matmul %5, %6
          %8: f32[200,200] = full {value=1.0, shape=[200,200], dtype=f32}
          %9: f32[] = sum %8 {axes=[0,1], keepdim=false}
          return %1, %3, %4, %7, %9
        }
        """
    check_pass(canonicalize, text, text, {})


def test_cse_merges_equal_nodes_and_same_seed_random_draws():
    check_pass(canonicalize, """
        graph @f(%x: f32[4], %s: i64[], %t: i64[]) {
          %0: f32[4] = random_uniform %s {shape=[4], dtype=f32}
          %1: f32[4] = random_uniform %s {shape=[4], dtype=f32}
          %2: f32[4] = random_uniform %t {shape=[4], dtype=f32}
          %3: f32[4] = exp %x
          %4: f32[4] = exp %x
          %5: f32[4] = add %3, %4
          %6: f32[4] = add %1, %2
          %7: f32[4] = add %0, %6
          return %5, %7
        }
        """, """
        graph @f(%x: f32[4], %s: i64[], %t: i64[]) {
          %0: f32[4] = random_uniform %s {shape=[4], dtype=f32}
          %1: f32[4] = random_uniform %t {shape=[4], dtype=f32}
          %2: f32[4] = exp %x
          %3: f32[4] = add %2, %2
          %4: f32[4] = add %0, %1
          %5: f32[4] = add %0, %4
          return %3, %5
        }
        """, {"cse": 2})


def test_cse_keeps_zero_and_negative_zero_apart():
    text = """
        graph @f(%x: f32[4]) {
          %0: f32[4] = full {value=0.0, shape=[4], dtype=f32}
          %1: f32[4] = mul %x, %0
          %2: f32[4] = full {value=-0.0, shape=[4], dtype=f32}
          %3: f32[4] = mul %x, %2
          return %1, %3
        }
        """
    check_pass(canonicalize, text, text, {})


def test_dce_drops_unused_nodes_and_reuses_kept_ones():
    g, out = check_pass(dce, """
        graph @f(%x: f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = log %x
          %2: f32[4] = tanh %1
          return %0
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[4] = exp %x
          return %0
        }
        """, {"dce": 2})
    assert out.nodes[0] is g.nodes[0]
    assert canonicalize(g).nodes[0] is g.nodes[0]


def test_mixed_graph_keeps_its_meaning(rng):
    g = graph("""
        graph @f(%x: f64[4,3], %w: f64[3,5]) {
          %0: f64[4,3] = full {value=1.0, shape=[4,3], dtype=f64}
          %1: f64[4,3] = mul %x, %0
          %2: f64[15] = reshape %w {shape=[15]}
          %3: f64[3,5] = reshape %2 {shape=[3,5]}
          %4: f64[4,5] = matmul %1, %3
          %5: f64[5] = full {value=1.0, shape=[5], dtype=f64}
          %6: f64[5] = full {value=2.0, shape=[5], dtype=f64}
          %7: f64[5] = add %5, %6
          %8: f64[4,5] = expand %7 {shape=[4,5]}
          %9: f64[4,5] = add %4, %8
          %10: f64[4,5] = tanh %9
          %11: f64[4,5] = neg %10
          %12: f64[4,5] = neg %11
          %13: f64[4] = sum %12 {axes=[1], keepdim=false}
          %14: f64[3,4] = permute %x {perm=[1,0]}
          %15: f64[4,3] = permute %14 {perm=[1,0]}
          %16: f64[4,3] = exp %15
          return %13, %16
        }
        """)
    counts = collections.Counter()
    out = canonicalize(g, counts)
    assert [n.op for n in out.nodes] == ["matmul", "full", "add", "tanh", "sum", "exp"]
    assert out.nodes[1].attrs.value == 3.0 and out.nodes[1].attrs.shape == (4, 5)
    assert_same_results(g, out, rng)
