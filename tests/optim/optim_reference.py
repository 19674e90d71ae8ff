"""PyTorch's optimizer update rules, transcribed into float64 NumPy (one step of one parameter).

These follow `torch/optim/{sgd,adam,rmsprop}.py` (`_single_tensor_*`) written out by hand, so
the tests compare Kiln's optimizers against the formulas, not against Kiln itself.
"""
from __future__ import annotations

import numpy as np


def sgd(p, g, state, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
        maximize=False):
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        buf = state.get("momentum_buffer")
        buf = g.copy() if buf is None else buf * momentum + (1 - dampening) * g
        state["momentum_buffer"] = buf
        g = g + momentum * buf if nesterov else buf
    return p - lr * g


def adam(p, g, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
         amsgrad=False, maximize=False, decoupled=False):
    beta1, beta2 = betas
    if not state:
        state.update(step=0, m=np.zeros_like(p), v=np.zeros_like(p), vmax=np.zeros_like(p))
    g = -g if maximize else g
    state["step"] += 1
    t = state["step"]
    if weight_decay and decoupled:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    state["m"] = state["m"] + (1 - beta1) * (g - state["m"])
    state["v"] = state["v"] * beta2 + (1 - beta2) * g * g
    v = state["v"]
    if amsgrad:
        state["vmax"] = v = np.maximum(state["vmax"], v)
    denom = np.sqrt(v) / np.sqrt(1 - beta2 ** t) + eps
    return p - lr / (1 - beta1 ** t) * state["m"] / denom


def adamw(p, g, state, weight_decay=1e-2, **options):
    return adam(p, g, state, weight_decay=weight_decay, decoupled=True, **options)


def rmsprop(p, g, state, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
            centered=False, maximize=False):
    if not state:
        state.update(v=np.zeros_like(p), gavg=np.zeros_like(p), buf=np.zeros_like(p))
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    state["v"] = state["v"] * alpha + (1 - alpha) * g * g
    if centered:
        state["gavg"] = state["gavg"] + (1 - alpha) * (g - state["gavg"])
        avg = np.sqrt(state["v"] - state["gavg"] ** 2) + eps
    else:
        avg = np.sqrt(state["v"]) + eps
    if momentum > 0:
        state["buf"] = state["buf"] * momentum + g / avg
        return p - lr * state["buf"]
    return p - lr * g / avg


def grad_at(p: np.ndarray, step: int) -> np.ndarray:
    """A gradient that depends on the parameter and the step, so trajectories differ when any
    part of an update rule is wrong (and second moments sometimes shrink, for amsgrad)."""
    return 0.5 * p + np.cos(3.0 * step + p) + 0.1 * p ** 2


def reference_run(rule, options: dict, arrays, steps: int) -> list[np.ndarray]:
    params = [np.asarray(a, np.float64) for a in arrays]
    states = [{} for _ in params]
    for k in range(steps):
        params = [rule(p, grad_at(p, k), s, **options) for p, s in zip(params, states)]
    return params
