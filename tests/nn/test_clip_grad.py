"""Gradient clipping gives PyTorch's results (norms 1, 2 and inf; by value)."""
import numpy as np
import pytest

import kiln

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("norm_type", [1.0, 2.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.1, 100.0])
def test_clip_grad_norm_matches_pytorch(norm_type, max_norm, rng):
    grads = [rng.standard_normal(s) for s in [(3, 4), (4,), (2, 2, 2)]]
    ks = [kiln.zeros(g.shape, dtype=kiln.float64, requires_grad=True) for g in grads]
    ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for k, t, g in zip(ks, ts, grads):
        k.grad = kiln.tensor(g, dtype=kiln.float64)
        t.grad = torch.tensor(g)
    nk = kiln.nn.utils.clip_grad_norm_(ks, max_norm, norm_type)
    nt = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type)
    np.testing.assert_allclose(nk.item(), nt.item(), rtol=1e-12)
    for k, t in zip(ks, ts):
        np.testing.assert_allclose(k.grad.numpy(), t.grad.numpy(), rtol=1e-12)


def test_clip_grad_value_matches_pytorch(rng):
    g = rng.standard_normal((5, 3))
    k = kiln.zeros(5, 3, dtype=kiln.float64, requires_grad=True)
    t = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
    k.grad, t.grad = kiln.tensor(g, dtype=kiln.float64), torch.tensor(g)
    kiln.nn.utils.clip_grad_value_([k], 0.5)
    torch.nn.utils.clip_grad_value_([t], 0.5)
    np.testing.assert_array_equal(k.grad.numpy(), t.grad.numpy())
