"""Hypothesis: random programs and random attribute values survive print -> parse -> print."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.ir.builder import GraphBuilder
from kiln.ir.dtypes import float32, float64, int64
from kiln.ir.interpreter import interpret
from kiln.ir.parser import parse
from kiln.ir.printer import print_graph
from kiln.ir.types import Loc, TensorType
from kiln.ir.verifier import verify

UNARY = ["neg", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "erf", "relu", "abs"]
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]
COMPARE = ["eq", "ne", "lt", "le", "gt", "ge"]

names = st.one_of(st.none(), st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
                  st.text(max_size=4))
locs = st.one_of(st.none(), st.builds(Loc, st.sampled_from(["/a/model.py", "train.py",
                                                            "my file.py", "x:y.py"]),
                                      st.integers(0, 10_000)))


@st.composite
def elementwise_chains(draw):
    """A random elementwise program over one shape and float dtype, with `where` on
    comparisons, random input hints and random source lines."""
    shape = tuple(draw(st.lists(st.integers(1, 3), max_size=3)))
    dtype = draw(st.sampled_from([float32, float64]))
    b = GraphBuilder(draw(st.sampled_from(["f", "<lambda>", "Model.forward", "a b"])))
    values = [b.add_input(TensorType(dtype, shape), draw(names))
              for _ in range(draw(st.integers(1, 3)))]
    for _ in range(draw(st.integers(1, 10))):
        pick = st.sampled_from(values)
        kind = draw(st.sampled_from(["unary", "binary", "where"]))
        if kind == "unary":
            (v,) = b.emit(draw(st.sampled_from(UNARY)), [draw(pick)], {}, draw(locs))
        elif kind == "binary":
            (v,) = b.emit(draw(st.sampled_from(BINARY)), [draw(pick), draw(pick)], {},
                          draw(locs))
        else:
            (c,) = b.emit(draw(st.sampled_from(COMPARE)), [draw(pick), draw(pick)], {})
            (v,) = b.emit("where", [c, draw(pick), draw(pick)], {}, draw(locs))
        values.append(v)
    outs = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
    return b.finish(outs)


@settings(max_examples=60)
@given(elementwise_chains(), st.integers(0, 2**32 - 1))
def test_random_elementwise_chains_round_trip(g, seed):
    text = print_graph(verify(g))
    parsed = verify(parse(text))
    assert print_graph(parsed) == text
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(v.type.shape).astype(v.type.dtype.np) for v in g.inputs]
    with np.errstate(all="ignore"):
        for a, b in zip(interpret(g, xs), interpret(parsed, xs)):
            np.testing.assert_array_equal(a, b)


scalars = st.one_of(st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))


@settings(max_examples=100)
@given(scalars)
def test_any_scalar_attribute_round_trips(value):
    b = GraphBuilder("f")
    (v,) = b.emit("full", [], {"value": value, "shape": (), "dtype": "f64"})
    text = print_graph(b.finish([v]))
    parsed = parse(text)
    back = parsed.nodes[0].attrs.value
    assert print_graph(parsed) == text
    assert type(back) is type(value)
    assert back == value or (math.isnan(back) and math.isnan(value))
    if isinstance(value, float) and not math.isnan(value):
        # NOTE: -0.0 keeps its sign; a NaN prints as `nan` (sign and payload are not kept).
        assert math.copysign(1, back) == math.copysign(1, value)


@settings(max_examples=60)
@given(st.text(), st.text())
def test_any_kernel_and_graph_name_round_trips(kernel_name, graph_name):
    """Names are free text: quotes, backslashes, newlines, `#`, braces, the empty string."""
    body = GraphBuilder(graph_name)
    a = body.add_input(TensorType(int64, (2,)))
    body_graph = body.finish(body.emit("neg", [a], {}))
    b = GraphBuilder(graph_name)
    x = b.add_input(TensorType(int64, (2,)), "x")
    outs = b.emit("kernel", [x], {"name": kernel_name, "body": body_graph}, Loc("m.py", 1))
    text = print_graph(b.finish(outs))
    parsed = parse(text)
    assert parsed.name == graph_name
    assert parsed.nodes[0].attrs.name == kernel_name
    assert parsed.nodes[0].attrs.body.name == graph_name
    assert print_graph(parsed) == text


@settings(max_examples=60)
@given(st.recursive(st.one_of(st.integers(-9, 9), st.floats(-1e9, 1e9), st.booleans()),
                    lambda inner: st.lists(inner, max_size=3), max_leaves=12))
def test_any_data_literal_parses_back(data):
    """`data` attributes of any nesting read back equal (whether `constant` accepts them is
    the shape rule's business; here the literal is checked through the printer alone)."""
    from kiln.ir.attrs import NORMALIZE, format_attr
    from kiln.ir.parser import _Parser
    value = NORMALIZE["data"](data)
    p = _Parser(format_attr(value))
    back = p.data()
    assert p.peek().kind == "EOF"
    # NOTE: compared as text, so that True, 1 and 1.0 must each come back as themselves.
    assert format_attr(back) == format_attr(value)
