"""Losses: values against NumPy references written from PyTorch's documented formulas,
input gradients against central finite differences (float64), options and errors."""
import warnings

import numpy as np
import pytest
from nn_helpers import check_gradients, t64

import kiln
from kiln import nn
from kiln.nn import functional as F


def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def np_cross_entropy(x, t, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0):
    """Class indices: (1 - s) * NLL + s / C * (-sum_c w_c logp_c), PyTorch's normalization."""
    if x.ndim == 1:     # unbatched: one sample of shape [C]
        out = np_cross_entropy(x[None], np.asarray(t)[None], weight, ignore_index, reduction,
                               smoothing)
        return out[0] if reduction == "none" else out
    classes = x.shape[1]
    logp = np.moveaxis(_log_softmax(x, 1), 1, -1)          # [N, d..., C]
    w = np.ones(classes) if weight is None else weight
    keep = t != ignore_index
    safe = np.where(keep, t, 0)
    w_t = w[safe] * keep
    nll = -np.take_along_axis(logp, safe[..., None], -1)[..., 0] * w_t
    smooth = -(logp * w).sum(-1) * keep
    if reduction == "mean":
        nll, smooth = nll.sum() / w_t.sum(), smooth.sum() / w_t.sum()
    elif reduction == "sum":
        nll, smooth = nll.sum(), smooth.sum()
    return (1 - smoothing) * nll + smoothing / classes * smooth


def np_soft_cross_entropy(x, p, weight=None, reduction="mean", smoothing=0.0):
    axis = 1 if x.ndim > 1 else 0
    classes = x.shape[axis]
    p = p * (1 - smoothing) + smoothing / classes
    w = 1.0 if weight is None else weight.reshape([-1 if i == axis else 1
                                                   for i in range(x.ndim)])
    loss = -(_log_softmax(x, axis) * w * p).sum(axis)
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


def _reduce(loss, reduction):
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


CE_CASES = [  # id, input shape, ignore_index, use weight, reduction, label_smoothing
    ("plain", (5, 4), -100, False, "mean", 0.0),
    ("weighted-sum", (5, 4), -100, True, "sum", 0.0),
    ("ignore-weighted", (6, 3), 1, True, "mean", 0.0),
    ("ignore-none", (6, 3), 2, False, "none", 0.0),
    ("smoothing", (5, 4), -100, False, "mean", 0.2),
    ("smoothing-weighted-ignore", (6, 4), 0, True, "mean", 0.1),
    ("smoothing-none", (4, 3), 1, True, "none", 0.3),
    ("spatial", (2, 3, 2, 2), -100, True, "mean", 0.1),
    ("unbatched", (4,), -100, False, "mean", 0.0),
]


def _targets(rng, shape, ignore_index):
    classes = shape[1] if len(shape) > 1 else shape[0]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, classes, tshape)
    if ignore_index >= 0 and t.ndim:
        t.flat[0] = ignore_index                # NOTE: at least one ignored target
    return t


@pytest.mark.parametrize("case", CE_CASES, ids=[c[0] for c in CE_CASES])
def test_cross_entropy_with_class_indices(case, rng):
    _, shape, ignore, use_weight, reduction, smoothing = case
    x = rng.standard_normal(shape)
    t = _targets(rng, shape, ignore)
    classes = shape[1] if len(shape) > 1 else shape[0]
    w = rng.uniform(0.5, 2.0, classes) if use_weight else None
    loss_fn = nn.CrossEntropyLoss(weight=None if w is None else t64(w), ignore_index=ignore,
                                  reduction=reduction, label_smoothing=smoothing)
    got = loss_fn(t64(x), kiln.tensor(t))
    want = np_cross_entropy(x, t, w, ignore, reduction, smoothing)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-14)
    check_gradients(lambda x: loss_fn(x, kiln.tensor(t)), t64(x, True), rng=rng)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_cross_entropy_on_log_probabilities(reduction, rng):
    x = rng.standard_normal((6, 4))
    t = _targets(rng, (6, 4), 3)
    w = rng.uniform(0.5, 2.0, 4)
    logp = F.log_softmax(t64(x), dim=1)
    got = nn.NLLLoss(t64(w), ignore_index=3, reduction=reduction)(logp, kiln.tensor(t))
    np.testing.assert_allclose(got.numpy(), np_cross_entropy(x, t, w, 3, reduction),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("smoothing,weighted,reduction", [(0.0, False, "mean"),
                                                          (0.25, True, "sum"),
                                                          (0.1, True, "none")])
def test_cross_entropy_with_probabilities(smoothing, weighted, reduction, rng):
    x = rng.standard_normal((4, 3))
    p = rng.dirichlet(np.ones(3), 4)
    w = rng.uniform(0.5, 2.0, 3) if weighted else None
    fn = nn.CrossEntropyLoss(None if w is None else t64(w), reduction=reduction,
                             label_smoothing=smoothing)
    got = fn(t64(x), t64(p))
    np.testing.assert_allclose(got.detach().numpy(),
                               np_soft_cross_entropy(x, p, w, reduction, smoothing), rtol=1e-12)
    check_gradients(lambda x: fn(x, t64(p)), t64(x, True), rng=rng)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_cross_entropy_all_targets_ignored_is_nan_like_pytorch():
    loss = F.cross_entropy(kiln.zeros(2, 3), kiln.tensor([-100, -100]))
    assert np.isnan(loss.item())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(reduction, rng):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    mse, l1 = nn.MSELoss(reduction=reduction), nn.L1Loss(reduction=reduction)
    np.testing.assert_allclose(mse(t64(x), t64(y)).numpy(), _reduce((x - y) ** 2, reduction),
                               rtol=1e-12)
    np.testing.assert_allclose(l1(t64(x), t64(y)).numpy(), _reduce(abs(x - y), reduction),
                               rtol=1e-12)
    check_gradients(lambda x: mse(x, t64(y)), t64(x, True), rng=rng)
    check_gradients(lambda x: l1(x, t64(y)), t64(x, True), rng=rng)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy(reduction, rng):
    p, y = rng.uniform(0.05, 0.95, (3, 4)), rng.uniform(0, 1, (3, 4))
    w = rng.uniform(0.5, 2, (3, 4))
    fn = nn.BCELoss(weight=t64(w), reduction=reduction)
    want = _reduce(-w * (y * np.log(p) + (1 - y) * np.log(1 - p)), reduction)
    np.testing.assert_allclose(fn(t64(p), t64(y)).numpy(), want, rtol=1e-12)
    check_gradients(lambda p: fn(p, t64(y)), t64(p, True), rng=rng)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_binary_cross_entropy_clamps_log_at_minus_100():
    loss = F.binary_cross_entropy(kiln.tensor([0.0, 1.0]), kiln.tensor([1.0, 0.0]),
                                  reduction="none")
    assert loss.tolist() == [100.0, 100.0]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_with_logits(reduction, rng):
    x = np.concatenate([rng.standard_normal(6) * 3, [0.0, 0.0]]).reshape(2, 4)
    y = rng.uniform(0, 1, (2, 4))
    pos, w = rng.uniform(0.5, 3, 4), rng.uniform(0.5, 2, (2, 4))
    fn = nn.BCEWithLogitsLoss(weight=t64(w), pos_weight=t64(pos), reduction=reduction)
    s = 1 / (1 + np.exp(-x))
    want = _reduce(-w * (pos * y * np.log(s) + (1 - y) * np.log(1 - s)), reduction)
    np.testing.assert_allclose(fn(t64(x), t64(y)).numpy(), want, rtol=1e-12)
    check_gradients(lambda x: fn(x, t64(y)), t64(x, True), rng=rng)


def test_bce_with_logits_is_stable_and_exact_at_zero():
    x = kiln.tensor([1000.0, -1000.0, 0.0, 0.0], requires_grad=True)
    y = kiln.tensor([0.0, 1.0, 1.0, 0.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [1000.0, 1000.0, np.log(2), np.log(2)],
                               rtol=1e-6)
    loss.sum().backward()
    # NOTE: d/dx = sigmoid(x) - y, also at the kink of max(-x, 0) (zero logits)
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -1.0, -0.5, 0.5], rtol=1e-6)


def test_loss_errors_are_clear():
    with pytest.raises(kiln.ShapeError, match=r"expected target of shape \[3\].*\[3, 5\].*\[4\]"):
        F.cross_entropy(kiln.zeros(3, 5), kiln.tensor([0, 1, 2, 3]))
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        F.cross_entropy(kiln.zeros(2, 5), kiln.tensor([1, 7]))
    with pytest.raises(kiln.ShapeError, match="all 5 classes or no classes.*\\[3\\]"):
        F.cross_entropy(kiln.zeros(2, 5), kiln.tensor([1, 2]), weight=kiln.ones(3))
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        F.cross_entropy(kiln.zeros(2, 5), kiln.tensor([1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.mse_loss(kiln.zeros(2), kiln.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match=r"Target size \(kiln.Size\(\[2\]\)\) must be the same"):
        F.binary_cross_entropy_with_logits(kiln.zeros(2, 1), kiln.zeros(2))
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(kiln.zeros(2, 1), kiln.zeros(2))


def test_legacy_size_average_and_reduce_flags():
    with pytest.warns(UserWarning, match="reduction='sum' instead"):
        fn = nn.MSELoss(size_average=False)
    assert fn.reduction == "sum"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert nn.L1Loss(reduce=False).reduction == "none"
        assert F.cross_entropy(kiln.zeros(2, 3), kiln.tensor([0, 1]), reduce=False).shape == (2,)


def test_weight_is_a_buffer_in_the_state_dict():
    fn = nn.CrossEntropyLoss(weight=kiln.tensor([1.0, 2.0]))
    assert list(fn.state_dict()) == ["weight"]
    assert list(nn.BCEWithLogitsLoss(pos_weight=kiln.ones(2)).state_dict()) == ["pos_weight"]


def test_one_hot():
    out = F.one_hot(kiln.tensor([[0, 2], [1, 0]]))
    assert out.dtype == kiln.int64 and out.shape == (2, 2, 3)
    assert out.tolist() == [[[1, 0, 0], [0, 0, 1]], [[0, 1, 0], [1, 0, 0]]]
    assert F.one_hot(kiln.tensor([1]), num_classes=4).tolist() == [[0, 1, 0, 0]]
    with pytest.raises(IndexError, match="index 3 is out of bounds"):
        F.one_hot(kiln.tensor([3]), num_classes=3)
    with pytest.raises(IndexError, match="index -1 is out of bounds"):
        F.one_hot(kiln.tensor([-1]), num_classes=3)
    with pytest.raises(kiln.KilnError, match="LongTensor"):
        F.one_hot(kiln.tensor([1.0]))
