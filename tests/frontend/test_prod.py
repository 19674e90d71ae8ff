"""Tensor.prod: PyTorch's values, dtypes and gradients (zeros included), float64 finite
differences, and the same result under @kiln.jit."""
import numpy as np
import pytest

import kiln
from kiln.frontend.reductions import prod

torch = pytest.importorskip("torch")

CASES = [
    ({}, (3, 4)),
    ({"dim": 1}, (3, 4)),
    ({"dim": 0, "keepdim": True}, (3, 4)),
    ({"dim": -1}, (2, 3, 2)),
    ({}, ()),
    ({"dim": 0}, (5,)),
]


@pytest.mark.parametrize("kwargs, shape", CASES)
def test_values_and_gradients_match_pytorch(kwargs, shape):
    a = np.random.default_rng(0).uniform(0.5, 1.5, shape).astype(np.float32)
    if a.size > 2:
        a.reshape(-1)[1] = 0.0          # NOTE: the gradient must stay exact at a zero
    x = kiln.tensor(a, requires_grad=True)
    t = torch.tensor(a, requires_grad=True)
    got, want = x.prod(**kwargs), t.prod(**kwargs)
    assert got.shape == tuple(want.shape) and str(got.dtype)[5:] == str(want.dtype)[6:]
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6)
    got.sum().backward()
    want.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("values, kwargs", [
    ([2, 3, 4], {}),
    ([[1, 2], [3, -4]], {"dim": 1}),
    ([True, False, True], {}),
    ([1, 2, 3], {"dtype": "float64"}),
])
def test_integer_and_bool_products_use_pytorchs_dtype(values, kwargs):
    kw_kiln = {k: getattr(kiln, v) if k == "dtype" else v for k, v in kwargs.items()}
    kw_torch = {k: getattr(torch, v) if k == "dtype" else v for k, v in kwargs.items()}
    got = kiln.tensor(values).prod(**kw_kiln)
    want = torch.tensor(values).prod(**kw_torch)
    assert got.tolist() == want.tolist()
    assert str(got.dtype).split(".")[1] == str(want.dtype).split(".")[1]


def test_empty_product_is_one():
    got = kiln.zeros(2, 0).prod(1)
    assert got.tolist() == [1.0, 1.0] and got.dtype == kiln.float32
    assert kiln.zeros(0, 3).prod(0, keepdim=True).shape == (1, 3)


def test_gradient_matches_finite_differences_in_float64():
    a = np.random.default_rng(1).uniform(-2.0, 2.0, (3, 4))
    a[1, 2] = 0.0
    x = kiln.tensor(a, requires_grad=True)
    x.prod(dim=1).sum().backward()
    numeric = np.zeros_like(a)
    for pos in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[pos] += 1e-6
        down[pos] -= 1e-6
        numeric[pos] = (np.prod(up, axis=1).sum() - np.prod(down, axis=1).sum()) / 2e-6
    np.testing.assert_allclose(x.grad.numpy(), numeric, rtol=1e-6, atol=1e-8)


def test_under_jit_matches_eager():
    f = kiln.jit(lambda x: x.prod(dim=0) + prod(x))
    x = kiln.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(f(x).numpy(), (x.prod(dim=0) + x.prod()).numpy())


def test_non_tensor_input_raises_pytorchs_type_error():
    with pytest.raises(TypeError):
        prod(np.ones(3))
