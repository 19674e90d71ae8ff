"""kiln.nn.init: PyTorch's formulas (bounds, standard deviations, gains, fans) and the
default initialization of each layer, checked on the statistics of large draws."""
import math

import numpy as np
import pytest

import kiln
from kiln import nn
from kiln.nn import init


def _values(t) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def _assert_uniform(values, bound):
    """U(-bound, bound): inside the bound, reaching close to it, std bound / sqrt(3)."""
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.99 * bound
    assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 0.02
    assert abs(values.mean()) < 0.02 * bound


def _assert_normal(values, std, mean=0.0):
    assert abs(values.std() / std - 1) < 0.02
    assert abs(values.mean() - mean) < 0.02 * std
    assert np.abs(values - mean).max() > 3 * std          # tails exist: not a uniform


def test_linear_default_init_matches_pytorch_statistics():
    fc = nn.Linear(784, 128)
    bound = 1 / math.sqrt(784)
    _assert_uniform(_values(fc.weight), bound)             # std = 1 / sqrt(3 * 784)
    assert np.abs(_values(fc.bias)).max() <= bound
    assert fc.weight.requires_grad and fc.weight.is_leaf and fc.weight.dtype == kiln.float32


def test_layer_defaults():
    bn = nn.BatchNorm2d(3)
    assert bn.weight.tolist() == [1.0] * 3 and bn.bias.tolist() == [0.0] * 3
    assert bn.running_var.tolist() == [1.0] * 3 and bn.num_batches_tracked.item() == 0
    _assert_normal(_values(nn.Embedding(1000, 64).weight), 1.0)
    ln = nn.LayerNorm((2, 3), dtype=kiln.float64)
    assert ln.weight.dtype == kiln.float64 and ln.weight.tolist() == [[1.0] * 3] * 2


def test_kaiming_uniform_and_normal():
    w = kiln.zeros(256, 128, 3, 3)
    fan_in, fan_out = 128 * 9, 256 * 9
    assert init._calculate_fan_in_and_fan_out(w) == (fan_in, fan_out)
    _assert_uniform(_values(init.kaiming_uniform_(w, nonlinearity="relu")),
                    math.sqrt(3) * math.sqrt(2) / math.sqrt(fan_in))
    _assert_normal(_values(init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")),
                   math.sqrt(2) / math.sqrt(fan_out))
    leaky = init.calculate_gain("leaky_relu", 0.1)
    _assert_normal(_values(init.kaiming_normal_(w, a=0.1)), leaky / math.sqrt(fan_in))


def test_xavier_uniform_and_normal():
    w = kiln.zeros(300, 500)
    bound = math.sqrt(6 / 800)
    _assert_uniform(_values(init.xavier_uniform_(w)), bound)
    _assert_uniform(_values(init.xavier_uniform_(w, gain=2.0)), 2 * bound)
    _assert_normal(_values(init.xavier_normal_(w, gain=init.calculate_gain("tanh"))),
                   5 / 3 * math.sqrt(2 / 800))


def test_basic_fills():
    w = kiln.zeros(400, 250)
    values = _values(init.uniform_(w, -2.0, 3.0))
    assert values.min() >= -2.0 and values.max() < 3.0 and abs(values.mean() - 0.5) < 0.02
    _assert_normal(_values(init.normal_(w, 1.5, 0.5)), 0.5, mean=1.5)
    assert init.constant_(kiln.zeros(2), 0.3).tolist() == [pytest.approx(0.3)] * 2
    assert init.ones_(kiln.zeros(2)).tolist() == [1.0, 1.0]
    assert init.zeros_(kiln.ones(2)).tolist() == [0.0, 0.0]


def test_init_fills_parameters_in_place_without_recording_gradients():
    p = nn.Parameter(kiln.zeros(3, 4))
    assert init.xavier_uniform_(p) is p
    assert p.is_leaf and p.requires_grad and p.grad_fn is None
    assert np.abs(_values(p)).max() > 0


def test_init_is_reproducible_under_manual_seed():
    kiln.manual_seed(3)
    a = _values(nn.Linear(5, 4).weight)
    kiln.manual_seed(3)
    np.testing.assert_array_equal(_values(nn.Linear(5, 4).weight), a)


def test_calculate_gain_table():
    assert init.calculate_gain("linear") == init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01 ** 2))
    assert init.calculate_gain("selu") == 3 / 4
    with pytest.raises(ValueError, match="Unsupported nonlinearity softsign"):
        init.calculate_gain("softsign")
    with pytest.raises(ValueError, match="negative_slope x not a valid number"):
        init.calculate_gain("leaky_relu", "x")


def test_init_errors():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(kiln.zeros(3))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(kiln.zeros(2, 2), mode="fan_avg")
    with pytest.warns(UserWarning, match="zero-element tensors is a no-op"):
        init.kaiming_uniform_(kiln.zeros(0, 3))
