# Linear regression two ways: raw tensors with requires_grad and torch.optim.SGD, then
# nn.Linear (weights set to zero first) with momentum and weight decay.
import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.linspace(0, 1, 50).unsqueeze(1)
y = 3.0 * x + 2.0 + 0.1 * torch.sin(20 * x)

w = torch.zeros(1, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
optimizer = torch.optim.SGD([w, b], lr=0.5)
for step in range(100):
    prediction = x * w + b
    loss = ((prediction - y) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 25 == 0 or step == 99:
        print(f"step {step} loss {loss.item():.8g} w {w.item():.8g} b {b.item():.8g}")

model = nn.Linear(1, 1)
with torch.no_grad():
    model.weight.zero_()
    model.bias.fill_(0.0)
optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-3,
                            nesterov=True)
criterion = nn.MSELoss()
for step in range(60):
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    if step % 20 == 0 or step == 59:
        print(f"nn step {step} loss {loss.item():.8g}")
print("fit", f"{model.weight.item():.8g} {model.bias.item():.8g}")
with torch.no_grad():
    print("predictions", [f"{v:.8g}" for v in model(torch.tensor([[0.0], [0.5], [2.0]])).view(-1).tolist()])
slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
intercept = y.mean() - slope * x.mean()
print("least squares", f"{slope.item():.8g} {intercept.item():.8g}")
