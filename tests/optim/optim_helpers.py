"""Shared by the optimizer tests: the option combinations each optimizer is checked with, and
a deterministic training loop that feeds gradients from `optim_reference.grad_at`."""
from __future__ import annotations

import numpy as np
import optim_reference as ref

import kiln
import kiln.optim as optim

SHAPES = [(3,), (2, 2), ()]
STEPS = 20

CASES = [
    (optim.SGD, ref.sgd, {"lr": 0.1}),
    (optim.SGD, ref.sgd, {"lr": 0.05, "momentum": 0.9}),
    (optim.SGD, ref.sgd, {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
    (optim.SGD, ref.sgd, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (optim.SGD, ref.sgd, {"lr": 0.1, "weight_decay": 0.1}),
    (optim.SGD, ref.sgd, {"lr": 0.01, "momentum": 0.5, "nesterov": True, "weight_decay": 0.01,
                          "maximize": True}),
    (optim.Adam, ref.adam, {}),
    (optim.Adam, ref.adam, {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-3}),
    (optim.Adam, ref.adam, {"lr": 0.05, "weight_decay": 0.1}),
    (optim.Adam, ref.adam, {"lr": 0.05, "amsgrad": True}),
    (optim.Adam, ref.adam, {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1,
                            "maximize": True}),
    (optim.Adam, ref.adam, {"lr": 0.05, "betas": (0.3, 0.4)}),   # lerp's weight >= 0.5 form
    (optim.AdamW, ref.adamw, {}),
    (optim.AdamW, ref.adamw, {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True}),
    (optim.AdamW, ref.adamw, {"lr": 0.05, "weight_decay": 0.0}),
    (optim.RMSprop, ref.rmsprop, {}),
    (optim.RMSprop, ref.rmsprop, {"lr": 0.01, "momentum": 0.9}),
    (optim.RMSprop, ref.rmsprop, {"lr": 0.01, "centered": True}),
    (optim.RMSprop, ref.rmsprop, {"lr": 0.01, "centered": True, "momentum": 0.5,
                                  "weight_decay": 0.1, "maximize": True}),
    (optim.RMSprop, ref.rmsprop, {"lr": 0.01, "alpha": 0.3, "centered": True}),
]


def case_id(case) -> str:
    cls, _, options = case
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in options.items())


def initial_arrays(rng) -> list[np.ndarray]:
    return [rng.standard_normal(s) for s in SHAPES]


def make(cls, options: dict, arrays, dtype=kiln.float64):
    """Leaf parameters holding `arrays`, and an optimizer of class `cls` over them."""
    params = [kiln.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
    return params, cls(params, **options)


def train(opt, params, start: int, steps: int) -> None:
    """Steps start .. start+steps-1: each sets every gradient from the parameter's value."""
    for k in range(start, start + steps):
        for p in params:
            g = ref.grad_at(p.detach().numpy().astype(np.float64), k)
            p.grad = kiln.tensor(g, dtype=p.dtype)
        opt.step()


def values(params) -> list[np.ndarray]:
    return [p.detach().numpy() for p in params]
