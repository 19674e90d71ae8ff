"""Datasets: TensorDataset, Subset, ConcatDataset and random_split (lengths, fractions,
disjointness, reproducibility, errors)."""
from __future__ import annotations

import pytest

import kiln
from kiln.utils.data import ConcatDataset, Generator, Subset, TensorDataset, random_split


def test_tensor_dataset_indexes_every_tensor_along_the_first_dimension():
    x, y = kiln.arange(12.0).reshape(4, 3), kiln.tensor([0, 1, 0, 1])
    ds = TensorDataset(x, y)
    assert len(ds) == 4
    xi, yi = ds[2]
    assert xi.tolist() == [6.0, 7.0, 8.0] and yi.item() == 0 and yi.ndim == 0
    assert ds[-1][1].item() == 1


def test_tensor_dataset_rejects_mismatched_first_dimensions_clearly():
    with pytest.raises(kiln.ShapeError, match=r"size mismatch.*\[4, 3\], \[5\]"):
        TensorDataset(kiln.zeros(4, 3), kiln.zeros(5))
    with pytest.raises(kiln.ShapeError, match="0-d"):
        TensorDataset(kiln.tensor(1.0))
    with pytest.raises(TypeError, match="argument 1 is a list"):
        TensorDataset(kiln.zeros(2), [1, 2])
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()


def test_subset_and_concat_dataset():
    sub = Subset(list("abcdef"), [4, 0, 2])
    assert len(sub) == 3 and [sub[i] for i in range(3)] == ["e", "a", "c"]
    cat = ConcatDataset([list("ab"), list("cde")])
    assert len(cat) == 5 and [cat[i] for i in range(5)] == list("abcde") and cat[-1] == "e"
    with pytest.raises(IndexError):
        cat[5]


def _indices(split):
    return list(split.indices)


@pytest.mark.parametrize("lengths, want", [
    ([3, 7], [3, 7]), ([0.3, 0.7], [3, 7]), ([0.5, 0.25, 0.25], [6, 2, 2]),
    ([1 / 3, 1 / 3, 1 / 3], [4, 3, 3]), ([10, 0], [10, 0]),
])
def test_random_split_lengths_and_fractions(lengths, want):
    splits = random_split(range(10), lengths, generator=Generator().manual_seed(0))
    assert [len(s) for s in splits] == want
    together = sum((_indices(s) for s in splits), [])
    assert sorted(together) == list(range(10))      # disjoint and complete


def test_random_split_is_random_and_reproducible():
    first = [_indices(s) for s in random_split(range(50), [25, 25],
                                               generator=Generator().manual_seed(1))]
    again = [_indices(s) for s in random_split(range(50), [25, 25],
                                               generator=Generator().manual_seed(1))]
    assert first == again and first[0] != list(range(25))
    kiln.manual_seed(3)
    a = _indices(random_split(range(50), [0.5, 0.5])[0])
    kiln.manual_seed(3)
    assert _indices(random_split(range(50), [0.5, 0.5])[0]) == a


def test_random_split_rejects_bad_lengths():
    with pytest.raises(ValueError, match=r"sum of input lengths \(9\) does not equal .* \(10\)"):
        random_split(range(10), [4, 5])
    with pytest.raises(ValueError, match="non-negative ints"):
        random_split(range(10), [12, -2])
    with pytest.raises(ValueError, match=r"fraction at index 2 \(-0.2\)"):
        random_split(range(10), [0.6, 0.6, -0.2])
    with pytest.warns(UserWarning, match="index 1 is 0"):
        random_split(range(2), [0.9, 0.1])
