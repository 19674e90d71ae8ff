"""ELU, Softplus, GroupNorm, Upsample / interpolate and the KL-divergence, smooth L1, Huber
and cosine-similarity losses: against PyTorch (values and gradients, float32 and float64),
against finite differences (float64), and their errors."""
import warnings

import numpy as np
import pytest
from nn_helpers import check_gradients, t64, torch_or_skip
from torch_compare import compare_with_torch

import kiln
import kiln.nn.functional as F
from kiln import nn


def _x(rng, shape, dtype=np.float64, scale=2.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ---- activations -----------------------------------------------------------------------------
ACTIVATIONS = [
    ("ELU", lambda nn: nn.ELU()),
    ("ELU-alpha", lambda nn: nn.ELU(alpha=0.3)),
    ("Softplus", lambda nn: nn.Softplus()),
    ("Softplus-beta-threshold", lambda nn: nn.Softplus(beta=2.0, threshold=3.0)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,make", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_matches_pytorch(name, make, dtype, rng):
    torch = torch_or_skip()
    x = _x(rng, (4, 5), dtype, scale=6.0)
    x[0, :3] = [0.0, -1e-7, 30.0]        # the branch points and the linear region
    compare_with_torch(make(nn), make(torch.nn), [x], rng)
    assert repr(make(nn)) == repr(make(torch.nn))


def test_activations_small_inputs_keep_relative_precision():
    torch = torch_or_skip()
    x = np.array([-1e-9, -3e-5, -0.05, -0.0999, 1e-8], np.float32)
    tiny = np.array([-40.0, -25.0, -17.0, -10.0, -3.0], np.float32)     # exp(x) tiny
    got = F.elu(kiln.tensor(x)).numpy()
    np.testing.assert_allclose(got, torch.nn.functional.elu(torch.tensor(x)).numpy(), rtol=2e-7)
    got = F.softplus(kiln.tensor(tiny)).numpy()
    want = torch.nn.functional.softplus(torch.tensor(tiny)).numpy()
    np.testing.assert_allclose(got, want, rtol=2e-7)


def test_elu_inplace_and_softplus_gradients_by_finite_differences(rng):
    x = t64(rng.standard_normal((3, 4)) * 3, requires_grad=True)
    check_gradients(lambda t: F.elu(t, alpha=0.7), x)
    check_gradients(lambda t: F.softplus(t, beta=1.5, threshold=2.0), x)
    y = kiln.tensor([-1.0, 2.0])
    assert F.elu(y, inplace=True) is y and y.tolist()[1] == 2.0


# ---- GroupNorm -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups,channels,shape,kw", [
    (2, 4, (3, 4, 5), {}), (1, 6, (2, 6, 3, 2), dict(bias=False)),
    (3, 3, (2, 3, 4), dict(affine=False, eps=1e-3))])
def test_group_norm_matches_pytorch(groups, channels, shape, kw, dtype, rng):
    torch = torch_or_skip()
    ours, theirs = nn.GroupNorm(groups, channels, **kw), \
        torch.nn.GroupNorm(groups, channels, **kw)
    if dtype == np.float64:
        ours, theirs = ours.double(), theirs.double()
    with torch.no_grad():
        for p in theirs.parameters():
            p.uniform_(0.5, 1.5)
    compare_with_torch(ours, theirs, [_x(rng, shape, dtype)], rng)
    assert repr(ours) == repr(theirs)


def test_group_norm_gradients_and_errors(rng):
    gn = nn.GroupNorm(2, 4).double()
    with kiln.no_grad():
        gn.weight.copy_(t64(rng.uniform(0.5, 1.5, 4)))
    assert check_gradients(gn, t64(rng.standard_normal((2, 4, 3)), requires_grad=True)) == \
        ["input 0", "weight", "bias"]
    with pytest.raises(ValueError, match="num_channels must be divisible by num_groups"):
        nn.GroupNorm(3, 4)
    with pytest.raises(kiln.KilnError, match="divisible by num_groups.*shape \\[2, 6\\]"):
        F.group_norm(kiln.ones(2, 6), 4)
    with pytest.raises(kiln.KilnError, match="weight of shape \\[4\\]"):
        F.group_norm(kiln.ones(2, 4), 2, weight=kiln.ones(3))


# ---- Upsample / interpolate ------------------------------------------------------------------
INTERPOLATIONS = [  # shape, keyword arguments
    ((2, 3, 5), dict(scale_factor=2)),
    ((2, 3, 5), dict(size=8, mode="linear")),
    ((2, 3, 5), dict(scale_factor=0.6, mode="linear", align_corners=True)),
    ((2, 3, 5), dict(size=7, mode="nearest-exact")),
    ((1, 2, 4, 5), dict(scale_factor=1.7)),
    ((1, 2, 4, 5), dict(size=(3, 7))),
    ((1, 2, 4, 5), dict(scale_factor=2, mode="bilinear")),
    ((1, 2, 4, 5), dict(scale_factor=(1.5, 0.7), mode="bilinear", align_corners=True)),
    ((1, 2, 4, 5), dict(size=(6, 9), mode="bilinear", align_corners=False)),
    ((1, 2, 4, 5), dict(scale_factor=1.3, mode="bilinear", recompute_scale_factor=True)),
    ((1, 2, 6, 5), dict(size=(3, 2), mode="area")),
    ((1, 2, 3, 4, 5), dict(scale_factor=2, mode="trilinear")),
    ((1, 2, 3, 4, 5), dict(size=(2, 5, 7))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kw", INTERPOLATIONS,
                         ids=[f"{len(s)}d-{'-'.join(map(str, k.values()))}"
                              for s, k in INTERPOLATIONS])
def test_interpolate_matches_pytorch(shape, kw, dtype, rng):
    torch = torch_or_skip()
    compare_with_torch(lambda x: F.interpolate(x, **kw),
                       lambda x: torch.nn.functional.interpolate(x, **kw),
                       [_x(rng, shape, dtype)], rng)


def test_upsample_modules_match_pytorch(rng):
    torch = torch_or_skip()
    x = _x(rng, (1, 2, 3, 4))
    for make in (lambda nn: nn.Upsample(scale_factor=2, mode="bilinear"),
                 lambda nn: nn.Upsample(size=(5, 6)),
                 lambda nn: nn.UpsamplingNearest2d(scale_factor=3),
                 lambda nn: nn.UpsamplingBilinear2d(size=(4, 7))):
        compare_with_torch(make(nn), make(torch.nn), [x], rng)
        assert repr(make(nn)) == repr(make(torch.nn))


def test_interpolate_gradients_by_finite_differences(rng):
    x = t64(rng.standard_normal((1, 1, 3, 4)), requires_grad=True)
    check_gradients(lambda t: F.interpolate(t, size=(5, 3), mode="bilinear"), x)
    check_gradients(lambda t: F.interpolate(t, scale_factor=1.5), x)


def test_interpolate_errors():
    x = kiln.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(x, size=2, scale_factor=2)
    with pytest.raises(ValueError, match="either size or scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(NotImplementedError, match="Got 4D input, but linear mode needs 3D"):
        F.interpolate(x, scale_factor=2, mode="linear")
    with pytest.raises(ValueError, match="same number of spatial dimensions"):
        F.interpolate(x, size=(2, 2, 2))
    with pytest.raises(kiln.NotSupportedError, match="not supported yet: .*bicubic"):
        F.interpolate(x, scale_factor=2, mode="bicubic")


# ---- losses ----------------------------------------------------------------------------------
def _log_probs(rng, shape, dtype):
    logits = rng.standard_normal(shape)
    return (logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(dtype)


def _probs(rng, shape, dtype):
    p = rng.uniform(0.05, 1.0, shape)
    return (p / p.sum(-1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "sum", "batchmean", "mean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_pytorch(reduction, log_target, dtype, rng):
    torch = torch_or_skip()
    inp, target = _log_probs(rng, (4, 5), dtype), _probs(rng, (4, 5), dtype)
    if log_target:
        target = np.log(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compare_with_torch(nn.KLDivLoss(reduction=reduction, log_target=log_target),
                           torch.nn.KLDivLoss(reduction=reduction, log_target=log_target),
                           [inp, target], rng)


def test_kl_div_zero_target_and_mean_warning():
    torch = torch_or_skip()
    inp = np.log(np.array([[0.2, 0.3, 0.5]]))
    target = np.array([[0.0, 0.4, 0.6]])
    ours = kiln.tensor(inp, requires_grad=True)
    loss = F.kl_div(ours, kiln.tensor(target), reduction="batchmean")
    loss.backward()
    theirs = torch.tensor(inp, requires_grad=True)
    want = torch.nn.functional.kl_div(theirs, torch.tensor(target), reduction="batchmean")
    want.backward()
    np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-12)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
        F.kl_div(ours, kiln.tensor(target))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [
    lambda nn: nn.SmoothL1Loss(), lambda nn: nn.SmoothL1Loss(reduction="sum", beta=0.5),
    lambda nn: nn.SmoothL1Loss(reduction="none", beta=0.0), lambda nn: nn.HuberLoss(),
    lambda nn: nn.HuberLoss(reduction="none", delta=0.3),
    lambda nn: nn.HuberLoss(reduction="sum", delta=2.5)],
    ids=["smooth-l1", "smooth-l1-sum-beta", "smooth-l1-beta0", "huber", "huber-none-delta",
         "huber-sum-delta"])
def test_robust_losses_match_pytorch(make, dtype, rng):
    torch = torch_or_skip()
    compare_with_torch(make(nn), make(torch.nn), [_x(rng, (3, 4), dtype), _x(rng, (3, 4),
                                                                             dtype)], rng)
    assert repr(make(nn)) == repr(make(torch.nn))


def test_huber_weight_broadcast_and_errors(rng):
    torch = torch_or_skip()
    x, y, w = _x(rng, (3, 4)), _x(rng, (4,)), rng.uniform(0, 1, (3, 4))
    with pytest.warns(UserWarning, match="different to the input size"):
        compare_with_torch(lambda a, b: F.huber_loss(a, b, weight=kiln.tensor(w)),
                           lambda a, b: torch.nn.functional.huber_loss(
                               a, b, weight=torch.tensor(w)), [x, y], rng)
    with pytest.raises(RuntimeError, match="negative values for beta"):
        F.smooth_l1_loss(kiln.ones(2), kiln.ones(2), beta=-1.0)
    with pytest.raises(ValueError, match="Weights and input must have the same size"):
        F.huber_loss(kiln.ones(2), kiln.ones(2), weight=kiln.ones(3))
    with pytest.raises(RuntimeError, match="non-positive values for delta"):
        F.huber_loss(kiln.ones(2), kiln.ones(2), delta=0.0)


def test_robust_losses_gradients_by_finite_differences(rng):
    x = t64(rng.standard_normal((3, 4)) * 2, requires_grad=True)
    y = t64(rng.standard_normal((3, 4)) * 2, requires_grad=True)
    check_gradients(lambda a, b: F.smooth_l1_loss(a, b, beta=0.7), x, y)
    check_gradients(lambda a, b: F.huber_loss(a, b, delta=0.7, reduction="sum"), x, y)
    logq = t64(_log_probs(rng, (2, 3), np.float64), requires_grad=True)
    p = t64(_probs(rng, (2, 3), np.float64), requires_grad=True)
    check_gradients(lambda a, b: F.kl_div(a, b, reduction="batchmean"), logq, p)
    check_gradients(lambda a, b: F.kl_div(a, b, reduction="sum", log_target=True), logq,
                    t64(np.log(p.detach().numpy()), requires_grad=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes,dim", [(((4, 5), (4, 5)), 1), (((2, 3, 4), (3, 4)), -1),
                                        (((2, 1, 4), (2, 3, 1)), 0)])
def test_cosine_similarity_matches_pytorch(shapes, dim, dtype, rng):
    torch = torch_or_skip()
    a, b = (_x(rng, s, dtype) for s in shapes)
    compare_with_torch(nn.CosineSimilarity(dim=dim), torch.nn.CosineSimilarity(dim=dim),
                       [a, b], rng)


def test_cosine_similarity_clamps_small_norms_like_pytorch(rng):
    torch = torch_or_skip()
    a = np.array([[1e-9, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    b = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [-1.0, 0.5, 2.0]])
    compare_with_torch(F.cosine_similarity, torch.nn.functional.cosine_similarity, [a, b], rng,
                       tol=(1e-10, 1e-8))
    x = t64(rng.standard_normal((3, 4)), requires_grad=True)
    check_gradients(lambda u, v: F.cosine_similarity(u, v, dim=0), x,
                    t64(rng.standard_normal((3, 4)), requires_grad=True))


# ---- @kiln.jit: the layers and losses above in one compiled training step --------------------
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.GroupNorm(2, 4)
        self.body = nn.Sequential(nn.ELU(0.5), nn.Upsample(scale_factor=2, mode="linear"),
                                  nn.Softplus(beta=2.0), nn.Flatten(), nn.Linear(48, 3))

    def forward(self, x):
        return self.body(self.norm(x))


def _train_net(batches, jit: bool):
    kiln.manual_seed(0)
    net = _Net()
    opt = kiln.optim.SGD(net.parameters(), lr=0.1)

    def step(x, target):
        opt.zero_grad()
        out = net(x)
        loss = (F.huber_loss(out, target, delta=0.5) + F.smooth_l1_loss(out, target, beta=0.5)
                + F.kl_div(F.log_softmax(out, 1), F.softmax(target, 1), reduction="batchmean")
                + (1 - F.cosine_similarity(out, target)).mean())
        loss.backward()
        opt.step()
        return loss

    run = kiln.jit(step) if jit else step
    return net, [run(x, t).item() for x, t in batches], run


def test_layers_and_losses_compile_in_a_training_step(rng):
    from kiln.frontend.jit import KilnJitWarning
    batches = [(kiln.tensor(_x(rng, (5, 4, 6), np.float32)),
                kiln.tensor(_x(rng, (5, 3), np.float32))) for _ in range(3)]
    eager, eager_losses, _ = _train_net(batches, jit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)          # no fallback, no break
        jitted, jit_losses, step = _train_net(batches, jit=True)
    assert step.traces == 1
    np.testing.assert_allclose(jit_losses, eager_losses, rtol=1e-5)
    for key, value in eager.state_dict().items():
        np.testing.assert_allclose(jitted.state_dict()[key].numpy(), value.numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=key)
