import torch
import torch.nn as nn

torch.manual_seed(0)
net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
loss_fn = nn.MSELoss()
x = torch.randn(64, 2)
y = (x[:, 0] * 2 - x[:, 1]).unsqueeze(1)
losses = []
for step in range(100):
    optimizer.zero_grad()
    loss = loss_fn(net(x), y)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"first loss {losses[0]:.4f}, last loss {losses[-1]:.4f}")
print("RESULT", losses[-1] < 0.5 * losses[0])
