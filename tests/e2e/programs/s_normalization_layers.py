# Normalization layers: BatchNorm1d (running statistics, train vs eval), LayerNorm, GroupNorm;
# their affine parameters trained to map inputs onto a target.
import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.sin(torch.arange(48, dtype=torch.float32).view(4, 6, 2) * 0.7) * 3 + 1

batch_norm = nn.BatchNorm1d(6, momentum=0.2)
for _ in range(3):
    train_out = batch_norm(x)
print("batchnorm train", f"{train_out.abs().sum().item():.8g} {train_out.std().item():.8g}")
print("running", [f"{v:.8g}" for v in batch_norm.running_mean.tolist()[:3]],
      [f"{v:.8g}" for v in batch_norm.running_var.tolist()[:3]], batch_norm.num_batches_tracked.item())
batch_norm.eval()
print("batchnorm eval", [f"{v:.8g}" for v in batch_norm(x)[0, :, 0].tolist()])

layer_norm = nn.LayerNorm([6, 2])
group_norm = nn.GroupNorm(num_groups=3, num_channels=6)
print("layernorm", [f"{v:.8g}" for v in layer_norm(x)[1, 0].tolist()])
print("groupnorm", [f"{v:.8g}" for v in group_norm(x)[2, :, 1].tolist()])

target = torch.cos(torch.arange(48, dtype=torch.float32).view(4, 6, 2)) + torch.arange(2.0)
model = nn.Sequential(nn.GroupNorm(2, 6), nn.LayerNorm([6, 2]))
optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
for step in range(20):
    optimizer.zero_grad()
    loss = nn.functional.l1_loss(model(x), target) + nn.functional.smooth_l1_loss(model(x), target)
    loss.backward()
    optimizer.step()
    if step % 5 == 0 or step == 19:
        print(f"step {step} loss {loss.item():.8g}")
for name, parameter in model.named_parameters():
    print(name, [f"{v:.8g}" for v in parameter.detach().view(-1).tolist()])
