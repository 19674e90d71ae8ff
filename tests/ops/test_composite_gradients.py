"""Float64 finite differences for the ops issue 9 added that are made of other ops (the
registry's own ops are checked by tests/ops/test_ops.py from the sample table): autograd's
gradient of sum(f(x) * c) equals central differences, for random x and c."""
import numpy as np
import pytest

import kiln

CASES = {
    "std": lambda x: x.std(1),
    "var-correction0": lambda x: x.var(0, correction=0),
    "norm": lambda x: x.norm(dim=1),
    "norm-p3": lambda x: x.norm(3),
    "norm-inf": lambda x: x.norm(float("inf"), dim=0),
    "logsumexp": lambda x: kiln.logsumexp(x, 1),
    "cumsum": lambda x: kiln.cumsum(x, 1),
    "cumprod": lambda x: kiln.cumprod(x, 0),
    "sort-values": lambda x: kiln.sort(x, 1, descending=True).values,
    "topk-values": lambda x: kiln.topk(x, 2, 1).values,
    "tril": lambda x: kiln.tril(x, -1),
    "triu": lambda x: kiln.triu(x, 1),
    "flip": lambda x: kiln.flip(x, (0, 1)),
    "roll": lambda x: kiln.roll(x, 2, 1),
    "repeat": lambda x: x.repeat(2, 1),
    "repeat_interleave": lambda x: kiln.repeat_interleave(x, 2, 0),
    "chunk": lambda x: kiln.chunk(x, 2, 1)[1] * 2,
    "split": lambda x: kiln.split(x, [1, 3], 1)[0],
    "outer": lambda x: kiln.outer(x[0], x[1]),
    "bmm": lambda x: kiln.bmm(x.reshape(1, 3, 4), x.reshape(1, 4, 3)),
    "einsum-contract": lambda x: kiln.einsum("ij,kj->ik", x, x),
    "einsum-trace": lambda x: kiln.einsum("ii->", x[:, :3]),
    "clamp-tensor-bounds": lambda x: kiln.clamp(x, min=x[0] * 0.5, max=2.0),
    "log1p-expm1": lambda x: kiln.log1p(kiln.expm1(x * 0.3).abs()),
    "sin-cos": lambda x: kiln.sin(x) * kiln.cos(x),
    "gather": lambda x: x.gather(1, kiln.tensor([[0, 0], [3, 1], [2, 2]])),
    "advanced-index": lambda x: x[kiln.tensor([2, 0]), 1:],
    "masked-read": lambda x: x[x > 0],
    "index-write": lambda x: _written(x),
    "diag": lambda x: kiln.diag(x[:, :3], 1),
    "dot": lambda x: kiln.dot(x[0], x[1]),
}


def _written(x):
    y = x * 1
    y[kiln.tensor([0, 2]), 1] = x[1, :2] * 3
    return y


def _objective(fn, arr: np.ndarray, cot_seed: int):
    out = fn(kiln.tensor(arr))
    c = np.random.default_rng(cot_seed).standard_normal(tuple(out.shape))
    return float((out * kiln.tensor(c)).sum().item())


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name, rng):
    fn = CASES[name]
    # NOTE: entries apart (no ties for sort/topk/norm-inf, no kinks for clamp)
    x0 = (rng.permutation(12).reshape(3, 4) * 0.37 - 1.9) + rng.uniform(-0.05, 0.05, (3, 4))
    x = kiln.tensor(x0, requires_grad=True)
    out = fn(x)
    c = np.random.default_rng(7).standard_normal(tuple(out.shape))
    (out * kiln.tensor(c)).sum().backward()
    numeric = np.zeros_like(x0)
    eps = 1e-6
    for i in np.ndindex(x0.shape):
        hi, lo = x0.copy(), x0.copy()
        hi[i] += eps
        lo[i] -= eps
        numeric[i] = (_objective(fn, hi, 7) - _objective(fn, lo, 7)) / (2 * eps)
    np.testing.assert_allclose(x.grad.numpy(), numeric, rtol=1e-6, atol=1e-7)
