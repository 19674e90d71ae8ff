"""print -> parse -> print is the identity, for every sample of every registered op; the parsed
graph verifies and computes what the original computes."""
from __future__ import annotations

import numpy as np
import pytest
from op_samples import all_cases

from kiln.ir.builder import GraphBuilder
from kiln.ir.dtypes import float32, float64
from kiln.ir.interpreter import interpret
from kiln.ir.parser import parse
from kiln.ir.printer import print_graph
from kiln.ir.types import Loc, TensorType
from kiln.ir.verifier import verify

CASES = all_cases()


def _assert_same(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)   # NOTE: NaNs compare equal here


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_round_trip_prints_identically(case):
    g = case.graph(Loc("/src/model.py", 12))
    text = print_graph(g)
    parsed = parse(text)
    assert print_graph(parsed) == text
    assert "# model.py:12" in text
    verify(parsed)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parsed_graph_computes_the_same(case):
    g = case.graph()
    parsed = parse(print_graph(g))
    with np.errstate(all="ignore"):
        _assert_same(interpret(g, list(case.inputs)), interpret(parsed, list(case.inputs)))


def test_parse_keeps_structure_hints_and_locs():
    b = GraphBuilder("f")
    x = b.add_input(TensorType(float32, (2, 3)), "x")
    y = b.add_input(TensorType(float32, (2, 3)))      # no hint: printed as a number
    (s,) = b.emit("add", [x, y], {}, Loc("/a/b/model.py", 7))
    (m,) = b.emit("max", [s], {"axes": (1,), "keepdim": True})
    g = parse(print_graph(b.finish([m, s])))
    assert [v.hint for v in g.inputs] == ["x", None]
    assert [n.op for n in g.nodes] == ["add", "max"]
    assert g.nodes[0].inputs == tuple(g.inputs)
    assert g.nodes[0].loc == Loc("model.py", 7) and g.nodes[1].loc is None
    assert g.nodes[1].attrs.axes == (1,) and g.nodes[1].attrs.keepdim is True
    assert g.outputs == [g.nodes[1].out, g.nodes[0].out]


def test_names_and_devices_that_need_care():
    """Graph names that would read ambiguously are quoted; devices, duplicate hints (made
    unique with a suffix), non-identifier hints and a graph returning its input all survive."""
    b = GraphBuilder('my graph (v2) "x"')
    t = TensorType(float64, (2,), "cuda:0")
    x1, x2, x3 = b.add_input(t, "x"), b.add_input(t, "x"), b.add_input(t, "not ok")
    (s,) = b.emit("mul", [x1, x2], {})
    g = b.finish([s, x3, x1])
    text = print_graph(g)
    assert text.startswith('graph @"my graph (v2) \\"x\\""(%x: f64[2]@cuda:0, %x_1: f64[2]@cuda:0, '
                           '%0: f64[2]@cuda:0')
    parsed = parse(text)
    assert parsed.name == g.name
    assert parsed.inputs[0].type.device == "cuda:0"
    assert print_graph(parsed) == text


def test_graph_with_no_inputs_or_outputs():
    text = "graph @empty() {\n  return \n}\n"
    g = parse(text)
    assert (g.inputs, g.nodes, g.outputs) == ([], [], [])
    assert print_graph(g) == text


def test_blank_lines_comments_and_indentation_are_free():
    text = ("\n# a hand-written test graph\ngraph @f(%x: f32[3]) {\n\n"
            "      # scale it\n%1: f32[3] = neg %x   #  model.py:3  \n  return %1\n}\n\n")
    g = parse(text)
    assert g.nodes[0].loc == Loc("model.py", 3)
    assert print_graph(g) == ("graph @f(%x: f32[3]) {\n  %0: f32[3] = neg %x   # model.py:3\n"
                              "  return %0\n}\n")


def test_attributes_may_come_in_any_order():
    text = ("graph @f() {\n  %0: i32[2] = full {dtype=i32, shape=[2], value=3}\n"
            "  return %0\n}\n")
    assert print_graph(parse(text)) == ("graph @f() {\n  %0: i32[2] = full {value=3, "
                                        "shape=[2], dtype=i32}\n  return %0\n}\n")


def test_scalar_attributes_keep_their_python_type():
    text = ("graph @f() {\n  %0: f32[3] = arange {start=0, stop=1.5, step=0.5, dtype=f32}\n"
            "  %1: bool[2] = full {value=true, shape=[2], dtype=bool}\n  return %0, %1\n}\n")
    g = parse(text)
    attrs = g.nodes[0].attrs
    assert type(attrs.start) is int and type(attrs.stop) is float
    assert g.nodes[1].attrs.value is True


@pytest.mark.parametrize("hint", ["❶", "A·", "x\u0301"])
def test_hints_the_parser_cannot_read_print_as_numbers(hint):
    b = GraphBuilder("f")
    x = b.add_input(TensorType(float32, ()), hint=hint)
    text = str(b.finish(b.emit("exp", [x], {})))
    assert str(parse(text)) == text
