"""Kiln's random numbers are PyTorch's: after the same seed and the same calls, every random
function gives torch's CPU values bit for bit (frontend/torch_rng.py)."""
from __future__ import annotations

import numpy as np
import pytest

import kiln
from kiln.frontend import creation as C
from kiln.frontend.torch_rng import CPUGenerator, fma

torch = pytest.importorskip("torch")

SEEDS = [0, 7, 2**40 + 3]
SIZES = [1, 5, 15, 16, 17, 100]
FLOATS = [(kiln.float32, torch.float32), (kiln.float64, torch.float64)]


def same(k, t):
    """Kiln tensor k holds exactly torch tensor t's values (and dtype)."""
    a, b = k.numpy(), t.numpy()
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def seeded(seed):
    kiln.manual_seed(seed)
    torch.manual_seed(seed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kdt,tdt", FLOATS)
def test_rand_randn_and_fills_match_torch_bit_for_bit(seed, kdt, tdt):
    seeded(seed)
    for n in SIZES:
        same(kiln.rand(n, dtype=kdt), torch.rand(n, dtype=tdt))
        same(kiln.randn(n, dtype=kdt), torch.randn(n, dtype=tdt))
        same(kiln.zeros(n, dtype=kdt).uniform_(-0.3, 0.7),
             torch.zeros(n, dtype=tdt).uniform_(-0.3, 0.7))
        same(kiln.zeros(n, dtype=kdt).normal_(0.5, 2.5),
             torch.zeros(n, dtype=tdt).normal_(0.5, 2.5))
        same(kiln.zeros(n, dtype=kdt).exponential_(1.5),
             torch.zeros(n, dtype=tdt).exponential_(1.5))
    same(kiln.randn(3, 40, dtype=kdt), torch.randn(3, 40, dtype=tdt))
    same(C.get_rng_state(), torch.get_rng_state().to(torch.int64))


def test_a_large_randn_matches_torch_and_the_scalar_normal_cache_carries_over():
    seeded(11)
    same(kiln.randn(100_003), torch.randn(100_003))
    same(kiln.randn(3, dtype=kiln.float64), torch.randn(3, dtype=torch.float64))
    same(kiln.randn(1), torch.randn(1))     # NOTE: the cached second Box-Muller value
    same(C.get_rng_state(), torch.get_rng_state().to(torch.int64))


def test_transposed_fills_draw_in_memory_order_as_torch():
    seeded(3)
    k, t = kiln.zeros(20, 4).t(), torch.zeros(20, 4).t()
    same(k.normal_().contiguous(), t.normal_().contiguous())
    same(k.uniform_(1, 2).contiguous(), t.uniform_(1, 2).contiguous())
    same(k.bernoulli_(0.3).contiguous(), t.bernoulli_(0.3).contiguous())


@pytest.mark.parametrize("seed", SEEDS)
def test_integers_permutations_and_bernoulli_match_torch(seed):
    seeded(seed)
    same(kiln.tensor([0] * 9).random_(), torch.tensor([0] * 9).random_())
    same(kiln.zeros(9, dtype=kiln.int32).random_(-5, 20),
         torch.zeros(9, dtype=torch.int32).random_(-5, 20))
    same(kiln.zeros(9).random_(7), torch.zeros(9).random_(7))
    same(C.randint(0, 10, (3, 4)), torch.randint(0, 10, (3, 4)))
    same(C.randint(5, (6,)), torch.randint(5, (6,)))
    same(C.randint(-2**40, 2**40, (5,)), torch.randint(-2**40, 2**40, (5,)))
    same(C.randint_like(kiln.zeros(4), 3, 9), torch.randint_like(torch.zeros(4), 3, 9))
    for n in (0, 1, 2, 10, 1000):
        same(C.randperm(n), torch.randperm(n))
    same(kiln.zeros(50).bernoulli_(0.3), torch.zeros(50).bernoulli_(0.3))
    p = kiln.tensor(np.linspace(0, 1, 30))
    same(C.bernoulli(p), torch.bernoulli(torch.tensor(np.linspace(0, 1, 30))))
    same(C.bernoulli(p.float()), torch.bernoulli(torch.tensor(np.linspace(0, 1, 30)).float()))
    same(C.bernoulli(kiln.zeros(8), 0.6), torch.bernoulli(torch.zeros(8), 0.6))
    same(C.get_rng_state(), torch.get_rng_state().to(torch.int64))


@pytest.mark.parametrize("kdt,tdt", FLOATS)
@pytest.mark.parametrize("k,replacement", [(1, False), (5, False), (20, False), (1, True),
                                           (7, True)])
def test_multinomial_matches_torch(kdt, tdt, k, replacement):
    probs = np.random.default_rng(0).random((3, 20))
    probs[0, 3] = 0
    seeded(5)
    same(C.multinomial(kiln.tensor(probs, dtype=kdt), k, replacement),
         torch.multinomial(torch.tensor(probs, dtype=tdt), k, replacement))
    same(kiln.tensor(probs[0], dtype=kdt).multinomial(k, replacement),
         torch.tensor(probs[0], dtype=tdt).multinomial(k, replacement))


def test_normal_with_tensor_arguments_matches_torch():
    seeded(2)
    mean, std = np.linspace(-1, 1, 20), np.linspace(0.1, 2, 20)
    same(C.normal(kiln.tensor(mean), kiln.tensor(std)),
         torch.normal(torch.tensor(mean), torch.tensor(std)))
    same(C.normal(kiln.tensor(mean), 0.5), torch.normal(torch.tensor(mean), 0.5))
    same(C.normal(0.5, kiln.tensor(std)), torch.normal(0.5, torch.tensor(std)))
    same(C.normal(1.0, 2.0, (3, 7)), torch.normal(1.0, 2.0, (3, 7)))


def test_generators_are_separate_streams_with_torchs_state():
    seeded(1)
    g, tg = kiln.Generator().manual_seed(42), torch.Generator().manual_seed(42)
    same(kiln.randn(20, generator=g), torch.randn(20, generator=tg))
    same(kiln.rand(3), torch.rand(3))                     # NOTE: the default one untouched
    same(C.randperm(9, generator=g), torch.randperm(9, generator=tg))
    same(g.get_state(), tg.get_state().to(torch.int64))
    assert g.initial_seed() == 42 and kiln.Generator().initial_seed() == 67280421310721
    g2 = kiln.Generator().set_state(tg.get_state())       # NOTE: torch's bytes load as they are
    same(kiln.rand(5, generator=g2), torch.rand(5, generator=tg))


def test_rng_state_round_trips_and_seeds_wrap_like_torch():
    kiln.manual_seed(-1)
    torch.manual_seed(-1)
    assert C.initial_seed() == torch.initial_seed() == 2**64 - 1
    state = C.get_rng_state()
    a = kiln.randn(40)
    C.set_rng_state(state)
    np.testing.assert_array_equal(kiln.randn(40).numpy(), a.numpy())
    same(a, torch.randn(40))
    with pytest.raises(RuntimeError, match="size"):
        C.set_rng_state(kiln.zeros(10, dtype=kiln.int64))
    s = C.seed()
    assert C.initial_seed() == s


def test_bad_arguments_raise_pytorchs_errors():
    with pytest.raises(RuntimeError, match="from=5 >= to=5"):
        C.randint(5, 5, (2,))
    with pytest.raises(RuntimeError, match="p to be in"):
        kiln.zeros(3).bernoulli_(1.5)
    with pytest.raises(RuntimeError, match="without replacement"):
        C.multinomial(kiln.tensor([0.5, 0.5]), 3)
    with pytest.raises(RuntimeError, match="sum of probabilities"):
        C.multinomial(kiln.tensor([0.0, 0.0]), 1)
    with pytest.raises(RuntimeError, match="floating point"):
        kiln.zeros(3, dtype=kiln.int64).normal_()
    with pytest.raises(RuntimeError, match="std >= 0.0"):
        kiln.zeros(3).normal_(0, -1)
    with pytest.raises(TypeError, match="kiln.Generator"):
        kiln.rand(2, generator=torch.Generator())


def test_dropout_masks_match_torch_eagerly_and_under_jit():
    x = np.random.default_rng(0).standard_normal((8, 33)).astype(np.float32)
    seeded(4)
    want = [torch.nn.functional.dropout(torch.tensor(x), 0.3) for _ in range(2)]
    kiln.manual_seed(4)
    same(kiln.nn.functional.dropout(kiln.tensor(x), 0.3), want[0])
    step = kiln.jit(lambda t: kiln.nn.functional.dropout(t, 0.3))
    kiln.manual_seed(4)
    same(step(kiln.tensor(x)), want[0])
    same(step(kiln.tensor(x)), want[1])                  # NOTE: fresh draws at every call


def test_jitted_random_ops_draw_what_eager_draws_in_program_order():
    def f(x):
        a = kiln.randn(4, 5)
        b = x.clone().uniform_(-1, 1)
        return a + b * kiln.rand(4, 5, dtype=kiln.float64).float()
    x = kiln.zeros(4, 5)
    kiln.manual_seed(9)
    eager = [f(x).numpy() for _ in range(3)]
    jf = kiln.jit(f)
    kiln.manual_seed(9)
    for want in eager:
        np.testing.assert_array_equal(jf(x).numpy(), want)
    assert jf.traces == 1


def test_dataloader_shuffle_split_and_samplers_give_torchs_orders():
    from torch.utils import data as tdata

    from kiln.utils import data as kdata
    seeded(3)
    k = [b.tolist() for b in kdata.DataLoader(kiln.arange(10), batch_size=4, shuffle=True)]
    t = [b.tolist() for b in tdata.DataLoader(torch.arange(10), batch_size=4, shuffle=True)]
    assert k == t
    kg, tg = kiln.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [list(s) for s in kdata.random_split(range(10), [0.7, 0.3], generator=kg)] == \
        [list(s) for s in tdata.random_split(range(10), [0.7, 0.3], generator=tg)]
    assert list(kdata.RandomSampler(range(7), replacement=True, num_samples=40,
                                    generator=kg)) == \
        list(tdata.RandomSampler(range(7), replacement=True, num_samples=40, generator=tg))
    assert list(kdata.WeightedRandomSampler([0.1, 2.0, 0.5, 1.0], 12, generator=kg)) == \
        list(tdata.WeightedRandomSampler([0.1, 2.0, 0.5, 1.0], 12, generator=tg))
    assert list(kdata.WeightedRandomSampler([0.1, 2.0, 0.5, 1.0], 3, replacement=False,
                                            generator=kg)) == \
        list(tdata.WeightedRandomSampler([0.1, 2.0, 0.5, 1.0], 3, replacement=False,
                                         generator=tg))


def test_cuda_random_tensors_are_the_host_draws_uploaded(fake_gpu):
    kiln.manual_seed(6)
    want = kiln.randn(3, 20).numpy()
    kiln.manual_seed(6)
    got = kiln.randn(3, 20, device="cuda")
    assert got.is_cuda
    np.testing.assert_array_equal(got.cpu().numpy(), want)
    kiln.manual_seed(6)
    y = kiln.zeros(3, 20, device="cuda").normal_()
    np.testing.assert_array_equal(y.cpu().numpy(), want)


def test_fused_multiply_add_is_correctly_rounded():
    from fractions import Fraction
    rng = np.random.default_rng(1)
    a = rng.standard_normal(2000) * 10.0 ** rng.integers(-4, 4, 2000)
    b = rng.standard_normal(2000)
    for c in (rng.standard_normal(2000), -(a * b)):
        exact = [float(Fraction(x) * Fraction(y) + Fraction(z)) for x, y, z in zip(a, b, c)]
        np.testing.assert_array_equal(fma(a, b, c), exact)
    a32, b32, c32 = (v.astype(np.float32) for v in (a, b, c))
    got = fma(a32, b32, c32)
    assert got.dtype == np.float32
    for r, x, y, z in zip(got, a32, b32, c32):
        exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
        near = [np.nextafter(r, np.float32(-np.inf)), np.nextafter(r, np.float32(np.inf))]
        assert all(abs(Fraction(float(r)) - exact) <= abs(Fraction(float(n)) - exact)
                   for n in near)


def test_the_generator_alone_matches_torch_state_bytes():
    g = CPUGenerator(123)
    g.uniform(7, np.float32)
    g.normal(3, np.float64)
    torch.manual_seed(123)
    torch.rand(7)
    torch.randn(3, dtype=torch.float64)
    np.testing.assert_array_equal(g.get_state(), torch.get_rng_state().numpy())
