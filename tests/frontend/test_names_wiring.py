"""Names and locations that need one call each from frontend/autograd.py,
frontend/trace_grads.py and kiln/optim/optimizer.py into the trace (issue 10's names work)."""
import pytest

import kiln
import kiln.nn as nn
import kiln.nn.functional as F
from kiln.frontend.jit import trace_function
from kiln.ir.names import ModuleLoc


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


kiln.manual_seed(0)
model = Net()
opt = kiln.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def step(x, y):
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def _traced_step():
    x, y = kiln.randn(2, 4), kiln.tensor([0, 2])
    step(x, y)              # eagerly once: .grad and momentum buffers exist
    trace, _ = trace_function(step, [x, y], {})
    return trace.builder.graph


def test_traced_backward_ops_carry_their_forward_ops_location():
    g = _traced_step()
    matmuls = [n for n in g.nodes if n.op == "matmul"]
    assert len(matmuls) == 5                # 2 forward, 3 backward (x needs no grad)
    assert all(isinstance(n.loc, ModuleLoc) for n in matmuls)
    assert {n.loc.module for n in matmuls} == {"model.fc1", "model.fc2"}


def test_grad_inputs_are_named_after_their_parameter():
    hints = [v.hint for v in _traced_step().inputs]
    assert "fc1.weight.grad" in hints and "fc2.bias.grad" in hints


def test_optimizer_hyperparameters_are_named_after_the_optimizer():
    hints = [v.hint for v in _traced_step().inputs]
    assert "opt.param_groups.0.lr" in hints and "opt.param_groups.0.momentum" in hints
