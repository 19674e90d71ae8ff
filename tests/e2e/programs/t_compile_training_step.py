# torch.compile: a compiled model and a compiled loss function inside an ordinary training
# loop, checked against the same model run eagerly.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(64, 6)
y = (x[:, :3].sum(1) > x[:, 3:].sum(1)).long()


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


model = MLP()
compiled = torch.compile(model)


@torch.compile
def loss_fn(logits, targets):
    return F.cross_entropy(logits, targets, label_smoothing=0.1)


optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
for step in range(12):
    optimizer.zero_grad()
    loss = loss_fn(compiled(x), y)
    loss.backward()
    optimizer.step()
    if step % 4 == 0 or step == 11:
        print(f"step {step} loss {loss.item():.8g}")

with torch.no_grad():
    eager = model(x)
    fused = compiled(x)
print("compiled matches eager", bool(((eager - fused).abs() < 1e-5).all()))
print("accuracy", (fused.argmax(1) == y).float().mean().item())
print("state dict keys", list(compiled.state_dict().keys()))
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
