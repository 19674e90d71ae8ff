"""Helpers for pass tests: IR text in -> IR text out, small graph builders (for generated
graphs), and running graphs on random data."""
from __future__ import annotations

import collections
import re
import textwrap

import numpy as np

from kiln.ir.builder import GraphBuilder, Sym
from kiln.ir.dtypes import from_short
from kiln.ir.graph import Graph
from kiln.ir.interpreter import interpret
from kiln.ir.parser import parse
from kiln.ir.registry import apply
from kiln.ir.types import TensorType
from kiln.ir.verifier import verify


def ty(text: str) -> TensorType:
    """`f32[4,8]` -> TensorType."""
    m = re.fullmatch(r"(\w+)\[([\d,]*)\]", text.strip())
    dims = tuple(int(d) for d in m.group(2).split(",") if d)
    return TensorType(from_short(m.group(1)), dims)


def start(name: str, **types: str) -> tuple[GraphBuilder, list[Sym]]:
    """A builder with inputs named and typed by keyword: `start("f", x="f32[4]")`."""
    b = GraphBuilder(name)
    return b, [Sym(b, b.add_input(ty(t), hint)) for hint, t in types.items()]


def finish(b: GraphBuilder, *outs: Sym) -> Graph:
    return b.finish([o.value for o in outs])


def full(like: Sym, value, shape=None, dtype=None) -> Sym:
    attrs = {"value": value, "shape": like.shape if shape is None else shape,
             "dtype": like.dtype if dtype is None else dtype}
    return apply("full", [], attrs, like=like)


def constant(like: Sym, data, dtype=None) -> Sym:
    arr = np.asarray(data)
    attrs = {"data": arr.tolist(), "shape": arr.shape,
             "dtype": like.dtype if dtype is None else dtype}
    return apply("constant", [], attrs, like=like)


def ir(text: str) -> str:
    """Expected IR text written indented in a test."""
    return textwrap.dedent(text).lstrip("\n")


def graph(text: str) -> Graph:
    """Parse and verify IR text written indented in a test."""
    return verify(parse(ir(text)))


def check_pass(run, before: str, after: str, fired: dict | None = None):
    """`run(graph, counter)` turns IR `before` into exactly `after` (verified, and printing
    the same after a parse round trip); `fired`, when given, is exactly the rules counted.
    Returns (input graph, output graph)."""
    g = graph(before)
    counts = collections.Counter()
    out = verify(run(g, counts))
    assert str(out) == ir(after)
    assert str(parse(str(out))) == str(out)
    if fired is not None:
        assert dict(counts) == fired
    return g, out


def random_inputs(graph: Graph, rng: np.random.Generator, positive=False) -> list[np.ndarray]:
    out = []
    for v in graph.inputs:
        a = rng.standard_normal(v.shape)
        out.append(np.abs(a) + 0.5 if positive else a)
    return [a.astype(v.dtype.np) for a, v in zip(out, graph.inputs)]


def assert_same_results(before: Graph, after: Graph, rng, positive=False, rtol=1e-6):
    """Both graphs give the same outputs on the same random inputs."""
    args = random_inputs(before, rng, positive)
    want = interpret(before, args)
    got = interpret(after, args)
    assert len(got) == len(want)
    for w, g in zip(want, got):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)
