"""Cases a review of the tensor ops found differing from PyTorch 2.13, each compared with it:
gradients at the points where a formula's derivative is infinite or ties (norm, std, clamp,
pow, max over a dim), integer edge cases, and PyTorch's type promotion with 0-d tensors."""
import numpy as np
import pytest

import kiln

torch = pytest.importorskip("torch", reason="PyTorch is not installed")


def _grad(L, values, fn, dtype="float64"):
    x = L.tensor(values, dtype=getattr(L, dtype), requires_grad=True)
    fn(L, x).sum().backward()
    return x.grad.tolist()


GRADIENTS = {
    "norm-zero-row": ([[3.0, 4.0], [0.0, 0.0]], lambda L, x: x.norm(dim=1)),
    "norm-all-zero": ([0.0, 0.0], lambda L, x: x.norm()),
    "norm-p3-zero": ([0.0, 0.0], lambda L, x: x.norm(3)),
    "norm-p-half": ([0.0, 1.0], lambda L, x: x.norm(0.5)),
    "normalize-padding-row": ([[3.0, 4.0], [0.0, 0.0]],
                              lambda L, x: x / (x.norm(dim=1, keepdim=True) + 1e-6)),
    "std-constant": ([2.0, 2.0, 2.0], lambda L, x: x.std()),
    "clamp-at-bounds": ([0.0, 1.0, 0.5], lambda L, x: x.clamp(0, 1)),
    "clamp-min-tie": ([0.0, -1.0], lambda L, x: x.clamp(min=0.0)),
    "pow-zero-exponent": ([0.0, 1.0], lambda L, x: x ** 0),
    "zero-base": ([0.0, 1.0], lambda L, x: 0.0 ** x),
    "max-dim-ties": ([[1.0, 2.0], [1.0, 2.0]], lambda L, x: L.max(x, 0)[0]),
    "min-dim-ties-keepdim": ([[1.0, 1.0], [2.0, 2.0]], lambda L, x: L.min(x, 1, keepdim=True)[0]),
}


@pytest.mark.parametrize("name", sorted(GRADIENTS))
def test_gradients_at_special_points_match_pytorch(name):
    values, fn = GRADIENTS[name]
    got, want = _grad(kiln, values, fn), _grad(torch, values, fn)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    jitted = kiln.jit(lambda x: fn(kiln, x).sum())
    for _ in range(2):
        x = kiln.tensor(values, dtype=kiln.float64, requires_grad=True)
        jitted(x).backward()
        np.testing.assert_allclose(x.grad.tolist(), want, rtol=1e-12, atol=1e-15)


def test_clamp_with_tensor_bounds_routes_the_gradient_like_pytorch():
    out = []
    for L in (kiln, torch):
        x = L.tensor([-1.0, 0.0, 2.0], dtype=L.float64, requires_grad=True)
        m = L.zeros(3, dtype=L.float64, requires_grad=True)
        L.clamp(x, min=m).sum().backward()
        out.append((x.grad.tolist(), m.grad.tolist()))
    assert out[0] == out[1]


VALUES = {
    "argmin-int64-min": lambda L: L.argmin(L.tensor([5, -2 ** 63, 3])),
    "linspace-int-truncates": lambda L: L.linspace(-5.5, 7.25, 5, dtype=L.int64),
    "var-dim-empty-tuple": lambda L: L.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]]).var(dim=()),
    "sum-dim-empty-list": lambda L: L.tensor([[1.0, 2.0], [3.0, 4.0]]).sum(dim=[]),
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_values_match_pytorch(name):
    got, want = VALUES[name](kiln), VALUES[name](torch)
    np.testing.assert_allclose(got.tolist(), want.tolist(), rtol=1e-6)
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]


PROMOTIONS = {
    "int32-tensor-int64-0d": lambda L: L.tensor([1, 2], dtype=L.int32) % L.tensor(3),
    "float32-tensor-float64-0d": lambda L: L.ones(2) + L.tensor(1.0, dtype=L.float64),
    "int-tensor-float64-0d": lambda L: L.tensor([1, 2]) * L.tensor(1.5, dtype=L.float64),
    "clamp-float64-0d-bound": lambda L: L.clamp(L.tensor([1.0, 2.0]),
                                                min=L.tensor(0.0, dtype=L.float64)),
    "two-0d": lambda L: L.tensor(2, dtype=L.int32) + L.tensor(1.5, dtype=L.float64),
    "bool-tensor-int-scalar": lambda L: L.tensor([True, False]) + 3,
    "int-tensor-float-scalar": lambda L: L.tensor([1, 2], dtype=L.int32) * 0.5,
    "where-float64-0d": lambda L: L.where(L.tensor([True]), L.ones(1),
                                          L.tensor(0.0, dtype=L.float64)),
}


@pytest.mark.parametrize("name", sorted(PROMOTIONS))
def test_result_dtypes_follow_pytorch_with_0d_tensors(name):
    got, want = PROMOTIONS[name](kiln), PROMOTIONS[name](torch)
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    np.testing.assert_allclose(got.tolist(), want.tolist())
