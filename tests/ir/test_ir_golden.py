"""Golden prints: the exact IR text of graphs built with the builder, and that text parsed back."""
from __future__ import annotations

import numpy as np

from kiln.ir.builder import GraphBuilder
from kiln.ir.dtypes import float32, int64
from kiln.ir.interpreter import interpret
from kiln.ir.parser import parse
from kiln.ir.printer import print_graph
from kiln.ir.types import Loc, TensorType
from kiln.ir.verifier import verify

MLP_TEXT = """\
graph @mlp(%x: f32[4,8], %w: f32[8,2]) {
  %0: f32[4,2] = matmul %x, %w   # model.py:41
  %1: f32[4,2] = relu %0   # model.py:42
  %2: f32[4] = sum %1 {axes=[1], keepdim=false}   # model.py:43
  %3: f32[] = constant {data=0.5, shape=[], dtype=f32}
  %4: f32[4] = expand %3 {shape=[4]}
  %5: f32[4] = mul %2, %4
  %6: i64[4] = argmax %1 {axis=1, keepdim=false}
  return %5, %6
}
"""

KERNEL_TEXT = """\
graph @f(%x: f32[3], %y: f32[3]) {
  %0: f32[3], %1: f32[] = kernel %x, %y {name="fused_0"} {   # model.py:7
    body @fused_0(%a: f32[3], %b: f32[3]) {
      %2: f32[3] = add %a, %b   # model.py:7
      %3: f32[3] = exp %2   # model.py:8
      %4: f32[] = sum %3 {axes=[0], keepdim=false}   # model.py:9
      return %3, %4
    }
  }
  %5: f32[3] = cast %0 {dtype=f32}
  return %5, %1
}
"""


def _mlp():
    b = GraphBuilder("mlp")
    x = b.add_input(TensorType(float32, (4, 8)), "x")
    w = b.add_input(TensorType(float32, (8, 2)), "w")

    def at(line):
        return Loc("/home/me/project/model.py", line)
    (h,) = b.emit("matmul", [x, w], {}, at(41))
    (r,) = b.emit("relu", [h], {}, at(42))
    (s,) = b.emit("sum", [r], {"axes": (1,), "keepdim": False}, at(43))
    (c,) = b.emit("constant", [], {"data": 0.5, "shape": (), "dtype": float32})
    (e,) = b.emit("expand", [c], {"shape": (4,)})
    (m,) = b.emit("mul", [s, e], {})
    (a,) = b.emit("argmax", [r], {"axis": 1, "keepdim": False})
    return b.finish([m, a])


def _fused_body():
    b = GraphBuilder("fused_0")
    t = TensorType(float32, (3,))
    a, bb = b.add_input(t, "a"), b.add_input(t, "b")
    (s,) = b.emit("add", [a, bb], {}, Loc("model.py", 7))
    (e,) = b.emit("exp", [s], {}, Loc("model.py", 8))
    (r,) = b.emit("sum", [e], {"axes": (0,), "keepdim": False}, Loc("model.py", 9))
    return b.finish([e, r])


def _kernel_graph():
    b = GraphBuilder("f")
    t = TensorType(float32, (3,))
    x, y = b.add_input(t, "x"), b.add_input(t, "y")
    k, total = b.emit("kernel", [x, y], {"name": "fused_0", "body": _fused_body()},
                      Loc("model.py", 7))
    (c,) = b.emit("cast", [k], {"dtype": float32})
    return b.finish([c, total])


def test_golden_mlp():
    assert print_graph(verify(_mlp())) == MLP_TEXT
    assert print_graph(parse(MLP_TEXT)) == MLP_TEXT


def test_golden_kernel_with_body_and_locs():
    assert print_graph(verify(_kernel_graph())) == KERNEL_TEXT
    assert print_graph(verify(parse(KERNEL_TEXT))) == KERNEL_TEXT


def test_golden_kernel_parses_to_the_same_program():
    g = parse(KERNEL_TEXT)
    (kernel, cast) = g.nodes
    body = kernel.attrs.body
    assert kernel.attrs.name == "fused_0" and body.name == "fused_0"
    assert [v.hint for v in body.inputs] == ["a", "b"]
    assert [n.op for n in body.nodes] == ["add", "exp", "sum"]
    assert kernel.loc == Loc("model.py", 7) and body.nodes[2].loc == Loc("model.py", 9)
    assert cast.inputs == (kernel.outputs[0],) and g.outputs[1] is kernel.outputs[1]
    x, y = np.array([0.0, 1.0, 2.0], np.float32), np.array([1.0, -1.0, 0.5], np.float32)
    got = interpret(g, [x, y])
    want = interpret(_kernel_graph(), [x, y])
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got[1], np.exp(x + y).sum(), rtol=1e-6)


def test_golden_source_ops():
    b = GraphBuilder("src")
    seed = b.add_input(TensorType(int64, ()), "seed")
    (n,) = b.emit("random_normal", [seed], {"shape": (2,), "dtype": "f32"})
    (f,) = b.emit("full", [], {"value": float("-inf"), "shape": (2,), "dtype": "f32"})
    (c,) = b.emit("constant", [], {"data": ((1, 2),), "shape": (1, 2), "dtype": "i64"})
    (r,) = b.emit("arange", [], {"start": 0, "stop": 1.0, "step": 0.25, "dtype": "f32"})
    want = """\
graph @src(%seed: i64[]) {
  %0: f32[2] = random_normal %seed {shape=[2], dtype=f32}
  %1: f32[2] = full {value=-inf, shape=[2], dtype=f32}
  %2: i64[1,2] = constant {data=[[1,2]], shape=[1,2], dtype=i64}
  %3: f32[4] = arange {start=0, stop=1.0, step=0.25, dtype=f32}
  return %0, %1, %2, %3
}
"""
    assert print_graph(b.finish([n, f, c, r])) == want
    assert print_graph(parse(want)) == want
