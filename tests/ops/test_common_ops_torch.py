"""mm, dot, eye, diag, square, isnan/isinf/isfinite, sign, isclose/allclose/equal, unbind,
the `new_*` constructors and the softmax methods, against PyTorch (values, dtypes and
float64 gradients)."""
import numpy as np
import pytest

import kiln

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

X = [[1.0, -2.0, 0.5], [float("nan"), 0.0, float("inf")]]
CASES = {
    "eye": lambda L, x: L.eye(3, 2, dtype=L.float64),
    "diag-1d": lambda L, x: L.diag(x[0]),
    "diag-1d-offset": lambda L, x: L.diag(x[0], -2),
    "diag-2d": lambda L, x: L.diag(x, 1),
    "square": lambda L, x: L.square(x),
    "isnan": lambda L, x: L.isnan(x),
    "isinf": lambda L, x: L.isinf(x),
    "isfinite": lambda L, x: L.isfinite(x),
    "sign": lambda L, x: L.sign(x),
    "sign-int": lambda L, x: L.sign(L.tensor([-3, 0, 2])),
    "isclose": lambda L, x: L.isclose(x, x + 1e-9, equal_nan=True),
    "mm": lambda L, x: L.mm(x[:, :2], x[:, 1:].T),
    "dot": lambda L, x: L.dot(x[0], x[0]),
    "unbind": lambda L, x: L.stack(L.unbind(x, 1)),
    "new_zeros": lambda L, x: x.new_zeros(2, 3),
    "new_full": lambda L, x: x.new_full((2,), 7),
    "new_tensor": lambda L, x: x.new_tensor([1, 2]),
    "softmax-method": lambda L, x: x[:1].softmax(1),
    "log_softmax-method": lambda L, x: x[:1].log_softmax(-1),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_dtypes_match_pytorch(name):
    got = CASES[name](kiln, kiln.tensor(X, dtype=kiln.float64))
    want = CASES[name](torch, torch.tensor(X, dtype=torch.float64))
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    np.testing.assert_allclose(np.asarray(got.tolist(), float), want.double().numpy(),
                               rtol=1e-12, equal_nan=True)


GRADS = {
    "diag-1d": lambda L, x: L.diag(x[0], 1),
    "diag-2d": lambda L, x: L.diag(x, 1),
    "mm": lambda L, x: L.mm(x, x.T),
    "dot": lambda L, x: L.dot(x[0], x[1]),
    "square": lambda L, x: L.square(x),
    "unbind": lambda L, x: L.unbind(x, 0)[1] * 3,
}


@pytest.mark.parametrize("name", sorted(GRADS))
def test_gradients_match_pytorch(name):
    values = [[0.3, -1.2, 2.0], [1.5, 0.7, -0.4]]
    grads = []
    for L in (kiln, torch):
        x = L.tensor(values, dtype=L.float64, requires_grad=True)
        (GRADS[name](L, x) * L.tensor(1.7, dtype=L.float64)).sum().backward()
        grads.append(np.asarray(x.grad.tolist()))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


def test_predicates_and_errors():
    assert kiln.allclose(kiln.ones(2), kiln.ones(2) + 1e-9)
    assert not kiln.allclose(kiln.ones(2), kiln.ones(2) * 2)
    assert kiln.equal(kiln.ones(2), kiln.ones(2)) and not kiln.equal(kiln.ones(2), kiln.ones(3))
    assert kiln.ones(1).is_floating_point() and not kiln.tensor([1]).is_floating_point()
    with pytest.raises(RuntimeError, match="matrix"):
        kiln.mm(kiln.ones(3), kiln.ones(3, 1))
    with pytest.raises(RuntimeError, match="same dtype"):
        kiln.dot(kiln.ones(2), kiln.ones(2, dtype=kiln.float64))


@pytest.mark.parametrize("fn", ["floor", "ceil", "trunc", "round", "frac"])
def test_rounding_matches_pytorch_with_zero_gradients(fn):
    values = [-2.5, -1.5, -0.5, -0.2, 0.0, 0.5, 1.5, 2.5, 2.567, 1e10 + 0.5]
    for dtype in ("float32", "float64"):
        got = getattr(kiln, fn)(kiln.tensor(values, dtype=getattr(kiln, dtype)))
        want = getattr(torch, fn)(torch.tensor(values, dtype=getattr(torch, dtype)))
        np.testing.assert_array_equal(np.asarray(got.tolist()), want.numpy())
        jitted = kiln.jit(getattr(kiln, fn))(kiln.tensor(values, dtype=getattr(kiln, dtype)))
        np.testing.assert_array_equal(np.asarray(jitted.tolist()), want.numpy())
    x = kiln.tensor(values, requires_grad=True)
    getattr(kiln, fn)(x).sum().backward()
    assert x.grad.tolist() == ([1.0] * len(values) if fn == "frac" else [0.0] * len(values))
    assert getattr(kiln, fn)(kiln.tensor([3, -2])).tolist() == [0, 0] if fn == "frac" else \
        getattr(kiln, fn)(kiln.tensor([3, -2])).tolist() == [3, -2]


def test_round_to_decimals_matches_pytorch():
    x = [1.2345, -2.5678, 0.125]
    np.testing.assert_array_equal(np.asarray(kiln.round(kiln.tensor(x), decimals=2).tolist()),
                                  torch.round(torch.tensor(x), decimals=2).numpy())
