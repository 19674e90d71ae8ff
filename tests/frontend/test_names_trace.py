"""Traced graphs name their inputs after where the program found them and give each op the
module path and line it came from (issue 10: `kiln ir` shows `fc1.weight`, `model.fc1`)."""
import textwrap

import numpy as np
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
from kiln import cli
from kiln.frontend.jit import compile_stages, trace_function
from kiln.frontend.tensor import Tensor
from kiln.frontend.trace import Trace, tracing
from kiln.ir.names import ModuleLoc
from kiln.ir.parser import parse
from kiln.ir.printer import print_graph
from kiln.ir.schedule_text import parse_schedule, print_schedule
from kiln.ir.types import TensorType

MLP = textwrap.dedent('''\
    import kiln
    import kiln.nn as nn
    import kiln.nn.functional as F
    import kiln.optim as optim


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x):
            x = F.relu(self.fc1(x))
            return self.fc2(x)


    kiln.manual_seed(0)
    model = Net()
    opt = optim.Adam(model.parameters(), lr=0.01)


    def loss(x, y):
        return F.cross_entropy(model(x), y)


    def step(x, y):
        opt.zero_grad()
        out = F.cross_entropy(model(x), y)
        out.backward()
        opt.step()
        return out
''')


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("names") / "mlp.py"
    path.write_text(MLP)
    return path


def _args():
    return [kiln.randn(4, 8), kiln.tensor([0, 1, 2, 3])]


def _header(text: str) -> str:
    return text.split("\n", 1)[0]


def test_kiln_ir_shows_parameter_names_and_module_paths(mlp_file, capsys):
    code = cli.main(["ir", f"{mlp_file}:loss", "--arg", "f32[4,8]", "--arg", "i64[4]",
                     "--stage", "traced"])
    text = capsys.readouterr().out
    assert code == 0
    assert _header(text) == ("graph @loss(%x: f32[4,8], %y: i64[4], %fc1.weight: f32[16,8], "
                             "%fc1.bias: f32[16], %fc2.weight: f32[4,16], %fc2.bias: f32[4]) {")
    assert "= permute %fc1.weight {perm=[1,0]}   # model.fc1 (Linear) at mlp.py:14" in text
    assert "= relu %3   # model (Net) at mlp.py:14" in text
    assert "# model.fc2 (Linear) at mlp.py:15" in text
    assert "= exp %12   # mlp.py:24" in text        # F.cross_entropy: in no module


def test_training_step_names_optimizer_state_through_every_stage(mlp_file):
    import runpy
    program = runpy.run_path(str(mlp_file))
    stages = dict(compile_stages(program["step"], _args()))
    inputs = _header(stages["traced"])
    for name in ("%fc1.weight: f32[16,8]", "%opt.state.fc1.weight.exp_avg: f32[16,8]",
                 "%opt.state.fc2.bias.exp_avg_sq: f32[4]", "%opt.state.fc1.bias.step: f32[]"):
        assert name in inputs
    for stage in ("traced", "functionalize", "canonicalize", "fusion"):
        text = stages[stage]
        assert print_graph(parse(text)) == text, stage
        assert "%fc2.weight" in _header(text) and "model.fc2 (Linear)" in text, stage
    for stage in ("schedule", "memory"):
        text = stages[stage]
        assert print_schedule(parse_schedule(text)) == text, stage
        assert "%opt.state.fc1.weight.exp_avg" in _header(text)
        assert "   # model.fc1 (Linear) at mlp.py:14" in text, stage


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.extra = [nn.Tanh()]        # a plain list: not a registered submodule

    def forward(self, x):
        x = self.layers(x)
        for blk in self.blocks:
            x = blk(x)
        return self.extra[0](x)


block = Block()


def _locs(graph) -> set:
    return {n.loc for n in graph.nodes}


def test_nested_modules_get_their_paths():
    def f(x):
        return block(x) + nn.Sigmoid()(x)
    trace, _ = trace_function(f, [kiln.randn(2, 4)], {})
    g = trace.builder.graph
    paths = {(loc.module, loc.kind) for loc in _locs(g) if isinstance(loc, ModuleLoc)}
    assert paths == {("block.layers.0", "Linear"), ("block.layers.1", "ReLU"),
                     ("block.blocks.0", "Linear"), ("block.blocks.1", "Linear"),
                     ("block.extra.0", "Tanh"), ("sigmoid", "Sigmoid")}
    assert [v.hint for v in g.inputs] == ["x", "layers.0.weight", "layers.0.bias",
                                          "blocks.0.weight", "blocks.0.bias",
                                          "blocks.1.weight", "blocks.1.bias"]
    assert not trace.scopes


scale = kiln.tensor([2.0, 3.0])


class Config:
    def __init__(self):
        self.bias = kiln.tensor([1.0, 1.0])


cfg = Config()


def test_plain_tensors_are_named_after_their_variable():
    weights = [kiln.ones(2), kiln.full((2,), 5.0)]

    def f(x):
        return x * scale + cfg.bias - weights[1]
    trace, _ = trace_function(f, [kiln.ones(2)], {})
    assert [v.hint for v in trace.builder.graph.inputs] == ["x", "scale", "cfg.bias",
                                                            "weights.1"]


gen, disc = nn.Linear(2, 2), nn.Linear(2, 2)


def test_names_stay_unique():
    x = kiln.ones(2)

    def f(x):
        return disc(gen(x)) + x
    trace, _ = trace_function(f, [kiln.ones(2)], {})
    hints = [v.hint for v in trace.builder.graph.inputs]
    assert hints == ["x", "weight", "bias", "disc.weight", "disc.bias"]
    assert x is not None and len(set(hints)) == len(hints)


def test_names_never_change_what_is_computed(mlp_file):
    import runpy
    program = runpy.run_path(str(mlp_file))
    x, y = _args()
    want = F.cross_entropy(program["model"](x), y).item()
    got = kiln.jit(program["loss"])(x, y).item()
    assert got == pytest.approx(want, rel=1e-6)


def _traced(trace, n: int):
    """A traced stand-in for an f32[n] argument `x`."""
    return Tensor._wrap(trace.add_arg(TensorType(kiln.float32, (n,)), "x"), trace)


def test_ops_in_a_backward_block_carry_the_forward_location():
    trace = Trace("f")
    with tracing(trace):
        x = _traced(trace, 3)
        trace.enter_module(block)
        y = kiln.exp(x)
        trace.exit_module()
        with trace.backward_of([y]):
            z = kiln.neg(y) * 2
        w = kiln.neg(z)
    loc_y = y._data.producer.loc
    assert isinstance(loc_y, ModuleLoc) and loc_y.module == "block"
    assert z._data.producer.loc == loc_y and z._data.producer.inputs[0].producer.loc == loc_y
    assert not isinstance(w._data.producer.loc, ModuleLoc)


def test_a_cut_trace_keeps_the_running_module_path():
    trace = Trace("f")
    with tracing(trace):
        x = _traced(trace, 3)
        trace.enter_module(block)
        kiln.exp(x)
        segment = trace.cut()
        x2 = _traced(trace, 3)
        after = kiln.exp(x2)
        trace.exit_module()
    assert segment.builder.graph.nodes[0].loc.module == "block"
    assert after._data.producer.loc.module == "block"
    assert not trace.scopes and after._data.type == TensorType(kiln.float32, (3,))


def test_scalar_and_grad_inputs_are_named_after_their_owner():
    opt = kiln.optim.SGD([kiln.ones(2, requires_grad=True)], lr=0.5)
    trace = Trace("f")
    with tracing(trace):
        x = _traced(trace, 3)
        lr = trace.scalar_input(lambda: opt.param_groups[0]["lr"], kiln.float32,
                                "param_groups.0.lr", owner=opt)
        plain = trace.scalar_input(lambda: 1.0, kiln.float32, "lr0")
        grad = trace.grad_name(x._data)
    assert (lr.hint, plain.hint, grad) == ("opt.param_groups.0.lr", "lr0", "x.grad")


def test_eager_module_calls_record_no_path():
    out = block(kiln.ones(1, 4))
    assert out.shape == (1, 4) and isinstance(out._data, np.ndarray)


def test_a_submodule_name_that_is_no_identifier_still_parses_back():
    odd = nn.Module()
    odd.add_module("my layer", nn.Linear(2, 2))

    def f(x):
        return odd._modules["my layer"](x)
    trace, _ = trace_function(f, [kiln.ones(2)], {})
    text = str(trace.builder.graph)
    assert _header(text) == "graph @f(%x: f32[2], %my_layer.weight: f32[2,2], " \
                            "%my_layer.bias: f32[2]) {"
    assert "# odd.my_layer (Linear) at test_names_trace.py:" in text
    assert print_graph(parse(text)) == text
