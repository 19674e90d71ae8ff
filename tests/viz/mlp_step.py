"""A two-layer MLP training step written the PyTorch way: forward, cross-entropy loss,
backward and an SGD-with-momentum update, jitted as one function. The pictures' tests and the
README's screenshot draw it:

    kiln viz tests/viz/mlp_step.py:train_step --arg f32[32,64] --arg i64[32] -o mlp_step.html
"""
import kiln
import kiln.nn as nn
import kiln.nn.functional as F


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


kiln.manual_seed(0)
model = MLP()
opt = kiln.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


@kiln.jit
def train_step(x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()
