"""RNN, LSTM, GRU and their cells against PyTorch (state-dict keys and shapes, outputs, final
states, gradients of inputs, initial states and every parameter), against finite
differences, under @kiln.jit (a whole training step), and their errors."""
import warnings

import numpy as np
import pytest
from nn_helpers import check_gradients, t64, torch_or_skip
from torch_compare import compare_with_torch

import kiln
import kiln.nn.functional as F
from kiln import nn
from kiln.frontend.jit import KilnJitWarning


def _x(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def _pair(torch, name, dtype, kw):
    ours, theirs = getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw)
    if dtype == np.float64:
        return ours.double(), theirs.double()
    return ours, theirs


def _initial_state(name, kw, batch, rng, dtype):
    """h0 (or (h0, c0)) of the layer's shape; batch None for unbatched input."""
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    lead = (layers,) if batch is None else (layers, batch)
    h0 = _x(rng, lead + (kw.get("proj_size") or kw["hidden_size"],), dtype)
    if name != "LSTM":
        return h0
    return (h0, _x(rng, lead + (kw["hidden_size"],), dtype))


CASES = [  # id, layer, constructor kw, input shape, pass an initial state?
    ("rnn-tanh", "RNN", dict(input_size=3, hidden_size=4), (5, 2, 3), False),
    ("rnn-relu-2-layers-bidirectional", "RNN",
     dict(input_size=3, hidden_size=4, num_layers=2, nonlinearity="relu", bidirectional=True),
     (5, 2, 3), True),
    ("rnn-unbatched-no-bias", "RNN", dict(input_size=3, hidden_size=4, bias=False), (4, 3),
     True),
    ("lstm", "LSTM", dict(input_size=3, hidden_size=4), (5, 2, 3), False),
    ("lstm-2-layers-bidirectional-batch-first", "LSTM",
     dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, batch_first=True),
     (2, 5, 3), True),
    ("lstm-proj", "LSTM", dict(input_size=3, hidden_size=5, proj_size=2, num_layers=2,
                               bidirectional=True), (4, 2, 3), True),
    ("lstm-unbatched", "LSTM", dict(input_size=3, hidden_size=4, bias=False), (4, 3), True),
    ("gru", "GRU", dict(input_size=3, hidden_size=4), (5, 2, 3), False),
    ("gru-3-layers-bidirectional-batch-first", "GRU",
     dict(input_size=3, hidden_size=4, num_layers=3, bidirectional=True, batch_first=True),
     (2, 4, 3), True),
]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case,name,kw,shape,with_state", CASES, ids=[c[0] for c in CASES])
def test_recurrent_layer_matches_pytorch(case, name, kw, shape, with_state, dtype, rng):
    torch = torch_or_skip()
    ours, theirs = _pair(torch, name, dtype, kw)
    assert repr(ours) == repr(theirs)
    args = [_x(rng, shape, dtype)]
    if with_state:
        batch = None if len(shape) == 2 else shape[0 if kw.get("batch_first") else 1]
        args.append(_initial_state(name, kw, batch, rng, dtype))
    compare_with_torch(ours, theirs, args, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw,batched", [
    ("RNNCell", dict(input_size=3, hidden_size=4, nonlinearity="relu"), True),
    ("LSTMCell", dict(input_size=3, hidden_size=4), True),
    ("LSTMCell", dict(input_size=3, hidden_size=4, bias=False), False),
    ("GRUCell", dict(input_size=3, hidden_size=4), False)])
def test_cells_match_pytorch(name, kw, batched, dtype, rng):
    torch = torch_or_skip()
    ours, theirs = _pair(torch, name, dtype, kw)
    assert repr(ours) == repr(theirs)
    lead = (2,) if batched else ()
    h = _x(rng, lead + (4,), dtype)
    state = (h, _x(rng, lead + (4,), dtype)) if name == "LSTMCell" else h
    compare_with_torch(ours, theirs, [_x(rng, lead + (3,), dtype), state], rng)
    compare_with_torch(ours, theirs, [_x(rng, lead + (3,), dtype)], rng)   # zero state


def test_parameter_layout_and_initialization():
    torch = torch_or_skip()
    for name, kw in (("LSTM", dict(num_layers=2, bidirectional=True, proj_size=3)),
                     ("GRU", dict(bias=False)), ("RNN", dict(num_layers=3))):
        ours = getattr(nn, name)(5, 4, **kw)
        theirs = getattr(torch.nn, name)(5, 4, **kw)
        assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
            [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
        assert [[tuple(p.shape) for p in ws] for ws in ours.all_weights] == \
            [[tuple(p.shape) for p in ws] for ws in theirs.all_weights]
    lstm = nn.LSTM(10, 64)
    values = np.concatenate([p.detach().numpy().ravel() for p in lstm.parameters()])
    assert np.abs(values).max() <= 1 / 8 and np.abs(values).max() > 0.99 / 8
    lstm.flatten_parameters()           # accepted, as in PyTorch


def test_gradients_by_finite_differences(rng):
    lstm = nn.LSTM(2, 2, proj_size=1).double()
    x = t64(rng.standard_normal((2, 1, 2)), requires_grad=True)
    h0 = t64(rng.standard_normal((1, 1, 1)), requires_grad=True)
    c0 = t64(rng.standard_normal((1, 1, 2)), requires_grad=True)
    names = check_gradients(lambda a, h, c: lstm(a, (h, c))[0], x, h0, c0, module=lstm)
    assert names[3:] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                         "weight_hr_l0"]
    gru = nn.GRU(2, 1, bidirectional=True).double()
    assert len(check_gradients(lambda a: gru(a)[1], x, module=gru)) == 1 + 8


def test_dropout_between_layers_in_training_only(rng):
    torch = torch_or_skip()
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.5)
    ours, theirs = _pair(torch, "LSTM", np.float64, dict(input_size=3, hidden_size=4,
                                                          num_layers=2, dropout=0.5))
    x = kiln.tensor(_x(rng, (4, 2, 3)))
    with kiln.no_grad():
        assert not np.allclose(ours(x)[0].numpy(), ours(x)[0].numpy())
    ours.eval(), theirs.eval()
    compare_with_torch(ours, theirs, [_x(rng, (4, 2, 3))], rng)


def test_errors():
    lstm = nn.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match="LSTM: Expected input to be 2D or 3D, got 4D"):
        lstm(kiln.ones(1, 2, 3, 3))
    with pytest.raises(kiln.KilnError, match="input.size\\(-1\\) must be equal to input_size. "
                                             "Expected 3, got 5"):
        lstm(kiln.ones(4, 2, 5))
    with pytest.raises(TypeError, match="RNN input dtype \\(kiln.float64\\) does not match "
                                        "weight dtype"):
        lstm(kiln.ones(4, 2, 3, dtype=kiln.float64))
    with pytest.raises(kiln.KilnError, match="Expected hidden size \\(2, 2, 4\\), got "
                                             "\\[1, 2, 4\\]"):
        lstm(kiln.ones(4, 2, 3), (kiln.zeros(1, 2, 4), kiln.zeros(2, 2, 4)))
    with pytest.raises(TypeError, match="hx must be a tuple"):
        lstm(kiln.ones(4, 2, 3), kiln.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        nn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout should be a number in range \\[0, 1\\]"):
        nn.GRU(3, 4, dropout=1.5)

    class PackedSequence(tuple):
        batch_sizes = None
    with pytest.raises(kiln.NotSupportedError, match="not supported yet: packed sequences"):
        lstm(PackedSequence())


# ---- @kiln.jit: a training step over a character-level LSTM ----------------------------------
class _CharModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(6, 4)
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.head = nn.Linear(5, 6)

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))
        return self.head(out)


def _train(batches, jit: bool):
    kiln.manual_seed(0)
    model = _CharModel()
    opt = kiln.optim.Adam(model.parameters(), lr=1e-2)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x).reshape(-1, 6), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    run = kiln.jit(step) if jit else step
    return model, [run(x, y).item() for x, y in batches], run


def test_lstm_training_step_compiles_and_matches_eager(rng):
    batches = [(kiln.tensor(rng.integers(0, 6, (3, 4))), kiln.tensor(rng.integers(0, 6, (3, 4))))
               for _ in range(3)]
    eager, eager_losses, _ = _train(batches, jit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)          # no fallback, no break
        jitted, jit_losses, step = _train(batches, jit=True)
    assert step.traces == 1
    np.testing.assert_allclose(jit_losses, eager_losses, rtol=1e-5)
    for key, value in eager.state_dict().items():
        np.testing.assert_allclose(jitted.state_dict()[key].numpy(), value.numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=key)
