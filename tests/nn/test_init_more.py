"""`nn.init.trunc_normal_`: bounds, the truncated normal's moments and CDF, PyTorch's
inverse-CDF method (erfinv against torch.erfinv), in place on parameters."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln
from kiln import nn
from kiln.nn import init


def _phi(x):
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _cdf(x):
    return (1 + math.erf(x / math.sqrt(2))) / 2


def _truncated_moments(mean, std, a, b):
    alpha, beta = (a - mean) / std, (b - mean) / std
    z = _cdf(beta) - _cdf(alpha)
    shift = (_phi(alpha) - _phi(beta)) / z
    var = 1 + (alpha * _phi(alpha) - beta * _phi(beta)) / z - shift ** 2
    return mean + std * shift, std * math.sqrt(var)


@pytest.mark.parametrize("mean, std, a, b", [(0.0, 1.0, -2.0, 2.0), (0.5, 2.0, -1.0, 3.0),
                                             (0.0, 0.02, -0.04, 0.04), (1.0, 1.0, 0.0, 5.0)])
def test_trunc_normal_stays_in_bounds_with_the_truncated_moments_and_cdf(mean, std, a, b):
    kiln.manual_seed(0)
    n = 20000
    w = init.trunc_normal_(kiln.zeros(n),
                           mean=mean, std=std, a=a, b=b).numpy().astype(np.float64)
    assert w.min() >= a and w.max() <= b
    want_mean, want_std = _truncated_moments(mean, std, a, b)
    assert abs(w.mean() - want_mean) < 4 * want_std / math.sqrt(n)
    assert abs(w.std() - want_std) / want_std < 0.03
    alpha, z = _cdf((a - mean) / std), _cdf((b - mean) / std) - _cdf((a - mean) / std)
    grid = np.linspace(a, b, 41)[1:-1]
    cdf = np.array([(_cdf((x - mean) / std) - alpha) / z for x in grid])
    empirical = np.searchsorted(np.sort(w), grid) / n
    assert np.max(np.abs(empirical - cdf)) < 1.63 / math.sqrt(n)   # NOTE: KS at 1%


def test_trunc_normal_fills_a_parameter_in_place_and_keeps_its_dtype():
    layer = nn.Linear(64, 32).double()
    out = init.trunc_normal_(layer.weight, std=0.02)
    assert out is layer.weight and out.dtype == kiln.float64 and out.requires_grad
    assert layer.weight.grad_fn is None
    assert float(layer.weight.abs().max()) <= 2.0
    assert 0.015 < float(layer.weight.std()) < 0.025


def test_trunc_normal_warns_when_the_mean_is_far_from_the_interval_and_checks_generators():
    with pytest.warns(UserWarning, match="mean is more than 2 std from"):
        init.trunc_normal_(kiln.zeros(10), mean=10.0, std=1.0, a=-2.0, b=2.0)
    with pytest.raises(TypeError, match="generator must be a kiln.Generator"):
        init.trunc_normal_(kiln.zeros(3), generator=object())
    a = init.trunc_normal_(kiln.zeros(5), generator=kiln.Generator().manual_seed(1))
    b = init.trunc_normal_(kiln.zeros(5), generator=kiln.Generator().manual_seed(1))
    assert a.tolist() == b.tolist()
