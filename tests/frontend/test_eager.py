"""Eager tensors: PyTorch-style API, printing, broadcasting/promotion, indexing."""
import numpy as np
import pytest

import kiln


def test_add_prints_like_pytorch():
    x = kiln.tensor([2.0, 3.0])
    y = kiln.tensor([4.0, 1.0])
    assert str(x + y) == "tensor([6., 4.])"


@pytest.mark.parametrize("make, text", [
    (lambda: kiln.tensor(3.0), "tensor(3.)"),
    (lambda: kiln.tensor(2), "tensor(2)"),
    (lambda: kiln.tensor([1.5, -2.25]), "tensor([ 1.5000, -2.2500])"),
    (lambda: kiln.tensor([True, False]), "tensor([ True, False])"),
    (lambda: kiln.tensor([[1, 2], [3, 4]]), "tensor([[1, 2],\n        [3, 4]])"),
    (lambda: kiln.zeros(2, dtype=kiln.float64), "tensor([0., 0.], dtype=kiln.float64)"),
    (lambda: kiln.ones(2, requires_grad=True), "tensor([1., 1.], requires_grad=True)"),
    (lambda: kiln.ones(2, requires_grad=True) * 2,
     "tensor([2., 2.], grad_fn=<MulBackward0>)"),
    (lambda: kiln.tensor([1e-5, 1e5]), "tensor([1.0000e-05, 1.0000e+05])"),
])
def test_printing(make, text):
    assert repr(make()) == text


def test_factories_and_properties():
    t = kiln.zeros(2, 3)
    assert t.shape == (2, 3) and t.size() == kiln.Size([2, 3]) and t.size(1) == 3
    assert t.dtype == kiln.float32 and t.ndim == 2 and str(t.device) == "cpu"
    assert kiln.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert kiln.arange(1, 2, 0.25).dtype == kiln.float32
    assert kiln.full((2,), 7).dtype == kiln.int64
    assert kiln.tensor([1, 2]).dtype == kiln.int64
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    assert kiln.from_numpy(a).dtype == kiln.float64
    assert kiln.tensor(5).item() == 5


def test_random_is_seeded():
    kiln.manual_seed(7)
    a = kiln.randn(100)
    kiln.manual_seed(7)
    b = kiln.randn(100)
    c = kiln.randn(100)
    assert np.array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(b.numpy(), c.numpy())
    u = kiln.rand(10000).numpy()
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    assert abs(float(kiln.randn(10000).std() if hasattr(kiln.Tensor, "std") else
                     np.std(kiln.randn(10000).numpy())) - 1) < 0.05


@pytest.mark.parametrize("a_shape, b_shape", [((3,), (3,)), ((2, 3), (3,)), ((4, 1), (1, 5)),
                                              ((2, 1, 3), (4, 1)), ((), (2, 2))])
def test_broadcasting_matches_numpy(a_shape, b_shape):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    for op in ("__add__", "__sub__", "__mul__", "__truediv__"):
        got = getattr(kiln.from_numpy(a), op)(kiln.from_numpy(b)).numpy()
        want = getattr(a, op)(b)
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_broadcast_error_names_shapes_and_line():
    x, y = kiln.ones(3), kiln.ones(4)
    with pytest.raises(kiln.ShapeError) as err:
        x + y  # the line the error must point at
    msg = str(err.value)
    assert "[3]" in msg and "[4]" in msg
    assert "test_eager.py" in msg and "the line the error must point at" in msg


def test_promotion_rules():
    i = kiln.tensor([1, 2])
    f = kiln.tensor([1.0, 2.0])
    d = kiln.tensor([1.0], dtype=kiln.float64)
    assert (i + f).dtype == kiln.float32
    assert (i + 1).dtype == kiln.int64
    assert (i + 1.5).dtype == kiln.float32
    assert (f + d).dtype == kiln.float64
    assert (f * 2).dtype == kiln.float32
    assert (i / 2).dtype == kiln.float32
    assert (i > 1).dtype == kiln.bool
    assert kiln.exp(i).dtype == kiln.float32
    assert kiln.tensor([True, True]).sum().item() == 2


def test_reductions():
    a = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    t = kiln.from_numpy(a)
    np.testing.assert_allclose(t.sum().numpy(), a.sum(), rtol=1e-5)
    np.testing.assert_allclose(t.sum(1).numpy(), a.sum(1), rtol=1e-5)
    np.testing.assert_allclose(t.mean((0, 2), keepdim=True).numpy(),
                               a.mean((0, 2), keepdims=True), rtol=1e-5)
    values, indices = kiln.max(t, 1)
    np.testing.assert_array_equal(values.numpy(), a.max(1))
    np.testing.assert_array_equal(indices.numpy(), a.argmax(1))
    np.testing.assert_array_equal(t.argmax().numpy(), a.argmax())
    np.testing.assert_array_equal(kiln.min(t, -1).indices.numpy(), a.argmin(-1))
    assert t.max().item() == a.max()
    with pytest.raises(kiln.KilnError, match="mean"):
        kiln.tensor([1, 2]).mean()


def test_movement():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = kiln.from_numpy(a)
    assert t.view(-1, 4).shape == (6, 4)
    np.testing.assert_array_equal(t.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.transpose(0, 2).numpy(), a.transpose(2, 1, 0))
    np.testing.assert_array_equal(t.T.numpy(), a.T)
    assert t.unsqueeze(1).shape == (2, 1, 3, 4)
    assert t.unsqueeze(1).squeeze().shape == (2, 3, 4)
    assert t.flatten().shape == (24,) and t.flatten(1).shape == (2, 12)
    np.testing.assert_array_equal(kiln.cat([t, t], 1).numpy(), np.concatenate([a, a], 1))
    np.testing.assert_array_equal(kiln.stack([t, t]).numpy(), np.stack([a, a]))
    with pytest.raises(kiln.ShapeError, match="invalid for input"):
        t.view(5, -1)


@pytest.mark.parametrize("index", [0, -1, (1, 2), (slice(None), 1), (slice(0, 3, 2),),
                                   (Ellipsis, 1), (None, 1), (slice(1, None), None, 0),
                                   (1, slice(None, None, 3))])
def test_indexing_matches_numpy(index):
    a = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    np.testing.assert_array_equal(kiln.from_numpy(a)[index].numpy(), a[index])


def test_indexing_errors():
    t = kiln.zeros(3, 4)
    with pytest.raises(IndexError, match="out of bounds"):
        t[3]
    with pytest.raises(IndexError, match="out of bounds"):
        t[kiln.tensor([5])]


@pytest.mark.parametrize("a_shape, b_shape", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)),
                                              ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
                                              ((5, 1, 2, 3), (4, 3, 2))])
def test_matmul_matches_numpy(a_shape, b_shape):
    rng = np.random.default_rng(2)
    a = rng.standard_normal(a_shape)
    b = rng.standard_normal(b_shape)
    got = (kiln.from_numpy(a) @ kiln.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, a @ b, rtol=1e-12)


def test_matmul_shape_error():
    with pytest.raises(kiln.ShapeError, match=r"\[2, 3\] and \[4, 5\]"):
        kiln.ones(2, 3) @ kiln.ones(4, 5)


def test_value_conversions():
    t = kiln.tensor([[1.0, 2.0]])
    assert t.tolist() == [[1.0, 2.0]]
    assert float(kiln.tensor(2.5)) == 2.5
    assert bool(kiln.tensor(True))
    with pytest.raises(kiln.KilnError, match="ambiguous"):
        bool(t)
    assert (t == kiln.tensor([[1.0, 5.0]])).tolist() == [[True, False]]
    assert ((t == 1.0).sum()).item() == 1


@pytest.mark.parametrize("a,b,dtype", [(1.0, 0.0, "float32"), (1, 0, "int64"),
                                       (True, False, "bool"), (2, 0.5, "float32")])
def test_where_of_two_python_scalars_takes_pytorchs_dtype(a, b, dtype):
    got = kiln.where(kiln.tensor([True, False]), a, b)
    assert got.dtype == getattr(kiln, dtype) and got.tolist() == [a, b]


def test_error_types_are_pytorchs():
    """Shape mismatches are RuntimeErrors and bad indices IndexErrors, as in PyTorch (and
    Kiln's own ShapeError, a ValueError, as before)."""
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        kiln.ones(2, 3) @ kiln.ones(2, 3)
    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        kiln.ones(2) + kiln.ones(3)
    with pytest.raises(ValueError):
        kiln.ones(2) + kiln.ones(3)
    with pytest.raises(IndexError):
        kiln.ones(2)[2]


def test_dtype_mismatches_raise_like_pytorch():
    """matmul does not promote (a float64 batch into a float32 Linear raises), and class
    targets must be int64, as in PyTorch."""
    with pytest.raises(RuntimeError, match="same dtype, but got: float != double"):
        kiln.ones(2, 3) @ kiln.ones(3, 2, dtype=kiln.float64)
    with pytest.raises(RuntimeError, match="same dtype"):
        kiln.nn.Linear(3, 4)(kiln.ones(2, 3, dtype=kiln.float64))
    with pytest.raises(RuntimeError, match="Long"):
        kiln.nn.functional.cross_entropy(kiln.ones(2, 3), kiln.tensor([0, 1], dtype=kiln.int32))


def test_wrong_arguments_name_the_users_line():
    """A NumPy array where a tensor is expected, an out-of-range class index and a
    non-string state dict key: PyTorch's exception types, with the user's line."""
    import kiln.nn.functional as F
    with pytest.raises(TypeError, match="must be Tensor, not numpy.ndarray") as e:
        kiln.relu(np.ones(2))
    assert "test_eager.py" in str(e.value)
    with pytest.raises(IndexError, match="Target 5 is out of bounds") as e:
        F.cross_entropy(kiln.ones(2, 3), kiln.tensor([0, 5]))
    assert "test_eager.py" in str(e.value)
    with pytest.raises(RuntimeError, match='Unexpected key.*"0"'):
        kiln.nn.Linear(2, 2).load_state_dict({0: kiln.ones(2)})
