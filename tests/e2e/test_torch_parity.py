"""The same model, initial weights and batches give PyTorch's losses and parameters after 20
steps within 1e-5 relative (float32), for SGD with momentum, Adam and AdamW, for an MLP and a
small CNN (Conv2d, BatchNorm2d, MaxPool2d, Dropout in eval mode). Issue 3."""
import numpy as np
import pytest

import kiln

torch = pytest.importorskip("torch", reason="PyTorch is not installed (CI installs "
                            "torch==2.13.0 CPU before make test)")
STEPS = 20
RTOL = 1e-5


def mlp(lib):
    nn = lib.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16),
                         nn.ReLU(), nn.Linear(16, 10))


def cnn(lib):
    # NOTE: the conv feeding BatchNorm has no bias, as usual: in train mode BatchNorm removes
    # the batch mean, so that bias's true gradient is exactly 0 and what is left is rounding
    # noise (~1e-9) that Adam normalizes into full-size steps in a random direction; any two
    # implementations (or PyTorch with another summation order) then disagree on it.
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Dropout(0.25),
                         nn.Flatten(), nn.Linear(16 * 2 * 2, 10))


OPTIMIZERS = {
    "sgd_momentum": lambda lib, p: lib.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam": lambda lib, p: lib.optim.Adam(p, lr=0.01),
    "adamw": lambda lib, p: lib.optim.AdamW(p, lr=0.01, weight_decay=0.05),
}


def _batches(seed: int):
    """Learnable batches: labels are the argmax of a fixed linear map of the image."""
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((64, 10))
    out = []
    for _ in range(STEPS):
        x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
        out.append((x, np.argmax(x.reshape(16, 64) @ teacher, 1).astype(np.int64)))
    return out


def _copy_weights(kiln_model, torch_model):
    state = {k: torch.from_numpy(v.numpy().copy()) for k, v in kiln_model.state_dict().items()}
    torch_model.load_state_dict(state)


def _train(lib, model, make_opt, batches, to_tensor):
    opt = make_opt(lib, model.parameters())
    loss_fn = lib.nn.CrossEntropyLoss()
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = loss_fn(model(to_tensor(x)), to_tensor(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model_name, mode", [("mlp", "train"), ("cnn", "eval"),
                                              ("cnn", "train-bn")])
def test_training_matches_pytorch(model_name, mode, opt_name):
    # NOTE: seed 1: with PyTorch's initial weights for seed 0 (Kiln's too, now) this small CNN
    # does not lower its loss within 20 steps, which the last check asks
    kiln.manual_seed(1)
    builder = mlp if model_name == "mlp" else cnn
    k_model, t_model = builder(kiln), builder(torch)
    _copy_weights(k_model, t_model)
    for m in (k_model, t_model):
        m.eval() if mode == "eval" else m.train()
        if mode == "train-bn":           # batch statistics, but no random dropout masks
            m[6].eval()
    batches = _batches(1)
    k_losses = _train(kiln, k_model, OPTIMIZERS[opt_name], batches, kiln.from_numpy)
    t_losses = _train(torch, t_model, OPTIMIZERS[opt_name], batches, torch.from_numpy)
    assert np.all(np.abs(k_losses - t_losses) <= RTOL * np.abs(t_losses)), (k_losses, t_losses)
    t_state = t_model.state_dict()
    for name, value in k_model.state_dict().items():
        assert _rel(value.numpy(), t_state[name].numpy()) <= RTOL, name
    assert k_losses[-1] < k_losses[0]
