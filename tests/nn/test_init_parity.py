"""After `kiln.manual_seed(s)`, layers start with PyTorch's exact weights (no copying): the
constructors and `kiln.nn.init` draw from the generator as PyTorch's do."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln
from kiln import nn
from kiln.nn import init

torch = pytest.importorskip("torch")
tnn = torch.nn

LAYERS = {
    "linear": lambda m: m.Linear(4, 3),
    "linear_no_bias": lambda m: m.Linear(6, 5, bias=False),
    "conv2d": lambda m: m.Conv2d(3, 5, 3),
    "embedding": lambda m: m.Embedding(10, 4),
    "lstm": lambda m: m.LSTM(4, 6, num_layers=2),
    "gru_bidirectional": lambda m: m.GRU(4, 6, bidirectional=True, batch_first=True),
    "rnn": lambda m: m.RNN(3, 5),
    "attention": lambda m: m.MultiheadAttention(8, 2),
    "encoder_layer": lambda m: m.TransformerEncoderLayer(8, 2, 16),
    "layer_norm": lambda m: m.LayerNorm(5),
    "batch_norm": lambda m: m.BatchNorm2d(3),
    "mlp": lambda m: m.Sequential(m.Linear(8, 16), m.ReLU(), m.Linear(16, 2)),
}


def _state(module) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_starts_with_pytorchs_weights(name):
    kiln.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = _state(LAYERS[name](nn)), _state(LAYERS[name](tnn))
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    # NOTE: and the generator is left where PyTorch leaves it
    np.testing.assert_array_equal(kiln.rand(3).numpy(), torch.rand(3).numpy())


INITS = [
    ("uniform_", dict(a=-0.5, b=2.0)),
    ("normal_", dict(mean=0.3, std=1.7)),
    ("xavier_uniform_", dict(gain=1.3)),
    ("xavier_normal_", dict(gain=0.7)),
    ("kaiming_uniform_", dict(a=math.sqrt(5))),
    ("kaiming_uniform_", dict(mode="fan_out", nonlinearity="relu")),
    ("kaiming_normal_", dict(nonlinearity="relu")),
    ("kaiming_normal_", dict(a=0.2, mode="fan_out")),
]


@pytest.mark.parametrize("name,kwargs", INITS)
@pytest.mark.parametrize("kdt,tdt", [(kiln.float32, torch.float32),
                                     (kiln.float64, torch.float64)])
def test_init_functions_draw_pytorchs_numbers(name, kwargs, kdt, tdt):
    kiln.manual_seed(3)
    torch.manual_seed(3)
    for shape in [(5, 7), (16, 3, 3, 3)]:
        ours = getattr(init, name)(kiln.zeros(*shape, dtype=kdt), **kwargs)
        theirs = getattr(tnn.init, name)(torch.zeros(*shape, dtype=tdt), **kwargs)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_init_with_a_generator_and_trunc_normal_draws():
    g, tg = kiln.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    ours = init.kaiming_uniform_(kiln.zeros(6, 4), generator=g)
    theirs = tnn.init.kaiming_uniform_(torch.zeros(6, 4), generator=tg)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # NOTE: trunc_normal_ by rejection: normals redrawn (wide [a, b]), uniforms accepted
    for kwargs in (dict(std=0.02), dict(std=1.0), dict(mean=0.5, std=2.0, a=-0.5, b=0.0)):
        ours = init.trunc_normal_(kiln.zeros(300), generator=g, **kwargs).numpy()
        theirs = tnn.init.trunc_normal_(torch.zeros(300), generator=tg, **kwargs).numpy()
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(g.get_state().numpy(), tg.get_state().numpy())


def test_a_seeded_training_step_matches_pytorch_without_copying_weights():
    x = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    y = np.arange(8) % 3

    def run(lib, nnm):
        lib.manual_seed(1)
        model = nnm.Sequential(nnm.Linear(6, 10), nnm.ReLU(), nnm.Dropout(0.2),
                               nnm.Linear(10, 3))
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            loss = nnm.functional.cross_entropy(model(lib.tensor(x)), lib.tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item(), _state(model)
    ours, theirs = run(kiln, nn), run(torch, tnn)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-6)
    for key in theirs[1]:
        np.testing.assert_allclose(ours[1][key], theirs[1][key], rtol=1e-5, atol=1e-7)
