"""Shared by the kiln.nn tests: a gradient check for any module or function against central
finite differences (float64), and PyTorch access that skips with the reason."""
from __future__ import annotations

import numpy as np
import pytest

import kiln

FD_EPS = 1e-6
SEED = 1234     # NOTE: re-seeded before every forward, so Dropout draws the same mask each time


def t64(a, requires_grad: bool = False) -> kiln.Tensor:
    """A float64 (or integer) kiln tensor from array-like data."""
    arr = np.asarray(a)
    t = kiln.from_numpy(arr.astype(np.float64) if arr.dtype.kind == "f" else arr)
    return t.requires_grad_() if requires_grad else t


def _objective(fn, inputs, cot) -> kiln.Tensor:
    kiln.manual_seed(SEED)
    out = fn(*inputs)
    return (out * kiln.from_numpy(cot)).sum()


def _numeric(fn, inputs, cot, target: kiln.Tensor) -> np.ndarray:
    base = target.detach().numpy().copy()
    grad = np.zeros(base.shape)
    for idx in np.ndindex(base.shape):
        values = []
        for step in (FD_EPS, -FD_EPS):
            moved = base.copy()
            moved[idx] += step
            with kiln.no_grad():
                target.copy_(kiln.from_numpy(moved))
                values.append(_objective(fn, inputs, cot).item())
        grad[idx] = (values[0] - values[1]) / (2 * FD_EPS)
    with kiln.no_grad():
        target.copy_(kiln.from_numpy(base))
    return grad


def check_gradients(fn, *inputs, module=None, rng=None, tol: float = 1e-6) -> list[str]:
    """Autograd vs central differences of sum(fn(*inputs) * cotangent) for every float64
    input that requires grad and every parameter of `module` (default: fn if a Module).
    Returns the names checked, so a test can assert nothing was skipped."""
    module = fn if module is None and isinstance(fn, kiln.nn.Module) else module
    rng = rng or np.random.default_rng(0)
    kiln.manual_seed(SEED)
    cot = rng.standard_normal(tuple(fn(*inputs).shape))
    targets = [(f"input {i}", x) for i, x in enumerate(inputs)
               if isinstance(x, kiln.Tensor) and x.requires_grad]
    if module is not None:
        module.zero_grad()
        targets += list(module.named_parameters())
    for _, t in targets:
        assert t.dtype == kiln.float64, "finite differences need float64"
        t.grad = None
    _objective(fn, inputs, cot).backward()
    for name, t in targets:
        assert t.grad is not None, f"{name}: no gradient"
        numeric = _numeric(fn, inputs, cot, t)
        analytic = t.grad.numpy()
        err = np.abs(analytic - numeric) / np.maximum(1.0, np.abs(numeric))
        assert err.max(initial=0.0) < tol, f"{name}: max scaled error {err.max():.3g}"
    return [name for name, _ in targets]


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is not installed here; CI installs it "
                                               "and these tests compare against it")
