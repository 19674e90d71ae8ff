"""kiln.nn layers: forward against NumPy references, and the gradient of every layer's
parameters and input against central finite differences in float64."""
import math

import numpy as np
import pytest
from nn_helpers import check_gradients, t64

import kiln
from kiln import nn

_erf = np.vectorize(math.erf)


def _params(module) -> dict:
    return {k: v.detach().numpy() for k, v in module.named_parameters()}


def _randomize(module, rng):
    """Random float64 parameters (BatchNorm's default weight 1 and bias 0 hide mistakes)."""
    module.double()
    with kiln.no_grad():
        for p in module.parameters():
            p.copy_(kiln.from_numpy(rng.uniform(0.5, 1.5, tuple(p.shape))
                                    * rng.choice([-1.0, 1.0], tuple(p.shape))))
    return module


def _away_from_kinks(rng, shape):
    """|x| in [0.2, 2): no input at the kink of relu/leaky_relu."""
    return rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_batch_norm(x, p, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return y * p["weight"].reshape(shape) + p["bias"].reshape(shape)


def _np_layer_norm(x, p, dims, eps=1e-5):
    axes = tuple(range(x.ndim - dims, x.ndim))
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return y * p["weight"] + p["bias"]


# name, module factory, input shape, NumPy reference (x, params) -> y
FORWARD = [
    ("Linear", lambda: nn.Linear(3, 2), (4, 3), lambda x, p: x @ p["weight"].T + p["bias"]),
    ("Linear-3d-no-bias", lambda: nn.Linear(3, 2, bias=False), (2, 4, 3),
     lambda x, p: x @ p["weight"].T),
    ("Linear-1d", lambda: nn.Linear(3, 2), (3,), lambda x, p: p["weight"] @ x + p["bias"]),
    ("ReLU", nn.ReLU, (3, 4), lambda x, p: np.maximum(x, 0)),
    ("LeakyReLU", lambda: nn.LeakyReLU(0.2), (3, 4), lambda x, p: np.where(x > 0, x, 0.2 * x)),
    ("GELU", nn.GELU, (3, 4), lambda x, p: x * 0.5 * (1 + _erf(x / math.sqrt(2)))),
    ("GELU-tanh", lambda: nn.GELU("tanh"), (3, 4),
     lambda x, p: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    ("SiLU", nn.SiLU, (3, 4), lambda x, p: x / (1 + np.exp(-x))),
    ("Sigmoid", nn.Sigmoid, (3, 4), lambda x, p: 1 / (1 + np.exp(-x))),
    ("Tanh", nn.Tanh, (3, 4), lambda x, p: np.tanh(x)),
    ("Softmax", lambda: nn.Softmax(dim=1), (2, 3, 2), lambda x, p: _np_softmax(x, 1)),
    ("LogSoftmax", lambda: nn.LogSoftmax(dim=-1), (3, 4),
     lambda x, p: np.log(_np_softmax(x, -1))),
    ("Identity", nn.Identity, (2, 3), lambda x, p: x),
    ("Flatten", nn.Flatten, (2, 3, 2), lambda x, p: x.reshape(2, 6)),
    ("Flatten-0-1", lambda: nn.Flatten(0, 1), (2, 3, 2), lambda x, p: x.reshape(6, 2)),
    ("Unflatten", lambda: nn.Unflatten(1, (2, 3)), (2, 6), lambda x, p: x.reshape(2, 2, 3)),
    ("Dropout-eval", lambda: nn.Dropout(0.5).eval(), (3, 4), lambda x, p: x),
    ("Dropout-p0", lambda: nn.Dropout(0.0), (3, 4), lambda x, p: x),
    ("BatchNorm1d-2d", lambda: nn.BatchNorm1d(3), (5, 3), _np_batch_norm),
    ("BatchNorm1d-3d", lambda: nn.BatchNorm1d(3), (4, 3, 2), _np_batch_norm),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(2), (3, 2, 2, 3), _np_batch_norm),
    ("LayerNorm", lambda: nn.LayerNorm(4), (3, 4), lambda x, p: _np_layer_norm(x, p, 1)),
    ("LayerNorm-2d", lambda: nn.LayerNorm((3, 4)), (2, 3, 4),
     lambda x, p: _np_layer_norm(x, p, 2)),
]


@pytest.mark.parametrize("name,make,shape,ref", FORWARD, ids=[f[0] for f in FORWARD])
def test_forward_matches_numpy(name, make, shape, ref, rng):
    module = _randomize(make(), rng)
    x = _away_from_kinks(rng, shape)
    got = module(t64(x))
    np.testing.assert_allclose(got.detach().numpy(), ref(x, _params(module)), rtol=1e-12,
                               atol=1e-12)
    assert got.dtype == kiln.float64


GRADIENTS = [f[:3] for f in FORWARD] + [
    ("Dropout-train", lambda: nn.Dropout(0.4), (3, 4)),
    ("BatchNorm1d-no-affine", lambda: nn.BatchNorm1d(3, affine=False), (4, 3)),
    ("BatchNorm2d-eval", lambda: _with_running_stats(nn.BatchNorm2d(2)).eval(), (2, 2, 2, 2)),
    ("BatchNorm1d-no-stats-eval", lambda: nn.BatchNorm1d(2, track_running_stats=False).eval(),
     (3, 2)),
    ("LayerNorm-no-bias", lambda: nn.LayerNorm(3, bias=False), (2, 3)),
    ("MLP", lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), (2, 3)),
]


def _with_running_stats(bn):
    with kiln.no_grad():
        bn.running_mean.copy_(kiln.tensor([0.3, -0.2]))
        bn.running_var.copy_(kiln.tensor([0.5, 2.0]))
    return bn


@pytest.mark.parametrize("name,make,shape", GRADIENTS, ids=[g[0] for g in GRADIENTS])
def test_gradients_match_finite_differences(name, make, shape, rng):
    module = _randomize(make(), rng)
    x = t64(_away_from_kinks(rng, shape), requires_grad=True)
    checked = check_gradients(module, x, rng=rng)
    assert checked == ["input 0"] + [k for k, _ in module.named_parameters()]


def test_embedding_forward_and_gradients(rng):
    emb = _randomize(nn.Embedding(5, 3), rng)
    ids = kiln.tensor([[0, 4, 4], [2, 0, 1]])
    np.testing.assert_array_equal(emb(ids).detach().numpy(), _params(emb)["weight"][ids.numpy()])
    assert check_gradients(emb, ids, rng=rng) == ["weight"]


def test_embedding_padding_row_is_zero_and_gets_no_gradient(rng):
    emb = nn.Embedding(5, 3, padding_idx=-4).double()      # -4 means row 1
    assert emb.padding_idx == 1
    np.testing.assert_array_equal(emb.weight.detach().numpy()[1], 0.0)
    ids = np.array([[1, 3, 1], [3, 0, 4]])
    cot = rng.standard_normal((2, 3, 3))
    (emb(kiln.tensor(ids)) * t64(cot)).sum().backward()
    want = np.zeros((5, 3))
    np.add.at(want, ids.reshape(-1), cot.reshape(-1, 3))
    want[1] = 0.0
    np.testing.assert_allclose(emb.weight.grad.numpy(), want, rtol=1e-12)


def test_embedding_rejects_bad_ids():
    emb = nn.Embedding(4, 2)
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 0 with size 4"):
        emb(kiln.tensor([1, 4]))
    with pytest.raises(kiln.KilnError, match="integer indices"):
        emb(kiln.tensor([1.0]))
    with pytest.raises(ValueError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(4, 2, padding_idx=4)


def test_embedding_from_pretrained():
    weight = kiln.tensor([[1.0, 2.0], [3.0, 4.0]])
    emb = nn.Embedding.from_pretrained(weight)
    assert not emb.weight.requires_grad
    assert emb(kiln.tensor([1, 1, 0])).tolist() == [[3.0, 4.0], [3.0, 4.0], [1.0, 2.0]]
    assert nn.Embedding.from_pretrained(weight, freeze=False).weight.requires_grad


def test_dropout_training_masks_and_scales():
    drop = nn.Dropout(p=0.25)
    x = kiln.ones(200, 100)
    y = drop(x).numpy()
    assert set(np.unique(y).tolist()) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01        # 20,000 draws: std 0.003
    assert drop(x).numpy().tolist() != y.tolist()      # a fresh mask per call
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).numpy(), 0.0)
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)


def test_dropout_is_reproducible_under_manual_seed():
    kiln.manual_seed(7)
    a = nn.functional.dropout(kiln.ones(50)).numpy()
    kiln.manual_seed(7)
    np.testing.assert_array_equal(nn.functional.dropout(kiln.ones(50)).numpy(), a)


def test_relu_inplace_rebinds_the_input():
    x = kiln.tensor([-1.0, 2.0])
    y = nn.ReLU(inplace=True)(x)
    assert y is x and x.tolist() == [0.0, 2.0]


def test_linear_shape_error_names_both_shapes():
    with pytest.raises(kiln.ShapeError, match=r"\(4x5 and 3x2\).*\[4, 5\].*\[2, 3\]"):
        nn.Linear(3, 2)(kiln.ones(4, 5))


@pytest.mark.parametrize("make,shape,match", [
    (lambda: nn.BatchNorm1d(3), (2, 3, 4, 5), r"expected 2D or 3D input \(got 4D input\)"),
    (lambda: nn.BatchNorm2d(3), (2, 3), r"expected 4D input \(got 2D input\)"),
    (lambda: nn.BatchNorm1d(3), (1, 3), r"more than 1 value per channel.*\[1, 3\]"),
    (lambda: nn.BatchNorm1d(4), (2, 3), "should contain 3 elements not 4"),
    (lambda: nn.LayerNorm(4), (2, 3), r"normalized_shape \[4\]"),
])
def test_normalization_errors(make, shape, match):
    with pytest.raises((ValueError, kiln.KilnError), match=match):
        make()(kiln.ones(*shape))


def test_softmax_without_dim_warns_and_picks_pytorchs_dim():
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        y = nn.Softmax()(kiln.zeros(2, 4))
    np.testing.assert_allclose(y.numpy(), 0.25)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate argument must be either none or tanh"):
        nn.GELU("fast")(kiln.ones(2))
