"""DataLoader: batching, drop_last, len, shuffling (seeded generator and kiln.manual_seed),
samplers, and the default collate of tensors, numbers, NumPy data, tuples and dicts."""
from __future__ import annotations

import collections
import doctest
import importlib

import numpy as np
import pytest

import kiln
import kiln.optim
from kiln.utils.data import (BatchSampler, DataLoader, Dataset, Generator, RandomSampler,
                             SequentialSampler, TensorDataset, default_collate)


def _dataset(n=10):
    x = kiln.arange(n * 3, dtype=kiln.float32).reshape(n, 3)
    return TensorDataset(x, kiln.arange(n))


def _labels(loader):
    return [y.tolist() for _, y in loader]


@pytest.mark.parametrize("n, batch_size, drop_last, sizes", [
    (10, 4, False, [4, 4, 2]), (10, 4, True, [4, 4]), (8, 4, True, [4, 4]),
    (3, 5, False, [3]), (3, 5, True, []), (10, 1, False, [1] * 10),
])
def test_batches_cover_the_data_in_order(n, batch_size, drop_last, sizes):
    loader = DataLoader(_dataset(n), batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(sizes) == len(batches)
    assert [len(y) for _, y in batches] == sizes
    assert sum(_labels(loader), []) == list(range(sum(sizes)))
    for x, y in batches:
        assert x.shape == kiln.Size([len(y), 3]) and x.dtype == kiln.float32
        assert y.dtype == kiln.int64
        np.testing.assert_array_equal(x.numpy(), np.arange(n * 3).reshape(n, 3)[y.numpy()])


def test_shuffle_with_a_seeded_generator_is_reproducible_and_a_permutation():
    ds = _dataset(20)
    first = _labels(DataLoader(ds, batch_size=6, shuffle=True,
                               generator=Generator().manual_seed(7)))
    again = _labels(DataLoader(ds, batch_size=6, shuffle=True,
                               generator=Generator().manual_seed(7)))
    other = _labels(DataLoader(ds, batch_size=6, shuffle=True,
                               generator=Generator().manual_seed(8)))
    assert first == again and first != other
    assert sorted(sum(first, [])) == list(range(20)) and sum(first, []) != list(range(20))


def test_each_epoch_draws_a_new_order_from_the_generator():
    loader = DataLoader(_dataset(20), batch_size=20, shuffle=True,
                        generator=Generator().manual_seed(0))
    epochs = [_labels(loader)[0] for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    assert all(sorted(e) == list(range(20)) for e in epochs)


def test_shuffle_without_generator_follows_kiln_manual_seed():
    loader = DataLoader(_dataset(20), batch_size=5, shuffle=True)
    kiln.manual_seed(123)
    first = [_labels(loader), _labels(loader)]
    kiln.manual_seed(123)
    again = [_labels(loader), _labels(loader)]
    kiln.manual_seed(124)
    other = _labels(loader)
    assert first == again and first[0] != first[1] and other != first[0]


def test_generator_state_can_be_saved_and_restored():
    g = Generator().manual_seed(5)
    loader = DataLoader(_dataset(12), batch_size=12, shuffle=True, generator=g)
    _labels(loader)
    state = g.get_state()
    second = _labels(loader)
    g.manual_seed(99)
    g.set_state(state)
    assert _labels(loader) == second and g.initial_seed() == 5


def test_custom_sampler_batch_sampler_and_collate_fn():
    ds = _dataset(6)
    reverse = list(range(5, -1, -1))
    assert _labels(DataLoader(ds, batch_size=4, sampler=reverse)) == [[5, 4, 3, 2], [1, 0]]
    batches = BatchSampler(SequentialSampler(ds), batch_size=3, drop_last=False)
    loader = DataLoader(ds, batch_sampler=batches)
    assert len(loader) == 2 and _labels(loader) == [[0, 1, 2], [3, 4, 5]]
    sizes = DataLoader(ds, batch_size=4, collate_fn=len)
    assert list(sizes) == [4, 2]


def test_batch_size_none_yields_single_converted_samples():
    class Arrays(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.full(3, i, dtype=np.int32), i

    samples = list(DataLoader(Arrays(), batch_size=None))
    assert len(samples) == 2 and isinstance(samples[1][0], kiln.Tensor)
    assert samples[1][0].dtype == kiln.int32 and samples[1][1] == 1


@pytest.mark.parametrize("kwargs, error, match", [
    ({"shuffle": True, "sampler": [0, 1]}, ValueError, "mutually exclusive with shuffle"),
    ({"batch_sampler": [[0]], "batch_size": 2}, ValueError, "batch_sampler"),
    ({"batch_size": None, "drop_last": True}, ValueError, "drop_last"),
    ({"batch_size": 0}, ValueError, "positive integer"),
    ({"num_workers": -1}, ValueError, "non-negative"),
])
def test_invalid_loader_options_are_rejected_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(_dataset(4), **kwargs)


def test_collate_of_numbers_follows_torch_dtypes():
    assert default_collate([1, 2]).dtype == kiln.int64
    assert default_collate([1.5, 2]).dtype == kiln.float64
    assert default_collate([True, False]).dtype == kiln.bool
    assert default_collate([np.float32(1), np.float32(2)]).dtype == kiln.float32
    assert default_collate(["a", "b"]) == ["a", "b"]


def test_collate_of_nested_tuples_lists_dicts_and_named_tuples():
    Pair = collections.namedtuple("Pair", "a b")
    batch = [{"x": (kiln.ones(2), [1, 2.0]), "p": Pair(np.zeros(2), 3)},
             {"x": (kiln.zeros(2), [3, 4.0]), "p": Pair(np.ones(2), 4)}]
    out = default_collate(batch)
    assert list(out) == ["x", "p"]
    (xs, (ints, floats)) = out["x"]
    assert isinstance(out["x"], list)    # tuples collate to lists, as in PyTorch
    assert xs.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert ints.tolist() == [1, 3] and floats.tolist() == [2.0, 4.0]
    assert isinstance(out["p"], Pair) and out["p"].b.tolist() == [3, 4]
    assert out["p"].a.dtype == kiln.float64 and out["p"].a.shape == kiln.Size([2, 2])


def test_collate_errors_name_the_problem():
    with pytest.raises(kiln.ShapeError, match=r"equal size.*\[2\] at entry 0 and \[3\]"):
        default_collate([kiln.ones(2), kiln.ones(3)])
    with pytest.raises(kiln.ShapeError, match="equal size"):
        default_collate([(1, 2), (1,)])
    with pytest.raises(TypeError, match="found object"):
        default_collate([object(), object()])


def test_training_loop_over_a_loader_runs_like_pytorch():
    x = kiln.randn(32, 3)
    y = (x @ kiln.tensor([1.0, -2.0, 0.5]))
    w = kiln.zeros(3, requires_grad=True)
    opt = kiln.optim.SGD([w], lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    for _ in range(30):
        for xb, yb in loader:
            opt.zero_grad()
            ((xb @ w - yb) ** 2).mean().backward()
            opt.step()
    np.testing.assert_allclose(w.detach().numpy(), [1.0, -2.0, 0.5], atol=1e-3)


def test_random_sampler_with_replacement_and_num_samples():
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=50,
                               generator=Generator().manual_seed(0)))
    assert len(drawn) == 50 and set(drawn) == {0, 1, 2}
    cycled = list(RandomSampler(range(4), num_samples=10, generator=Generator().manual_seed(0)))
    assert len(cycled) == 10 and sorted(cycled[:4]) == sorted(cycled[4:8]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(range(3), num_samples=0)


MODULES = ["kiln.utils.data", "kiln.utils.data.dataset", "kiln.utils.data.dataloader",
           "kiln.utils.data.sampler", "kiln.utils.data.generator"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0

