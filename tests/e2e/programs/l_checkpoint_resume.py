# Checkpoint round trip: save model and optimizer state dicts with torch.save, load them into
# fresh objects with torch.load, resume training, and get the same numbers as never stopping.
import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.randn(32, 4)
y = (x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])).relu()


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.relu(self.norm(self.hidden(x))))


def train(model, optimizer, scheduler, steps):
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


model = Regressor()
optimizer = torch.optim.Adam(model.parameters(), lr=0.02, weight_decay=1e-4)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
first = train(model, optimizer, scheduler, 8)
torch.save({"epoch": 8, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict()}, "checkpoint.pt")
print("saved keys", sorted(model.state_dict().keys()))
print("optimizer state", sorted(optimizer.state_dict()["state"][0].keys()),
      optimizer.state_dict()["param_groups"][0]["lr"])
continued = train(model, optimizer, scheduler, 6)

checkpoint = torch.load("checkpoint.pt")
print("epoch", checkpoint["epoch"], "step", checkpoint["optimizer"]["state"][0]["step"].item())
restored = Regressor()
restored.load_state_dict(checkpoint["model"])
restored_optimizer = torch.optim.Adam(restored.parameters(), lr=0.02, weight_decay=1e-4)
restored_optimizer.load_state_dict(checkpoint["optimizer"])
restored_scheduler = torch.optim.lr_scheduler.StepLR(restored_optimizer, step_size=5, gamma=0.5)
restored_scheduler.load_state_dict(checkpoint["scheduler"])
resumed = train(restored, restored_optimizer, restored_scheduler, 6)

print("first", [f"{v:.8g}" for v in first[::2]])
print("continued", [f"{v:.8g}" for v in continued])
print("resumed", [f"{v:.8g}" for v in resumed])
print("same after resuming", continued == resumed)
same_weights = all(bool((a == b).all()) for a, b in zip(model.parameters(), restored.parameters()))
print("same weights", same_weights)
checksum = sum(p.detach().abs().sum().item() for p in restored.parameters())
print(f"param checksum {checksum:.8g}")
