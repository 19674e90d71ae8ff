"""kiln.nn against PyTorch (skipped with the reason where PyTorch is not installed): the same
weights and inputs give the same outputs, gradients, running statistics, losses, state-dict
keys, load errors and reprs (float64, rtol 1e-10)."""
import re
from collections import OrderedDict

import numpy as np
import pytest
from nn_helpers import t64, torch_or_skip

import kiln
from kiln import nn

RTOL, ATOL = 1e-10, 1e-12


def _copy_weights(ours, theirs):
    """PyTorch module <- kiln module's state dict (same key names: part of what is tested)."""
    torch = torch_or_skip()
    state = {k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)


def _close(a, b, what):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL,
                               err_msg=what)


def _compare(ours, theirs, x, rng):
    """Forward, input gradient and every parameter gradient for one random cotangent."""
    torch = torch_or_skip()
    _copy_weights(ours, theirs)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    cot = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(cot))
    kx = t64(x, requires_grad=True)
    ky = ours(kx)
    (ky * t64(cot)).sum().backward()
    _close(ky.detach().numpy(), ty.detach().numpy(), "output")
    _close(kx.grad.numpy(), tx.grad.numpy(), "input gradient")
    theirs_params = dict(theirs.named_parameters())
    assert [k for k, _ in ours.named_parameters()] == list(theirs_params)
    for name, p in ours.named_parameters():
        _close(p.grad.numpy(), theirs_params[name].grad.numpy(), f"gradient of {name}")


LAYERS = [  # id, factory over an nn namespace (kiln.nn or torch.nn), input shape
    ("Linear", lambda nn: nn.Linear(3, 4), (5, 3)),
    ("Linear-3d-nobias", lambda nn: nn.Linear(3, 2, bias=False), (2, 4, 3)),
    ("GELU", lambda nn: nn.GELU(), (3, 4)),
    ("GELU-tanh", lambda nn: nn.GELU(approximate="tanh"), (3, 4)),
    ("SiLU", lambda nn: nn.SiLU(), (3, 4)),
    ("LeakyReLU", lambda nn: nn.LeakyReLU(0.1), (3, 4)),
    ("Softmax", lambda nn: nn.Softmax(dim=0), (3, 4)),
    ("LogSoftmax", lambda nn: nn.LogSoftmax(dim=1), (2, 3, 4)),
    ("BatchNorm1d-2d", lambda nn: nn.BatchNorm1d(3), (6, 3)),
    ("BatchNorm1d-3d", lambda nn: nn.BatchNorm1d(3, momentum=None), (2, 3, 5)),
    ("BatchNorm2d", lambda nn: nn.BatchNorm2d(2, eps=1e-3), (3, 2, 4, 3)),
    ("BatchNorm2d-no-affine", lambda nn: nn.BatchNorm2d(2, affine=False), (3, 2, 2, 2)),
    ("LayerNorm", lambda nn: nn.LayerNorm([3, 4]), (2, 3, 4)),
    ("LayerNorm-no-bias", lambda nn: nn.LayerNorm(4, bias=False), (2, 4)),
    ("MLP", lambda nn: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.0),
                                     nn.Linear(8, 8), nn.Tanh(), nn.Flatten(0),
                                     nn.Unflatten(0, (2, 24))), (6, 4)),
]


@pytest.mark.parametrize("name,make,shape", LAYERS, ids=[c[0] for c in LAYERS])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_matches_pytorch(name, make, shape, mode, rng):
    torch = torch_or_skip()
    ours, theirs = make(nn).double(), make(torch.nn).double()
    with kiln.no_grad():
        for p in ours.parameters():
            p.copy_(t64(rng.uniform(0.5, 1.5, tuple(p.shape))))
    if mode == "eval":
        ours.train()(t64(rng.standard_normal(shape)))      # move running statistics first
        ours.eval(), theirs.eval()
    _compare(ours, theirs, rng.standard_normal(shape), rng)


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batch_norm_running_statistics_match_pytorch(momentum, rng):
    torch = torch_or_skip()
    ours = nn.BatchNorm2d(3, momentum=momentum).double()
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum).double()
    for _ in range(3):
        x = rng.standard_normal((4, 3, 2, 2)) * 2 + 1
        ours(t64(x)), theirs(torch.tensor(x))
    theirs_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        _close(value.numpy(), theirs_state[key].numpy(), key)
    assert ours.num_batches_tracked.item() == 3


def test_embedding_matches_pytorch(rng):
    torch = torch_or_skip()
    ours = nn.Embedding(6, 3, padding_idx=2).double()
    theirs = torch.nn.Embedding(6, 3, padding_idx=2).double()
    _copy_weights(ours, theirs)
    ids = rng.integers(0, 6, (3, 4))
    ids[0, 0] = 2
    cot = rng.standard_normal((3, 4, 3))
    ty = theirs(torch.tensor(ids))
    ty.backward(torch.tensor(cot))
    ky = ours(kiln.tensor(ids))
    (ky * t64(cot)).sum().backward()
    _close(ky.detach().numpy(), ty.detach().numpy(), "output")
    _close(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), "weight gradient")


LOSSES = [  # id, factory over (nn, weight tensor maker), logits shape, target kind
    ("ce", lambda nn, w: nn.CrossEntropyLoss(), (5, 4), "index"),
    ("ce-weight-ignore-smooth", lambda nn, w: nn.CrossEntropyLoss(
        weight=w(4), ignore_index=1, label_smoothing=0.15), (6, 4), "index"),
    ("ce-sum-smooth", lambda nn, w: nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.3),
     (5, 3), "index"),
    ("ce-none-weight", lambda nn, w: nn.CrossEntropyLoss(weight=w(3), reduction="none"),
     (4, 3), "index"),
    ("ce-spatial", lambda nn, w: nn.CrossEntropyLoss(weight=w(3), ignore_index=0),
     (2, 3, 2, 3), "index"),
    ("ce-unbatched", lambda nn, w: nn.CrossEntropyLoss(label_smoothing=0.1), (5,), "index"),
    ("ce-probs-smooth-weight", lambda nn, w: nn.CrossEntropyLoss(weight=w(4),
                                                                 label_smoothing=0.2),
     (3, 4), "probs"),
    ("nll-weight-ignore", lambda nn, w: nn.NLLLoss(weight=w(4), ignore_index=2), (6, 4),
     "index"),
    ("mse", lambda nn, w: nn.MSELoss(), (3, 4), "same"),
    ("l1-sum", lambda nn, w: nn.L1Loss(reduction="sum"), (3, 4), "same"),
    ("bce-weight", lambda nn, w: nn.BCELoss(weight=w(4)), (3, 4), "prob-input"),
    ("bce-logits-pos-weight", lambda nn, w: nn.BCEWithLogitsLoss(weight=w(4),
                                                                 pos_weight=w(4)),
     (3, 4), "same01"),
]


def _loss_inputs(kind, shape, rng):
    if kind == "index":
        classes = shape[1] if len(shape) > 1 else shape[0]
        tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
        return rng.standard_normal(shape), rng.integers(0, classes, tshape)
    if kind == "probs":
        return rng.standard_normal(shape), rng.dirichlet(np.ones(shape[1]), shape[0])
    if kind == "prob-input":
        return rng.uniform(0.05, 0.95, shape), rng.uniform(0, 1, shape)
    return rng.standard_normal(shape), rng.uniform(0, 1, shape)


@pytest.mark.parametrize("name,make,shape,kind", LOSSES, ids=[c[0] for c in LOSSES])
def test_loss_matches_pytorch(name, make, shape, kind, rng):
    torch = torch_or_skip()
    x, target = _loss_inputs(kind, shape, rng)
    weights = rng.uniform(0.5, 2.0, 8)
    ours = make(nn, lambda n: t64(weights[:n]))
    theirs = make(torch.nn, lambda n: torch.tensor(weights[:n]))
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx, torch.tensor(target))
    cot = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(cot))
    kx = t64(x, requires_grad=True)
    ky = ours(kx, t64(target) if target.dtype.kind == "f" else kiln.tensor(target))
    (ky * t64(cot)).sum().backward()
    _close(ky.detach().numpy(), ty.detach().numpy(), "loss")
    _close(kx.grad.numpy(), tx.grad.numpy(), "input gradient")


class _Net:
    """The same architecture over either namespace."""

    @staticmethod
    def make(nn):
        return nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(4, 6)), ("bn", nn.BatchNorm1d(6)), ("act", nn.ReLU()),
            ("drop", nn.Dropout(0.3)),
            ("blocks", nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 6), nn.LayerNorm(6)])),
            ("heads", nn.ModuleDict({"out": nn.Linear(6, 3)}))]))


def test_state_dict_keys_and_repr_match_pytorch():
    torch = torch_or_skip()
    ours, theirs = _Net.make(nn), _Net.make(torch.nn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    for key, value in ours.state_dict().items():
        assert list(value.shape) == list(theirs.state_dict()[key].shape), key


def _torch_shapes(text: str) -> str:
    return re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", text)


def test_load_errors_match_pytorch():
    torch = torch_or_skip()
    ours, theirs = _Net.make(nn), _Net.make(torch.nn)
    bad = {k: v for k, v in theirs.state_dict().items() if k not in ("bn.bias", "fc1.bias")}
    bad["blocks.0.weight"] = torch.zeros(2, 6)
    bad["blocks.7.weight"] = torch.zeros(1)
    bad["extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError) as theirs_error:
        theirs.load_state_dict(bad)
    with pytest.raises(RuntimeError) as ours_error:
        ours.load_state_dict({k: t64(v.numpy()) for k, v in bad.items()})
    assert str(ours_error.value) == _torch_shapes(str(theirs_error.value))


def test_training_steps_match_pytorch(rng):
    """Five plain SGD steps of an MLP with BatchNorm (training mode) on cross-entropy."""
    torch = torch_or_skip()
    ours, theirs = _Net.make(nn).double(), _Net.make(torch.nn).double()
    ours.drop.p = theirs.drop.p = 0.0       # NOTE: the two libraries draw different masks
    _copy_weights(ours, theirs)

    def forward(model, x):
        h = model.drop(model.act(model.bn(model.fc1(x))))
        for block in model.blocks:
            h = block(h)
        return model.heads["out"](h)
    for step in range(5):
        x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
        ours.zero_grad(), theirs.zero_grad()
        k_loss = nn.functional.cross_entropy(forward(ours, t64(x)), kiln.tensor(y))
        t_loss = torch.nn.functional.cross_entropy(forward(theirs, torch.tensor(x)),
                                                   torch.tensor(y))
        k_loss.backward(), t_loss.backward()
        _close(k_loss.item(), t_loss.item(), f"loss at step {step}")
        with kiln.no_grad(), torch.no_grad():
            for p, q in zip(ours.parameters(), theirs.parameters()):
                p.sub_(p.grad * 0.1)
                q.sub_(q.grad * 0.1)
    for key, value in theirs.state_dict().items():
        _close(ours.state_dict()[key].numpy(), value.numpy(), key)


REPRS = [
    lambda nn: nn.Linear(3, 2, bias=False), lambda nn: nn.ReLU(inplace=True),
    lambda nn: nn.GELU("tanh"), lambda nn: nn.LeakyReLU(0.2, inplace=True), lambda nn: nn.SiLU(),
    lambda nn: nn.Softmax(dim=-1), lambda nn: nn.LogSoftmax(), lambda nn: nn.Dropout(0.25),
    lambda nn: nn.Flatten(), lambda nn: nn.Unflatten(1, (2, 5)), lambda nn: nn.Identity(),
    lambda nn: nn.BatchNorm1d(4, eps=1e-3, momentum=None, track_running_stats=False),
    lambda nn: nn.BatchNorm2d(8), lambda nn: nn.LayerNorm((2, 3), elementwise_affine=False),
    lambda nn: nn.Embedding(10, 3, padding_idx=-1), lambda nn: nn.CrossEntropyLoss(),
    lambda nn: nn.NLLLoss(), lambda nn: nn.BCELoss(), lambda nn: nn.L1Loss(),
    lambda nn: nn.ModuleList(), lambda nn: nn.Sequential(),
    lambda nn: nn.ModuleList([nn.ReLU(), nn.ReLU(), nn.Sequential(nn.Tanh()), nn.ReLU()]),
]


@pytest.mark.parametrize("make", REPRS, ids=[str(i) for i in range(len(REPRS))])
def test_repr_matches_pytorch(make):
    torch = torch_or_skip()
    assert repr(make(nn)) == repr(make(torch.nn))


def test_init_helpers_match_pytorch():
    torch = torch_or_skip()
    for name, param in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                        ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.3),
                        ("selu", None)]:
        assert nn.init.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)
    for shape in [(5, 3), (8, 4, 3, 3), (2, 6, 5)]:
        assert nn.init._calculate_fan_in_and_fan_out(kiln.zeros(*shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape))
    torch.manual_seed(0)
    ours, theirs = nn.Linear(300, 200), torch.nn.Linear(300, 200)
    bound = 1 / np.sqrt(300)             # both weight and bias are U(-bound, bound)
    for a, b in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
        a, b = a.detach().numpy(), b.detach().numpy()
        # NOTE: against the theoretical std, within 5 standard errors of a uniform sample's
        # std (relative SE = sqrt(0.2 / n)); comparing two random samples was flaky.
        tolerance = 5 * np.sqrt(0.2 / a.size)
        for sample in (a, b):
            assert abs(sample.std() / (bound / np.sqrt(3)) - 1) < tolerance
        assert max(abs(a).max(), abs(b).max()) <= bound
