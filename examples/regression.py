"""A small regression net trained with Adam on MSE: fit y = tanh(3x) + x^2 / 2 on [-1, 1].

    python examples/regression.py
"""
import math

import kiln as torch
import kiln.nn as nn


def main(steps: int = 500) -> tuple[float, float]:
    torch.manual_seed(0)
    x = torch.rand(256, 1) * 2 - 1
    y = torch.tanh(3 * x) + x * x / 2
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    first = last = math.nan
    for step in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        if step == 0:
            first = loss.item()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:4d}  mse {loss.item():.6f}")
        last = loss.item()
    print(f"mse fell from {first:.4f} to {last:.6f}")
    return first, last


if __name__ == "__main__":
    main()
