"""Input names and module locations survive every pass, the autograd transform and the
schedule: each node keeps the location of the user's op it comes from."""
from kiln.ir.names import ModuleLoc
from kiln.ir.parser import parse
from kiln.ir.printer import print_graph
from kiln.ir.schedule import Launch
from kiln.passes.autograd import grad_graph
from kiln.passes.functionalize import functionalize
from kiln.passes.manager import run_passes
from kiln.passes.schedule import build_schedule

FC1 = ModuleLoc("train.py", 41, "model.fc1", "Linear")
ACT = ModuleLoc("train.py", 42, "model.act", "Tanh")
MLP = """
graph @loss(%x: f32[2,3], %fc1.weight: f32[4,3], %fc1.bias: f32[4]) {
  %0: f32[3,4] = permute %fc1.weight {perm=[1,0]}   # model.fc1 (Linear) at train.py:41
  %1: f32[2,4] = matmul %x, %0   # model.fc1 (Linear) at train.py:41
  %2: f32[2,4] = expand %fc1.bias {shape=[2,4]}   # model.fc1 (Linear) at train.py:41
  %3: f32[2,4] = add %1, %2   # model.fc1 (Linear) at train.py:41
  %4: f32[2,4] = tanh %3   # model.act (Tanh) at train.py:42
  %5: f32[] = sum %4 {axes=[0,1], keepdim=false}   # train.py:43
  return %5
}
"""


def _nodes(g):
    for n in g.nodes:
        yield n
        for _, v in n.attrs.items():
            if hasattr(v, "nodes"):
                yield from _nodes(v)


def test_every_pass_keeps_names_and_locations():
    g = parse(MLP)
    out, stages = run_passes(g, verify=True)
    given = {n.loc for n in g.nodes}
    for st in stages:
        assert [v.hint for v in st.graph.inputs] == ["x", "fc1.weight", "fc1.bias"], st.name
        assert {n.loc for n in _nodes(st.graph)} <= given, st.name
        assert print_graph(parse(print_graph(st.graph))) == print_graph(st.graph), st.name
    fused = [n for n in out.nodes if n.op == "kernel"]
    assert fused and all(n.loc is not None for n in fused)
    tanh = next(n for n in _nodes(out) if n.op == "tanh")
    assert tanh.loc == ACT and next(n for n in _nodes(out) if n.op == "matmul").loc == FC1


def test_backward_nodes_carry_their_forward_nodes_location():
    g = parse(MLP)
    gg = grad_graph(g, wrt=[1, 2])
    backward = gg.nodes[len(g.nodes):]
    assert backward and all(n.loc is not None for n in backward)
    assert backward[0].op == "full" and str(backward[0].loc) == "train.py:43"   # the seed
    assert {n.loc for n in backward} == {n.loc for n in g.nodes}
    # tanh's VJP: 1 - tanh^2, made where the tanh was
    assert any(n.loc == ACT and n.op == "mul" for n in backward)
    assert [v.hint for v in gg.inputs] == ["x", "fc1.weight", "fc1.bias"]


def test_a_write_back_carries_its_write_location():
    g = functionalize(parse("""
graph @step(%opt.state.w.exp_avg: f32[4], %g: f32[4]) {
  %0: f32[4] = mul %opt.state.w.exp_avg, %g   # opt (Adam) at train.py:50
  %1: f32[4] = copy_ %opt.state.w.exp_avg, %0   # opt (Adam) at train.py:51
  return
}
"""))
    (back,) = [n for n in g.nodes if n.op == "copy_"]
    assert str(back.loc) == "opt (Adam) at train.py:51"


def test_schedule_steps_carry_locations_and_input_names():
    out, _ = run_passes(parse(MLP))
    s = build_schedule(out)
    assert [b.name for b in s.inputs] == ["x", "fc1.weight", "fc1.bias"]
    assert all(st.loc is not None for st in s.steps)
    launches = [st for st in s.steps if isinstance(st, Launch)]
    assert {st.loc for st in launches} <= {FC1, ACT, parse(MLP).nodes[-1].loc}
    assert "%fc1.bias" in str(s) and "# model.fc1 (Linear) at train.py:41" in str(s)
