"""Collectives as graph ops (ir/ops/collective.py): declared effectful, printed and parsed back,
never folded, merged or dropped by the passes, kept in program order, and compiled into a
jitted function that calls them exactly once per call without retracing."""
from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest

import kiln
import kiln.distributed as dist
from kiln.ir.parser import parse
from kiln.ir.registry import NOT_DIFFERENTIABLE, all_ops
from kiln.passes.canonicalize import canonicalize, dce
from kiln.passes.fusion import fuse_elementwise
from kiln.passes.schedule import build_schedule

COLLECTIVES = {"all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier"}

TWO_EQUAL_REDUCES = """
graph @f(%x: f32[4]) {
  %0: f32[4] = full {value=2.0, shape=[4], dtype=f32}
  %1: f32[4] = all_reduce %0 {op="sum"}
  %2: f32[4] = all_reduce %0, %1 {op="sum"}
  %3: f32[4] = all_reduce %x, %2 {op="max"}
  %4: f32[4] = add %1, %2
  return %4
}
"""


def test_the_collectives_are_declared_effectful_and_not_differentiable():
    ops = {op.name: op for op in all_ops() if op.kind == "collective"}
    assert set(ops) == COLLECTIVES
    assert all(op.effectful and op.vjp == NOT_DIFFERENTIABLE for op in ops.values())
    assert not any(op.effectful for op in all_ops() if op.kind != "collective")


def test_collectives_print_and_parse_back():
    g = parse(TWO_EQUAL_REDUCES)
    assert parse(str(g)).__str__() == str(g)
    assert [n.op for n in g.nodes].count("all_reduce") == 3


def test_canonicalize_never_folds_merges_or_drops_a_collective():
    fired = collections.Counter()
    g = canonicalize(parse(TWO_EQUAL_REDUCES), fired)
    reduces = [n for n in g.nodes if n.op == "all_reduce"]
    # NOTE: two reduces of one constant: not folded, not merged; the unused third one stays
    assert len(reduces) == 3 and "cse" not in fired and "fold" not in fired
    assert reduces[1].inputs[1] is reduces[0].outputs[0]
    assert len(dce(g).nodes) == len(g.nodes)


def test_pure_nodes_beside_collectives_are_still_simplified():
    g = canonicalize(parse("""
        graph @f(%x: f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = exp %x
          %2: f32[4] = all_reduce %0 {op="sum"}
          %3: f32[4] = neg %1
          %4: f32[4] = neg %3
          return %4
        }"""))
    assert [n.op for n in g.nodes] == ["exp", "all_reduce"]


def test_fusion_and_schedule_keep_collectives_in_program_order():
    g = fuse_elementwise(canonicalize(parse("""
        graph @f(%x: f32[4], %y: f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = all_reduce %0 {op="sum"}
          %2: f32[4] = tanh %y
          %3: f32[4] = broadcast %2, %1 {src=0}
          %4: i64[] = barrier %3
          %5: f32[4] = add %1, %3
          return %5
        }""")))
    schedule = build_schedule(g)
    runs = [step.op for step in schedule.steps if type(step).__name__ == "Run"]
    assert runs == ["all_reduce", "broadcast", "barrier"]


def test_shape_rules():
    g = parse("""
        graph @f(%x: f32[2,3]) {
          %0: f32[2,2,3] = all_gather %x {world_size=2}
          %1: f32[2,3] = reduce_scatter %0 {op="avg", world_size=2}
          return %1
        }""")
    assert str(g.outputs[0].type) == "f32[2,3]"
    with pytest.raises(kiln.KilnError, match="first axis must be the world size 3"):
        parse("""
            graph @f(%x: f32[2,3]) {
              %0: f32[3] = reduce_scatter %x {op="sum", world_size=3}
              return %0
            }""")
    with pytest.raises(kiln.KilnError, match="op=avg needs a floating-point tensor"):
        parse("""
            graph @f(%x: i64[2]) {
              %0: i64[2] = all_reduce %x {op="avg"}
              return %0
            }""")


def test_running_a_collective_node_without_a_group_says_so():
    from kiln.ir.interpreter import interpret
    with pytest.raises(kiln.KilnError, match="init_process_group"):
        interpret(parse("""
            graph @f(%x: f32[2]) {
              %0: f32[2] = all_reduce %x {op="sum"}
              return %0
            }"""), [np.ones(2, np.float32)])


def test_a_jitted_step_compiles_its_collectives_and_runs_each_once_per_call(world):
    engine = dist.process_group.current().engine
    model = kiln.nn.Linear(3, 2)
    opt = kiln.optim.SGD(model.parameters(), lr=0.1)

    @kiln.jit
    def step(x):
        opt.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        for p in model.parameters():
            dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
        opt.step()
        total = loss.detach() * 1
        dist.all_reduce(total)
        return total
    with warnings.catch_warnings():
        warnings.simplefilter("error", kiln.KilnJitWarning)
        for _ in range(3):
            before = engine.completed
            step(kiln.randn(4, 3))
            assert engine.completed - before == 3
    assert step.traces == 1
    (entry,) = [e for es in step.cache.values() for e in es]
    reduces = [n for n in entry.graph.nodes if n.op == "all_reduce"]
    assert len(reduces) == 3
    # NOTE: each collective after the first reads the one before it: a chain no schedule
    # can reorder
    for before, after in zip(reduces, reduces[1:]):
        assert before.outputs[0] in after.inputs


def test_jitted_collectives_give_eager_results(world):
    def f(x):
        y = x * 3
        dist.all_reduce(y, op=dist.ReduceOp.MAX)
        parts = [kiln.zeros(2)]
        dist.all_gather(parts, y[:2])
        out = kiln.zeros(2)
        dist.reduce_scatter_tensor(out, parts[0] + 1)
        dist.barrier()
        return out + y[2:]
    x = kiln.tensor([1.0, 2.0, 3.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", kiln.KilnJitWarning)
        assert kiln.jit(f)(x).tolist() == f(x).tolist() == [13.0, 19.0]
