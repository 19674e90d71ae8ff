# Learning-rate schedulers with gradient clipping: StepLR, OneCycleLR, CosineAnnealingLR,
# LambdaLR, MultiStepLR, ExponentialLR and ReduceLROnPlateau driving SGD and Adam.
import torch
import torch.nn as nn
from torch.optim import lr_scheduler

torch.manual_seed(0)
x = torch.randn(64, 5)
y = torch.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3]


def make_model():
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))


def train(name, optimizer_fn, scheduler_fn, clip, steps=12):
    model = make_model()
    optimizer = optimizer_fn(model.parameters())
    scheduler = scheduler_fn(optimizer)
    for step in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        if clip == "norm":
            norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)
        else:
            nn.utils.clip_grad_value_(model.parameters(), clip_value=0.05)
            norm = torch.stack([p.grad.abs().max() for p in model.parameters()]).max()
        optimizer.step()
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(loss.item())
        else:
            scheduler.step()
        if step % 4 == 3:
            lr = optimizer.param_groups[0]["lr"]
            print(f"{name} step {step} loss {loss.item():.8g} clipped {norm.item():.8g} lr {lr:.8g}")
    weights = sum(p.detach().abs().sum().item() for p in model.parameters())
    print(f"{name} param checksum {weights:.8g}")


sgd = lambda params: torch.optim.SGD(params, lr=0.2, momentum=0.9)
adam = lambda params: torch.optim.Adam(params, lr=0.05)
train("step", sgd, lambda opt: lr_scheduler.StepLR(opt, step_size=4, gamma=0.5), "norm")
train("onecycle", sgd, lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=12), "norm")
train("cosine", adam, lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=12, eta_min=1e-3), "value")
train("lambda", adam, lambda opt: lr_scheduler.LambdaLR(opt, lambda epoch: 1.0 / (1 + epoch)), "norm")
train("multistep", sgd, lambda opt: lr_scheduler.MultiStepLR(opt, milestones=[3, 7], gamma=0.3), "value")
train("exponential", adam, lambda opt: lr_scheduler.ExponentialLR(opt, gamma=0.8), "norm")
train("plateau", sgd, lambda opt: lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1), "norm")
