# A convolutional autoencoder (Conv2d down, Upsample + Conv2d up, Flatten/Unflatten, LeakyReLU,
# ELU) trained with the Huber loss; then a variational-style KL term and cosine similarity of codes.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
grid = torch.linspace(-1, 1, 8)
yy, xx = torch.meshgrid(grid, grid, indexing="ij")
centers = torch.rand(16, 2) * 1.2 - 0.6
images = torch.exp(-((xx - centers[:, :1, None]) ** 2 + (yy - centers[:, 1:, None]) ** 2) * 6)
images = images.unsqueeze(1)


class ConvAutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
            nn.Flatten(), nn.Linear(4 * 4 * 4, 6))
        self.decoder = nn.Sequential(
            nn.Linear(6, 4 * 4 * 4), nn.ELU(), nn.Unflatten(1, (4, 4, 4)),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(4, 1, 3, padding=1),
            nn.Identity(), nn.Softplus())

    def forward(self, x):
        code = self.encoder(x)
        return self.decoder(code), code


model = ConvAutoEncoder()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
for step in range(25):
    optimizer.zero_grad()
    reconstruction, code = model(images)
    loss = F.huber_loss(reconstruction, images, delta=0.5)
    loss.backward()
    optimizer.step()
    if step % 8 == 0 or step == 24:
        print(f"step {step} loss {loss.item():.8g}")

with torch.no_grad():
    reconstruction, code = model(images)
    predicted = F.log_softmax(reconstruction.flatten(1), dim=1)
    target = F.softmax(images.flatten(1), dim=1)
    kl = F.kl_div(predicted, target, reduction="batchmean")
    similarity = F.cosine_similarity(code[:-1], code[1:], dim=1)
print(f"kl {kl.item():.8g} smooth l1 {F.smooth_l1_loss(reconstruction, images).item():.8g}")
print("cosine", [f"{v:.8g}" for v in similarity[:4].tolist()])
print("reconstruction", reconstruction.shape, f"{reconstruction.sum().item():.8g}")
checksum = sum(p.detach().abs().sum().item() for p in model.parameters())
print(f"param checksum {checksum:.8g}")
