# A WGAN-GP critic step: the gradient penalty differentiates a gradient taken with
# torch.autograd.grad(create_graph=True).
import torch
import torch.nn as nn

torch.manual_seed(0)
critic = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))


def gradient_penalty(real, fake):
    alpha = torch.rand(real.size(0), 1)
    interpolated = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(interpolated)
    grads = torch.autograd.grad(outputs=scores, inputs=interpolated,
                                grad_outputs=torch.ones_like(scores),
                                create_graph=True, retain_graph=True)[0]
    return ((grads.norm(2, dim=1) - 1) ** 2).mean()


for step in range(20):
    real = torch.randn(32, 2) * 0.5 + torch.tensor([2.0, -1.0])
    fake = torch.randn(32, 2)
    optimizer.zero_grad()
    penalty = gradient_penalty(real, fake)
    loss = critic(fake).mean() - critic(real).mean() + 10.0 * penalty
    loss.backward()
    optimizer.step()
    if step % 5 == 0 or step == 19:
        print(f"step {step} loss {loss.item():.8g} penalty {penalty.item():.8g}")

point = torch.tensor([[0.5, 0.5]], requires_grad=True)
(grad,) = torch.autograd.grad(critic(point).sum(), point, create_graph=True)
(second,) = torch.autograd.grad(grad[0, 0], point)
print("input gradient", [f"{v:.8g}" for v in grad.detach().view(-1).tolist()])
print("second derivative", [f"{v:.8g}" for v in second.view(-1).tolist()])
checksum = sum(p.detach().abs().sum().item() for p in critic.parameters())
print(f"param checksum {checksum:.8g}")
