"""Compiled plans are keyed by what a graph computes, not by its names (frontend/plan_names.py):
a plan made for one program, given to a renamed copy of it, is exactly the plan compiling the
copy would make, with the copy's names and locations."""
import doctest
import pickle
import textwrap

import pytest

import kiln
from kiln.frontend import plan_names
from kiln.frontend.compile import plan_graph
from kiln.frontend.jit import trace_function
from kiln.frontend.plan_names import plan_key_text, plan_payload, rebind
from kiln.ir.parser import parse
from kiln.passes.manager import run_passes

PROGRAM = textwrap.dedent('''\
    import kiln
    import kiln.nn as nn
    import kiln.nn.functional as F


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x)))


    kiln.manual_seed(0)
    model = Net()
    opt = kiln.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
''')
# the same program with other names, and its lines moved
RENAMED = ("# another file\n\n" + PROGRAM).replace("model", "net").replace("opt =", "sgd =") \
    .replace("opt.", "sgd.").replace("kiln.sgd.", "kiln.optim.") \
    .replace("def step(x, y)", "def train(inputs, labels)") \
    .replace("net(x), y", "net(inputs), labels").replace("loss", "value")


def _trace(tmp_path, name, text, fn):
    import runpy
    path = tmp_path / name
    path.write_text(text)
    program = runpy.run_path(str(path))
    trace, _ = trace_function(program[fn], [kiln.randn(4, 8), kiln.tensor([0, 1, 2, 3])], {})
    return trace.builder.graph


def _compile(traced):
    optimized, _ = run_passes(traced)
    schedule, text = plan_graph(optimized)
    return optimized, schedule, text


def test_a_plan_serves_a_renamed_program_with_its_own_names(tmp_path):
    a = _trace(tmp_path, "train.py", PROGRAM, "step")
    b = _trace(tmp_path, "other.py", RENAMED, "train")
    assert str(a) != str(b) and "%sgd.state.fc1.weight.momentum_buffer" in str(b)
    assert plan_key_text(a) == plan_key_text(b)
    payload = pickle.loads(pickle.dumps(plan_payload(a, *_compile(a))))
    got = rebind(payload, b)
    want = _compile(b)
    assert str(got[0]) == str(want[0])           # optimized graph: names, locations
    assert str(got[1]) == str(want[1])           # the memory-planned schedule
    assert got[2] == want[2]                     # the schedule text before planning
    assert "other.py" in got[2] and "train.py" not in got[2]


def test_what_differs_in_structure_differs_in_key():
    base = parse("graph @f(%x: f32[4]) {\n  %0: f32[4] = exp %x   # a.py:1\n  return %0\n}\n")
    other = parse("graph @f(%x: f32[4]) {\n  %0: f32[4] = neg %x   # a.py:1\n  return %0\n}\n")
    assert plan_key_text(base) != plan_key_text(other)


def test_a_payload_for_another_graph_is_refused():
    a = parse("graph @f(%x: f32[4]) {\n  %0: f32[4] = exp %x   # a.py:1\n  return %0\n}\n")
    b = parse("graph @g(%x: f32[4]) {\n  %0: f32[4] = exp %x\n  return %0\n}\n")
    payload = plan_payload(a, *_compile(a))
    with pytest.raises(ValueError, match="another graph"):
        rebind(payload, b)
    with pytest.raises(ValueError, match="not a plan"):
        rebind(payload[:3], a)


def test_docstring_examples_run():
    result = doctest.testmod(plan_names)
    assert result.attempted > 0 and result.failed == 0
