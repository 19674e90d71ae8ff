# An MLP autoencoder trained with Adam on mini-batches from a shuffled DataLoader.
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
codes = torch.randn(256, 3)
mixing = torch.randn(3, 16)
data = torch.tanh(codes @ mixing) + 0.05 * torch.randn(256, 16)


class AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
        self.decoder = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 16), nn.Tanh())

    def forward(self, x):
        return self.decoder(self.encoder(x))


model = AutoEncoder()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_fn = nn.MSELoss()
loader = DataLoader(TensorDataset(data), batch_size=32, shuffle=True)
for epoch in range(8):
    total = 0.0
    for (batch,) in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(batch), batch)
        loss.backward()
        optimizer.step()
        total += loss.item() * batch.size(0)
    print(f"epoch {epoch} loss {total / len(data):.8g}")

with torch.no_grad():
    reconstruction = model(data)
    error = ((reconstruction - data) ** 2).mean(dim=1)
    latent = model.encoder(data[:2])
print(f"reconstruction error {error.mean().item():.8g} worst {error.max().item():.8g}")
print("latent", [[f"{v:.8g}" for v in row] for row in latent.tolist()])
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
