"""The verifier accepts what the builder and parser make and rejects malformed graphs with a
message that says what is wrong, the node as printed, and the user's line."""
from __future__ import annotations

import pytest

from kiln.ir import get_op
from kiln.ir.attrs import NORMALIZE, Attrs
from kiln.ir.builder import GraphBuilder, make_node
from kiln.ir.dtypes import float32
from kiln.ir.errors import VerifyError
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.parser import parse
from kiln.ir.types import Loc, TensorType
from kiln.ir.verifier import KIND_CHECKS, verify

T4 = TensorType(float32, (4,))
AT = Loc("model.py", 5)


def _inputs(n=2):
    return [Value(T4, hint=h) for h in "xyz"[:n]]


def _error(graph) -> VerifyError:
    with pytest.raises(VerifyError) as info:
        verify(graph)
    return info.value


def test_accepts_and_returns_the_graph():
    g = parse("graph @f(%x: f32[4]) {\n  %1: f32[4] = exp %x   # model.py:2\n  return %1\n}\n")
    assert verify(g) is g


def test_use_before_definition_names_the_node_and_loc():
    x, _ = _inputs()
    first = make_node("exp", [x], {})
    second = make_node("neg", [first.out], {}, AT)
    err = _error(Graph("f", [x], [second, first], [first.out]))
    # NOTE: names are print_graph's: the printer meets %0 first, as neg's operand.
    assert err.message == "graph @f: node 'neg' operand 0 (%0) is used before it is defined"
    assert err.node == "%1: f32[4] = neg %0   # model.py:5"
    assert err.loc == AT
    assert "while handling node: %1: f32[4] = neg %0   # model.py:5" in str(err)


def test_operand_from_nowhere():
    x, y = _inputs()
    stray = make_node("exp", [y], {})
    err = _error(Graph("f", [x], [make_node("add", [x, stray.out], {})], []))
    assert "node 'add' operand 1 (%" in err.message
    assert err.message.endswith("is not defined in this graph")


def test_wrong_arity():
    x, y = _inputs()
    ok = make_node("add", [x, y], {})
    bad = Node("add", ok.attrs, [x], [T4], AT)
    err = _error(Graph("f", [x, y], [bad], bad.outputs))
    assert err.message == "graph @f: node 'add' takes 2 operand(s), got 1"
    assert err.node == "%0: f32[4] = add %x   # model.py:5"


def test_wrong_declared_type():
    x, _ = _inputs()
    bad = Node("exp", Attrs(), [x], [TensorType(float32, (8,))], AT)
    err = _error(Graph("f", [x], [bad], bad.outputs))
    assert err.message == ("graph @f: node 'exp' declares output type(s) (f32[8]), but 'exp' "
                           "of (f32[4]) gives (f32[4])")
    assert err.node == "%0: f32[8] = exp %x   # model.py:5"


def test_operands_the_shape_rule_rejects():
    x = Value(T4, hint="x")
    y = Value(TensorType(float32, (3,)), hint="y")
    bad = Node("add", Attrs(), [x, y], [T4])
    err = _error(Graph("f", [x, y], [bad], bad.outputs))
    assert "node 'add' has operands (f32[4], f32[3]) that its shape rule rejects: add: " \
           "operand shapes differ" in err.message


def test_duplicate_definition():
    x, _ = _inputs()
    node = make_node("exp", [x], {}, AT)
    err = _error(Graph("f", [x], [node, node], node.outputs))
    assert err.message == "graph @f: node 'exp' defines %0 a second time"


def test_duplicate_input():
    x, _ = _inputs()
    err = _error(Graph("f", [x, x], [], [x]))
    assert err.message == "graph @f: input 1 (%x) is defined twice"


def test_undefined_graph_output():
    x, y = _inputs()
    err = _error(Graph("f", [x], [], [y]))
    assert err.message == "graph @f: output 0 (%0) is not defined in this graph"


def test_unknown_op_and_bad_attrs():
    x, _ = _inputs()
    err = _error(Graph("f", [x], [Node("expo", Attrs(), [x], [T4])], []))
    assert err.message == "graph @f: node 'expo' is not a registered op"
    missing = Node("sum", Attrs((("axes", (0,)),)), [x], [TensorType(float32, ())])
    err = _error(Graph("f", [x], [missing], []))
    assert err.message == "graph @f: node 'sum' has attributes ['axes']; 'sum' takes " \
                          "['axes', 'keepdim']"
    scalar = TensorType(float32, ())
    wrong_kind = Node("sum", Attrs((("axes", (0,)), ("keepdim", 1))), [x], [scalar])
    err = _error(Graph("f", [x], [wrong_kind], []))
    assert err.message == "graph @f: node 'sum' has attribute keepdim=1, which is not a " \
                          "valid bool"


def _body(types, result_op="exp"):
    b = GraphBuilder("k")
    ins = [b.add_input(t, "a") for t in types]
    return b.finish(b.emit(result_op, ins[:1], {}))


def _kernel(operands, body, out_types, loc=AT):
    """A kernel node built by hand, so that it can disagree with its body."""
    attrs = get_op("kernel").make_attrs({"name": "k", "body": body})
    return Node("kernel", attrs, operands, out_types, loc)


def test_kernel_operands_must_match_body_inputs():
    x, _ = _inputs()
    node = _kernel([x], _body([TensorType(float32, (2,))]), [TensorType(float32, (2,))])
    err = _error(Graph("f", [x], [node], node.outputs))
    assert err.message == ("graph @f: node 'kernel' has operands (f32[4]) that do not match "
                           "its body's inputs (f32[2])")
    assert err.node == '%0: f32[2] = kernel %x {name="k"} {   # model.py:5'


def test_kernel_outputs_must_match_body_results():
    x, _ = _inputs()
    node = _kernel([x], _body([T4]), [T4, T4])
    err = _error(Graph("f", [x], [node], node.outputs))
    assert err.message == ("graph @f: node 'kernel' declares outputs (f32[4], f32[4]) that do "
                           "not match its body's results (f32[4])")


def test_kernel_body_is_verified_and_closed():
    x, y = _inputs()
    b = GraphBuilder("k")
    a = b.add_input(T4, "a")
    (s,) = b.emit("add", [a, y], {}, Loc("model.py", 9))   # y is the outer graph's value
    node = _kernel([x], b.finish([s]), [T4])
    err = _error(Graph("f", [x, y], [node], node.outputs))
    assert err.message == ("graph @f > kernel body @k: node 'add' operand 1 (%y) belongs to an "
                           "enclosing graph (a kernel body sees only its own inputs)")
    assert err.loc == Loc("model.py", 9)
    assert err.node == "%1: f32[4] = add %a, %y   # model.py:9"


def test_every_attribute_kind_has_a_check():
    assert set(KIND_CHECKS) == set(NORMALIZE)


@pytest.mark.parametrize("kind, good, bad", [
    ("int", 3, True), ("float", 1.0, 1), ("bool", False, 0), ("scalar", 2.5, "2.5"),
    ("dtype", float32, "f32"), ("ints", (0, 1), [0, 1]), ("shape", (2, 0), (2, -1)),
    ("str", "k", b"k"), ("data", ((1, 2.0), (True, 3)), ((1, "a"),)),
    ("graph", Graph("g"), "graph"),
])
def test_kind_checks(kind, good, bad):
    assert KIND_CHECKS[kind](good) and not KIND_CHECKS[kind](bad)
