"""canonicalize: one IR-in -> IR-out case per rule, folding, CSE, DCE, and semantics kept."""
import collections

import numpy as np
import pytest
from pass_helpers import assert_same_results, constant, finish, full, ir, start

from kiln.ir.registry import P, apply
from kiln.passes.canonicalize import RULES, canonicalize, dce

F4 = "graph @f(%x: f32[4]) {\n  return %x\n}\n"


def _x4():
    return start("f", x="f32[4]")


def _x23():
    return start("f", x="f32[2,3]")


def mul_one_right():
    b, (x,) = _x4()
    return finish(b, P.mul(x, full(x, 1.0)))


def mul_one_left():
    b, (x,) = _x4()
    return finish(b, P.mul(full(x, 1.0), x))


def add_zero_both_sides():
    b, (x,) = _x4()
    return finish(b, P.add(full(x, 0.0), P.add(x, full(x, 0.0))))


def sub_zero():
    b, (x,) = _x4()
    return finish(b, P.sub(x, full(x, 0.0)))


def div_one():
    b, (x,) = _x4()
    return finish(b, P.div(x, full(x, 1.0)))


def neg_neg_chain():
    b, (x,) = _x4()
    return finish(b, P.neg(P.neg(P.neg(x))))


def cast_same():
    b, (x,) = _x4()
    return finish(b, P.cast(x, dtype="f32"))


def reshape_same():
    b, (x,) = _x23()
    return finish(b, P.reshape(x, shape=(2, 3)))


def reshape_reshape():
    b, (x,) = _x23()
    return finish(b, P.reshape(P.reshape(P.reshape(x, shape=(6,)), shape=(3, 2)), shape=(1, 6)))


def permute_identity():
    b, (x,) = _x23()
    return finish(b, P.permute(x, perm=(0, 1)))


def permute_permute():
    b, (x,) = start("f", x="f32[2,3,5]")
    return finish(b, P.permute(P.permute(x, perm=(1, 2, 0)), perm=(0, 2, 1)))


def expand_same():
    b, (x,) = _x23()
    return finish(b, P.expand(x, shape=(2, 3)))


def expand_expand():
    b, (x,) = _x23()
    return finish(b, P.expand(P.expand(x, shape=(1, 2, 3)), shape=(4, 2, 3)))


def expand_of_full():
    b, (x,) = _x23()
    return finish(b, P.add(x, P.expand(full(x, 0.5, shape=()), shape=(2, 3))))


def permute_and_slice_of_full():
    b, (x,) = _x23()
    f = full(x, 2, shape=(3, 2), dtype="i64")
    return finish(b, P.permute(f, perm=(1, 0)),
                  P.slice(f, starts=(1, 0), stops=(3, 2), steps=(1, 2)))


def slice_whole():
    b, (x,) = _x23()
    return finish(b, P.slice(x, starts=(0, 0), stops=(2, 3), steps=(1, 1)))


CASES = [
    (mul_one_right, F4, {"mul_one": 1, "dce": 1}),
    (mul_one_left, F4, {"mul_one": 1, "dce": 1}),
    (add_zero_both_sides, F4, {"add_zero": 2, "cse": 1, "dce": 1}),
    (sub_zero, F4, {"sub_zero": 1, "dce": 1}),
    (div_one, F4, {"div_one": 1, "dce": 1}),
    (neg_neg_chain, """
        graph @f(%x: f32[4]) {
          %0: f32[4] = neg %x
          return %0
        }
        """, {"neg_neg": 1, "cse": 1}),
    (cast_same, F4, {"cast_same": 1}),
    (reshape_same, "graph @f(%x: f32[2,3]) {\n  return %x\n}\n", {"reshape_same": 1}),
    (reshape_reshape, """
        graph @f(%x: f32[2,3]) {
          %0: f32[1,6] = reshape %x {shape=[1,6]}
          return %0
        }
        """, {"reshape_reshape": 2, "dce": 2}),
    (permute_identity, "graph @f(%x: f32[2,3]) {\n  return %x\n}\n", {"permute_identity": 1}),
    (permute_permute, """
        graph @f(%x: f32[2,3,5]) {
          %0: f32[3,2,5] = permute %x {perm=[1,0,2]}
          return %0
        }
        """, {"permute_permute": 1, "dce": 1}),
    (expand_same, "graph @f(%x: f32[2,3]) {\n  return %x\n}\n", {"expand_same": 1}),
    (expand_expand, """
        graph @f(%x: f32[2,3]) {
          %0: f32[4,2,3] = expand %x {shape=[4,2,3]}
          return %0
        }
        """, {"expand_expand": 1, "dce": 1}),
    (expand_of_full, """
        graph @f(%x: f32[2,3]) {
          %0: f32[2,3] = full {value=0.5, shape=[2,3], dtype=f32}
          %1: f32[2,3] = add %x, %0
          return %1
        }
        """, {"movement_of_full": 1, "dce": 1}),
    (permute_and_slice_of_full, """
        graph @f(%x: f32[2,3]) {
          %0: i64[2,3] = full {value=2, shape=[2,3], dtype=i64}
          %1: i64[2,1] = full {value=2, shape=[2,1], dtype=i64}
          return %0, %1
        }
        """, {"movement_of_full": 2, "dce": 1}),
    (slice_whole, "graph @f(%x: f32[2,3]) {\n  return %x\n}\n", {"slice_whole": 1}),
]


@pytest.mark.parametrize("build, want, fired", CASES, ids=[c[0].__name__ for c in CASES])
def test_rule(build, want, fired, rng):
    g = build()
    counts = collections.Counter()
    out = canonicalize(g, counts)
    assert str(out) == ir(want)
    assert dict(counts) == fired
    assert_same_results(g, out, rng)


def test_every_rule_has_a_case():
    tested = {name for _, _, fired in CASES for name in fired}
    assert {rule.__name__ for rules in RULES.values() for rule in rules} <= tested


def test_rules_leave_near_misses_alone():
    b, (x,) = _x4()
    g = finish(b, P.sub(full(x, 0.0), x), P.div(full(x, 1.0), x), P.mul(x, full(x, 2.0)),
               P.add(x, full(x, 3.0)))
    b2, (y,) = _x23()
    g2 = finish(b2, P.slice(y, starts=(0, 1), stops=(2, 3), steps=(1, 1)),
                P.permute(P.reshape(y, shape=(3, 2)), perm=(1, 0)), P.cast(y, dtype="f64"))
    for graph in (g, g2):
        counts = collections.Counter()
        assert str(canonicalize(graph, counts)) == str(graph)
        assert not counts


def test_fold_elementwise_of_fills_is_a_fill_at_any_size():
    b, (x,) = _x4()
    big = full(x, 0.0, shape=(1000, 1000))
    g = finish(b, P.exp(big), P.neg(full(x, 0.0)))
    counts = collections.Counter()
    assert str(canonicalize(g, counts)) == ir("""
        graph @f(%x: f32[4]) {
          %0: f32[1000,1000] = full {value=1.0, shape=[1000,1000], dtype=f32}
          %1: f32[4] = full {value=-0.0, shape=[4], dtype=f32}
          return %0, %1
        }
        """)
    assert counts == {"fold": 2, "dce": 2}


def test_fold_small_results_to_constants():
    b, (x,) = start("f", x="f32[3]")
    c = constant(x, [1.0, 2.0, 3.0])
    g = finish(b, P.add(P.mul(c, c), x), P.sum(c, axes=(0,), keepdim=False),
               P.gt(c, full(x, 1.5)))
    counts = collections.Counter()
    assert str(canonicalize(g, counts)) == ir("""
        graph @f(%x: f32[3]) {
          %0: f32[3] = constant {data=[1.0,4.0,9.0], shape=[3], dtype=f32}
          %1: f32[3] = add %0, %x
          %2: f32[] = full {value=6.0, shape=[], dtype=f32}
          %3: bool[3] = constant {data=[false,true,true], shape=[3], dtype=bool}
          return %1, %2, %3
        }
        """)
    assert counts == {"fold": 3, "dce": 2}


def test_no_fold_of_large_results_or_random_or_inputs():
    b, (x,) = start("f", x="f32[65]")
    c = apply("arange", [], {"start": 0, "stop": 65, "step": 1, "dtype": "f32"}, like=x)
    seed = full(x, 7, shape=(), dtype="i64")
    noise = P.random_normal(seed, shape=(2,), dtype="f32")
    big = constant(x, np.arange(65.0))
    g = finish(b, P.exp(c), noise, P.add(big, full(x, 1.0)), P.add(x, full(x, 2.0)))
    assert str(canonicalize(g)) == str(g)


def test_cse_merges_equal_nodes_and_same_seed_random_draws():
    b, (x, s, t) = start("f", x="f32[4]", s="i64[]", t="i64[]")
    u1 = P.random_uniform(s, shape=(4,), dtype="f32")
    u2 = P.random_uniform(s, shape=(4,), dtype="f32")
    u3 = P.random_uniform(t, shape=(4,), dtype="f32")
    g = finish(b, P.add(P.exp(x), P.exp(x)), P.add(u1, P.add(u2, u3)))
    counts = collections.Counter()
    assert str(canonicalize(g, counts)) == ir("""
        graph @f(%x: f32[4], %s: i64[], %t: i64[]) {
          %0: f32[4] = random_uniform %s {shape=[4], dtype=f32}
          %1: f32[4] = random_uniform %t {shape=[4], dtype=f32}
          %2: f32[4] = exp %x
          %3: f32[4] = add %2, %2
          %4: f32[4] = add %0, %1
          %5: f32[4] = add %0, %4
          return %3, %5
        }
        """)
    assert counts == {"cse": 2}


def test_cse_keeps_zero_and_negative_zero_apart():
    b, (x,) = _x4()
    g = finish(b, P.mul(x, full(x, 0.0)), P.mul(x, full(x, -0.0)))
    assert canonicalize(g).count("full") == 2


def test_dce_drops_unused_nodes_and_keeps_unchanged_nodes():
    b, (x,) = _x4()
    used = P.exp(x)
    P.tanh(P.log(x))
    g = finish(b, used)
    counts = collections.Counter()
    out = dce(g, counts)
    assert out.nodes == [used.value.producer]
    assert counts == {"dce": 2}
    assert canonicalize(g).nodes[0] is used.value.producer


def test_mixed_graph_keeps_its_meaning(rng):
    b, (x, w) = start("f", x="f64[4,3]", w="f64[3,5]")
    h = P.matmul(P.mul(x, full(x, 1.0)), P.reshape(P.reshape(w, shape=(15,)), shape=(3, 5)))
    bias = P.expand(P.add(full(x, 1.0, shape=(5,)), full(x, 2.0, shape=(5,))), shape=(4, 5))
    y = P.sum(P.neg(P.neg(P.tanh(P.add(h, bias)))), axes=(1,), keepdim=False)
    g = finish(b, y, P.exp(P.permute(P.permute(x, perm=(1, 0)), perm=(1, 0))))
    out = canonicalize(g)
    assert out.count("reshape") == 0 and out.count("neg") == 0 and out.count("permute") == 0
    assert_same_results(g, out, rng)
