"""functionalize: IR text in -> IR text out for writes through views; meaning checked against a
reference that runs the graph with real NumPy aliasing (generated programs:
test_functionalize_properties.py)."""
import collections

import numpy as np
import pytest
from pass_helpers import check_pass, graph, random_inputs

from kiln.ir.errors import KilnError
from kiln.ir.graph import Graph
from kiln.ir.interpreter import interpret, run_node
from kiln.ir.registry import all_ops
from kiln.passes.autograd import grad_graph
from kiln.passes.functionalize import functionalize, output_aliases, writebacks
from kiln.frontend.compile import compile_graph

# --- the reference: the graph BEFORE the pass, run with PyTorch's aliasing --------------------


def _slice(a, at):
    # NOTE: the Ellipsis keeps a rank-0 result a view (a[()] would be a NumPy scalar)
    return a[tuple(slice(*s) for s in zip(at.starts, at.stops, at.steps)) + (Ellipsis,)]


# NOTE: each view op's result is a NumPy view of its operand, so a write into either is seen by
# both; `copy=False` makes NumPy raise rather than silently copy a reshape.
VIEWS = {
    "reshape": lambda a, at: np.reshape(a, at.shape, copy=False),
    "permute": lambda a, at: np.transpose(a, at.perm),
    "expand": lambda a, at: np.broadcast_to(a, at.shape),
    "slice": _slice,
    "stop_gradient": lambda a, at: a.view(),
    "diagonal": lambda a, at: np.lib.stride_tricks.as_strided(
        a, a.shape[:-2] + (min(a.shape[-2:]),), a.strides[:-2] + (a.strides[-2] + a.strides[-1],)),
}


def run_reference(g: Graph, args):
    """(outputs as arrays that may alias the inputs, final input arrays, indices of the inputs
    whose storage some `copy_` wrote)."""
    arrays = [np.array(a, copy=True) for a in args]
    env = dict(zip(g.inputs, arrays))
    root = {v: i for i, v in enumerate(g.inputs)}     # value -> input whose storage it is
    written = set()
    for node in g.nodes:
        ins = [env[v] for v in node.inputs]
        if node.op == "copy_":
            np.copyto(ins[0], ins[1])
            env[node.out] = ins[0]
            if node.inputs[0] in root:
                written.add(root[node.inputs[0]])
                root[node.out] = root[node.inputs[0]]
        elif node.op in VIEWS:
            env[node.out] = VIEWS[node.op](ins[0], node.attrs)
            if node.inputs[0] in root:
                root[node.out] = root[node.inputs[0]]
        else:   # NOTE: new C-contiguous storage, which a later write cannot reach through
            results = run_node(node, ins)
            env.update((v, np.array(a, copy=True, order="C"))
                       for v, a in zip(node.outputs, results))
    return [env[v] for v in g.outputs], arrays, written


def run_functional(g: Graph, args):
    """The pure graph by the interpreter, then its write-backs: (outputs, final inputs, indices
    of the inputs written back)."""
    arrays = [np.array(a, copy=True) for a in args]
    backs = writebacks(g)
    whole = Graph(g.name, g.inputs, g.nodes, list(g.outputs) + [v for _, v in backs])
    # NOTE: copied before any write-back: a reference result may be a NumPy view of an input
    results = [np.array(r, copy=True) for r in interpret(whole, arrays)]
    for (i, _), value in zip(backs, results[len(g.outputs):]):
        np.copyto(arrays[i], value)
    return results[:len(g.outputs)], arrays, {i for i, _ in backs}


def run_executable(g: Graph, args):
    arrays = [np.array(a, copy=True) for a in args]
    outs = compile_graph(g)(arrays)
    return [np.array(o, copy=True) for o in outs], arrays


def assert_all_close(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def assert_pure_with_trailing_writebacks(g: Graph):
    """The `copy_` nodes are the last ones, each writes a different graph input."""
    body = len(g.nodes) - len(writebacks(g))
    assert all(n.op != "copy_" for n in g.nodes[:body])
    dsts = [n.inputs[0] for n in g.nodes[body:]]
    assert all(d in g.inputs for d in dsts) and len(set(dsts)) == len(dsts)


def assert_aliases(before: Graph, outs, inputs):
    """Each output the reference left as a view of an input is exactly that input's view by
    `output_aliases` (same memory, same strides); every other output aliases no input."""
    for out, alias in zip(outs, output_aliases(before)):
        if alias is None:
            assert not any(np.shares_memory(out, a) for a in inputs)
            continue
        i, views = alias
        rebuilt = inputs[i]
        for op, attrs in views:
            rebuilt = VIEWS[op](rebuilt, attrs)
        assert rebuilt.shape == out.shape and rebuilt.strides == out.strides
        assert rebuilt.__array_interface__["data"] == out.__array_interface__["data"]


def check_meaning(before: Graph, after: Graph, seed: int, executable=True):
    """Same outputs and same final inputs as the reference; a write-back for exactly the
    inputs written; output_aliases right."""
    assert_pure_with_trailing_writebacks(after)
    args = random_inputs(before, np.random.default_rng(seed))
    want, want_ins, written = run_reference(before, args)
    got, got_ins, written_back = run_functional(after, args)
    assert written_back == written
    assert_all_close(got, [np.array(w, copy=True) for w in want])
    assert_all_close(got_ins, want_ins)
    assert_aliases(before, want, want_ins)
    if executable:
        got, got_ins = run_executable(after, args)
        assert_all_close(got, [np.array(w, copy=True) for w in want])
        assert_all_close(got_ins, want_ins)


def test_reference_knows_every_view_op():
    assert set(VIEWS) == {op.name for op in all_ops() if op.view is not None}


# --- IR text in, IR text out ---------------------------------------------------------------

# (case name, IR in, IR out, rules fired)
CASES = [
    ("write_into_input", """
        graph @f(%x: f32[4]) {
          %0: f32[4] = full {value=2.0, shape=[4], dtype=f32}
          %1: f32[4] = copy_ %x, %0
          %2: f32[4] = exp %x
          return %2
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[4] = full {value=2.0, shape=[4], dtype=f32}
          %1: f32[4] = exp %0
          %2: f32[4] = copy_ %x, %0
          return %1
        }
        """, {"copy_": 1, "writeback": 1}),
    ("write_through_a_strided_slice", """
        graph @f(%x: f32[3,4]) {
          %0: f32[2,2] = slice %x {starts=[1,0], stops=[3,4], steps=[1,2]}
          %1: f32[2,2] = neg %0
          %2: f32[2,2] = copy_ %0, %1
          return %x
        }
        """, """
        graph @f(%x: f32[3,4]) {
          %0: f32[2,2] = slice %x {starts=[1,0], stops=[3,4], steps=[1,2]}
          %1: f32[2,2] = neg %0
          %2: f32[3,4] = slice_update %x, %1 {starts=[1,0], stops=[3,4], steps=[1,2]}
          %3: f32[3,4] = copy_ %x, %2
          return %2
        }
        """, {"copy_": 1, "reread": 1, "writeback": 1}),
    ("write_through_slice_of_permute_of_reshape", """
        graph @f(%x: f32[2,6]) {
          %0: f32[3,4] = reshape %x {shape=[3,4]}
          %1: f32[4,3] = permute %0 {perm=[1,0]}
          %2: f32[2,3] = slice %1 {starts=[1,0], stops=[4,3], steps=[2,1]}
          %3: f32[2,3] = full {value=7.0, shape=[2,3], dtype=f32}
          %4: f32[2,3] = copy_ %2, %3
          %5: f32[2,6] = exp %x
          return %5
        }
        """, """
        graph @f(%x: f32[2,6]) {
          %0: f32[2,3] = full {value=7.0, shape=[2,3], dtype=f32}
          %1: f32[3,4] = reshape %x {shape=[3,4]}
          %2: f32[4,3] = permute %1 {perm=[1,0]}
          %3: f32[4,3] = slice_update %2, %0 {starts=[1,0], stops=[4,3], steps=[2,1]}
          %4: f32[3,4] = permute %3 {perm=[1,0]}
          %5: f32[2,6] = reshape %4 {shape=[2,6]}
          %6: f32[2,6] = exp %5
          %7: f32[2,6] = copy_ %x, %5
          return %6
        }
        """, {"copy_": 1, "reread": 1, "writeback": 1}),
    ("write_through_a_slice_of_a_rank_3_permute", """
        graph @f(%x: f32[2,3,4]) {
          %0: f32[3,4,2] = permute %x {perm=[1,2,0]}
          %1: f32[2,2,2] = slice %0 {starts=[0,1,0], stops=[3,3,2], steps=[2,1,1]}
          %2: f32[2,2,2] = exp %1
          %3: f32[2,2,2] = copy_ %1, %2
          return %x
        }
        """, """
        graph @f(%x: f32[2,3,4]) {
          %0: f32[3,4,2] = permute %x {perm=[1,2,0]}
          %1: f32[2,2,2] = slice %0 {starts=[0,1,0], stops=[3,3,2], steps=[2,1,1]}
          %2: f32[2,2,2] = exp %1
          %3: f32[3,4,2] = permute %x {perm=[1,2,0]}
          %4: f32[3,4,2] = slice_update %3, %2 {starts=[0,1,0], stops=[3,3,2], steps=[2,1,1]}
          %5: f32[2,3,4] = permute %4 {perm=[2,0,1]}
          %6: f32[2,3,4] = copy_ %x, %5
          return %5
        }
        """, {"copy_": 1, "reread": 1, "writeback": 1}),
    ("view_read_before_and_after_its_base_is_written", """
        graph @f(%x: f32[2,3]) {
          %0: f32[3,2] = permute %x {perm=[1,0]}
          %1: f32[3,2] = neg %0
          %2: f32[2,3] = full {value=1.0, shape=[2,3], dtype=f32}
          %3: f32[2,3] = copy_ %x, %2
          %4: f32[3,2] = neg %0
          return %1, %4
        }
        """, """
        graph @f(%x: f32[2,3]) {
          %0: f32[3,2] = permute %x {perm=[1,0]}
          %1: f32[3,2] = neg %0
          %2: f32[2,3] = full {value=1.0, shape=[2,3], dtype=f32}
          %3: f32[3,2] = permute %2 {perm=[1,0]}
          %4: f32[3,2] = neg %3
          %5: f32[2,3] = copy_ %x, %2
          return %1, %4
        }
        """, {"copy_": 1, "reread_view": 1, "writeback": 1}),
    ("base_read_before_and_after_a_view_is_written", """
        graph @f(%x: f32[4]) {
          %0: f32[2] = slice %x {starts=[0], stops=[4], steps=[2]}
          %1: f32[4] = exp %x
          %2: f32[2] = sigmoid %0
          %3: f32[2] = copy_ %0, %2
          %4: f32[4] = neg %x
          return %1, %4
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[2] = slice %x {starts=[0], stops=[4], steps=[2]}
          %1: f32[4] = exp %x
          %2: f32[2] = sigmoid %0
          %3: f32[4] = slice_update %x, %2 {starts=[0], stops=[4], steps=[2]}
          %4: f32[4] = neg %3
          %5: f32[4] = copy_ %x, %3
          return %1, %4
        }
        """, {"copy_": 1, "reread": 1, "writeback": 1}),
    ("two_views_of_one_storage_one_written_the_other_read", """
        graph @f(%x: f32[2,3]) {
          %0: f32[6] = reshape %x {shape=[6]}
          %1: f32[3,2] = permute %x {perm=[1,0]}
          %2: f32[3] = slice %0 {starts=[2], stops=[5], steps=[1]}
          %3: f32[3] = full {value=0.0, shape=[3], dtype=f32}
          %4: f32[3] = copy_ %2, %3
          %5: f32[3,2] = abs %1
          return %5
        }
        """, """
        graph @f(%x: f32[2,3]) {
          %0: f32[3] = full {value=0.0, shape=[3], dtype=f32}
          %1: f32[6] = reshape %x {shape=[6]}
          %2: f32[6] = slice_update %1, %0 {starts=[2], stops=[5], steps=[1]}
          %3: f32[2,3] = reshape %2 {shape=[2,3]}
          %4: f32[3,2] = permute %3 {perm=[1,0]}
          %5: f32[3,2] = abs %4
          %6: f32[2,3] = copy_ %x, %3
          return %5
        }
        """, {"copy_": 1, "reread_view": 1, "writeback": 1}),
    ("writes_into_an_intermediate_and_its_views_need_no_writeback", """
        graph @f(%x: f32[2,3]) {
          %0: f32[2,3] = exp %x
          %1: f32[3,2] = permute %0 {perm=[1,0]}
          %2: f32[1,2] = slice %1 {starts=[2,0], stops=[3,2], steps=[1,1]}
          %3: f32[1,2] = full {value=3.0, shape=[1,2], dtype=f32}
          %4: f32[1,2] = copy_ %2, %3
          %5: f32[2,3] = neg %0
          %6: f32[2,3] = tanh %x
          %7: f32[2,3] = copy_ %0, %6
          return %5, %1
        }
        """, """
        graph @f(%x: f32[2,3]) {
          %0: f32[2,3] = exp %x
          %1: f32[1,2] = full {value=3.0, shape=[1,2], dtype=f32}
          %2: f32[3,2] = permute %0 {perm=[1,0]}
          %3: f32[3,2] = slice_update %2, %1 {starts=[2,0], stops=[3,2], steps=[1,1]}
          %4: f32[2,3] = permute %3 {perm=[1,0]}
          %5: f32[2,3] = neg %4
          %6: f32[2,3] = tanh %x
          %7: f32[3,2] = permute %6 {perm=[1,0]}
          return %5, %7
        }
        """, {"copy_": 2, "reread": 1, "reread_view": 1}),
    ("several_writes_into_one_input_one_writeback", """
        graph @f(%x: f32[4]) {
          %0: f32[4] = full {value=1.0, shape=[4], dtype=f32}
          %1: f32[4] = copy_ %x, %0
          %2: f32[2] = slice %x {starts=[2], stops=[4], steps=[1]}
          %3: f32[2] = full {value=2.0, shape=[2], dtype=f32}
          %4: f32[2] = copy_ %2, %3
          %5: f32[4] = add %x, %x
          %6: f32[4] = copy_ %x, %5
          return %x
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[4] = full {value=1.0, shape=[4], dtype=f32}
          %1: f32[2] = full {value=2.0, shape=[2], dtype=f32}
          %2: f32[4] = slice_update %0, %1 {starts=[2], stops=[4], steps=[1]}
          %3: f32[4] = add %2, %2
          %4: f32[4] = copy_ %x, %3
          return %3
        }
        """, {"copy_": 3, "reread": 1, "writeback": 1}),
    ("writes_into_two_inputs", """
        graph @f(%x: f32[4], %y: f32[2,2]) {
          %0: f32[4] = neg %x
          %1: f32[4] = copy_ %x, %0
          %2: f32[2,2] = permute %y {perm=[1,0]}
          %3: f32[2,2] = exp %y
          %4: f32[2,2] = copy_ %2, %3
          %5: f32[4] = reshape %y {shape=[4]}
          %6: f32[4] = mul %x, %5
          return %6
        }
        """, """
        graph @f(%x: f32[4], %y: f32[2,2]) {
          %0: f32[4] = neg %x
          %1: f32[2,2] = exp %y
          %2: f32[2,2] = permute %1 {perm=[1,0]}
          %3: f32[4] = reshape %2 {shape=[4]}
          %4: f32[4] = mul %0, %3
          %5: f32[4] = copy_ %x, %0
          %6: f32[2,2] = copy_ %y, %2
          return %4
        }
        """, {"copy_": 2, "reread": 1, "writeback": 2}),
    ("the_result_of_copy__is_read_and_written_later", """
        graph @f(%x: f32[2,2]) {
          %0: f32[2,2] = full {value=4.0, shape=[2,2], dtype=f32}
          %1: f32[2,2] = copy_ %x, %0
          %2: f32[2,2] = mul %1, %1
          %3: f32[1,2] = slice %1 {starts=[0,0], stops=[1,2], steps=[1,1]}
          %4: f32[1,2] = full {value=-1.0, shape=[1,2], dtype=f32}
          %5: f32[1,2] = copy_ %3, %4
          %6: f32[2,2] = exp %1
          return %2, %6
        }
        """, """
        graph @f(%x: f32[2,2]) {
          %0: f32[2,2] = full {value=4.0, shape=[2,2], dtype=f32}
          %1: f32[2,2] = mul %0, %0
          %2: f32[1,2] = full {value=-1.0, shape=[1,2], dtype=f32}
          %3: f32[2,2] = slice_update %0, %2 {starts=[0,0], stops=[1,2], steps=[1,1]}
          %4: f32[2,2] = exp %3
          %5: f32[2,2] = copy_ %x, %3
          return %1, %4
        }
        """, {"copy_": 2, "reread": 1, "writeback": 1}),
    ("outputs_that_are_views_of_a_written_input", """
        graph @f(%x: f32[2,3]) {
          %0: f32[3,2] = permute %x {perm=[1,0]}
          %1: f32[6] = reshape %x {shape=[6]}
          %2: f32[6] = relu %1
          %3: f32[6] = copy_ %1, %2
          return %0, %x
        }
        """, """
        graph @f(%x: f32[2,3]) {
          %0: f32[6] = reshape %x {shape=[6]}
          %1: f32[6] = relu %0
          %2: f32[2,3] = reshape %1 {shape=[2,3]}
          %3: f32[3,2] = permute %2 {perm=[1,0]}
          %4: f32[2,3] = copy_ %x, %2
          return %3, %2
        }
        """, {"copy_": 1, "reread_view": 1, "reread": 1, "writeback": 1}),
    ("stop_gradient_views_read_and_written", """
        graph @f(%x: f32[4]) {
          %0: f32[4] = stop_gradient %x
          %1: f32[2] = slice %0 {starts=[1], stops=[3], steps=[1]}
          %2: f32[2] = full {value=9.0, shape=[2], dtype=f32}
          %3: f32[2] = copy_ %1, %2
          %4: f32[4] = stop_gradient %x
          %5: f32[4] = exp %4
          %6: f32[4] = neg %4
          %7: f32[4] = copy_ %4, %6
          return %5, %0
        }
        """, """
        graph @f(%x: f32[4]) {
          %0: f32[2] = full {value=9.0, shape=[2], dtype=f32}
          %1: f32[4] = slice_update %x, %0 {starts=[1], stops=[3], steps=[1]}
          %2: f32[4] = stop_gradient %1
          %3: f32[4] = exp %2
          %4: f32[4] = neg %2
          %5: f32[4] = stop_gradient %4
          %6: f32[4] = copy_ %x, %4
          return %3, %5
        }
        """, {"copy_": 2, "reread": 1, "reread_view": 1, "writeback": 1}),
    ("a_write_that_reads_an_overlapping_view_of_itself", """
        graph @f(%x: f32[3,3]) {
          %0: f32[3,3] = permute %x {perm=[1,0]}
          %1: f32[3,3] = copy_ %x, %0
          return %x
        }
        """, """
        graph @f(%x: f32[3,3]) {
          %0: f32[3,3] = permute %x {perm=[1,0]}
          %1: f32[3,3] = copy_ %x, %0
          return %0
        }
        """, {"copy_": 1, "writeback": 1}),
]


# NOTE: cases whose functional graph returns (a view of) an input that is also written back:
# the executable must copy such values before its write-backs.
WRITEBACK_READS_AN_INPUT = {"a_write_that_reads_an_overlapping_view_of_itself"}


@pytest.mark.parametrize("name, before, after, fired", CASES, ids=[c[0] for c in CASES])
def test_case(name, before, after, fired):
    g, out = check_pass(functionalize, before, after, fired)
    check_meaning(g, out, seed=len(name))


def test_no_mutation_returns_the_graph_itself():
    g = graph("""
        graph @f(%x: f32[2,3]) {
          %0: f32[3,2] = permute %x {perm=[1,0]}
          %1: f32[6] = reshape %0 {shape=[6]}
          %2: f32[6] = exp %1
          return %2, %0
        }
        """)
    fired = collections.Counter()
    assert functionalize(g, fired) is g
    assert not fired


def test_the_input_graph_is_left_as_it_was():
    g = graph(dict((c[0], c[1]) for c in CASES)["write_through_slice_of_permute_of_reshape"])
    before = str(g)
    functionalize(g)
    assert str(g) == before


def test_a_write_through_expand_is_refused():
    g = graph("""
        graph @f(%x: f32[3]) {
          %0: f32[2,3] = expand %x {shape=[2,3]}
          %1: f32[1,2] = slice %0 {starts=[0,1], stops=[1,3], steps=[1,1]}
          %2: f32[1,2] = full {value=0.0, shape=[1,2], dtype=f32}
          %3: f32[1,2] = copy_ %1, %2
          return %x
        }
        """)
    with pytest.raises(KilnError, match="in-place write into an expanded view") as e:
        functionalize(g)
    assert e.value.node is g.nodes[3]


def test_reading_an_expanded_view_after_its_base_is_written():
    before = graph("""
        graph @f(%x: f32[3]) {
          %0: f32[2,3] = expand %x {shape=[2,3]}
          %1: f32[3] = full {value=2.0, shape=[3], dtype=f32}
          %2: f32[3] = copy_ %x, %1
          return %0
        }
        """)
    check_meaning(before, functionalize(before), seed=1)


SWAP = """
    graph @f(%x: f32[2], %y: f32[2]) {
      %0: f32[2] = copy_ %y, %x
      %1: f32[2] = full {value=5.0, shape=[2], dtype=f32}
      %2: f32[2] = copy_ %x, %1
      return %0
    }
    """


def test_a_writeback_may_read_another_written_input():
    before = graph(SWAP)
    after = functionalize(before)
    assert [i for i, _ in writebacks(after)] == [0, 1]
    assert writebacks(after)[1][1] is after.inputs[0]
    check_meaning(before, after, seed=2, executable=False)


@pytest.mark.parametrize("text", [SWAP] + [c[1] for c in CASES
                                           if c[0] in WRITEBACK_READS_AN_INPUT])
def test_executable_writebacks_read_the_old_inputs(text):
    before = graph(text)
    check_meaning(before, functionalize(before), seed=2)


def test_a_write_through_a_detached_view_keeps_the_base_differentiable():
    before = graph("""
        graph @f(%x: f32[4]) {
          %0: f32[4] = stop_gradient %x
          %1: f32[2] = slice %0 {starts=[1], stops=[3], steps=[1]}
          %2: f32[2] = full {value=9.0, shape=[2], dtype=f32}
          %3: f32[2] = copy_ %1, %2
          %4: f32[4] = exp %x
          %5: f32[] = sum %4 {axes=[0], keepdim=false}
          return %5
        }
        """)
    args = random_inputs(before, np.random.default_rng(3))
    _, (x_new,), _ = run_reference(before, args)
    _, dx = interpret(grad_graph(functionalize(before), wrt=[0]), args)
    kept = [0, 3]       # NOTE: the elements the write through the detached view left alone
    np.testing.assert_allclose(dx[kept], np.exp(x_new[kept]), rtol=1e-6)


# --- output_aliases --------------------------------------------------------------------------

# (case name, IR, per output: None or (input index, [(view op, attrs), ...]))
ALIASES = [
    ("inputs_themselves_and_pure_values", """
        graph @f(%x: f32[2,3], %y: f32[4]) {
          %0: f32[2,3] = exp %x
          %1: f32[2,3] = copy %x
          return %y, %0, %x, %1
        }
        """, [(1, []), None, (0, []), None]),
    ("chains_of_views_of_inputs", """
        graph @f(%x: f32[2,3], %y: f32[4]) {
          %0: f32[6] = reshape %x {shape=[6]}
          %1: f32[3] = slice %0 {starts=[0], stops=[6], steps=[2]}
          %2: f32[4] = stop_gradient %y
          %3: f32[2,4] = expand %2 {shape=[2,4]}
          %4: f32[4,2] = permute %3 {perm=[1,0]}
          return %1, %4
        }
        """, [(0, [("reshape", {"shape": (6,)}),
                   ("slice", {"starts": (0,), "stops": (6,), "steps": (2,)})]),
              (1, [("stop_gradient", {}), ("expand", {"shape": (2, 4)}),
                   ("permute", {"perm": (1, 0)})])]),
    ("results_of_writes_into_inputs_and_their_views", """
        graph @f(%x: f32[2,3], %y: f32[4]) {
          %0: f32[3,2] = permute %x {perm=[1,0]}
          %1: f32[3,2] = neg %0
          %2: f32[3,2] = copy_ %0, %1
          %3: f32[4] = full {value=1.0, shape=[4], dtype=f32}
          %4: f32[4] = copy_ %y, %3
          %5: f32[2] = slice %4 {starts=[1], stops=[3], steps=[1]}
          return %2, %4, %5, %1
        }
        """, [(0, [("permute", {"perm": (1, 0)})]), (1, []),
              (1, [("slice", {"starts": (1,), "stops": (3,), "steps": (1,)})]), None]),
    ("views_of_intermediates_and_their_writes_alias_no_input", """
        graph @f(%x: f32[2,3]) {
          %0: f32[2,3] = exp %x
          %1: f32[3,2] = permute %0 {perm=[1,0]}
          %2: f32[3,2] = permute %x {perm=[1,0]}
          %3: f32[3,2] = copy_ %1, %2
          %4: f32[2,2] = slice %3 {starts=[1,0], stops=[3,2], steps=[1,1]}
          return %1, %3, %4
        }
        """, [None, None, None]),
]


@pytest.mark.parametrize("name, text, want", ALIASES, ids=[c[0] for c in ALIASES])
def test_output_aliases(name, text, want):
    g = graph(text)
    got = [None if a is None else (a[0], [(op, attrs.as_dict()) for op, attrs in a[1]])
           for a in output_aliases(g)]
    assert got == want
    check_meaning(g, functionalize(g), seed=len(name))
