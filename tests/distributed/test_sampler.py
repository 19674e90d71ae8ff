"""DistributedSampler: PyTorch's shards (compared with torch where installed), padding and
dropping, per-epoch shuffles, and its defaults from the default process group."""
from __future__ import annotations

import itertools

import pytest

from kiln.utils.data.distributed import DistributedSampler


@pytest.mark.parametrize("n, replicas, drop_last, shuffle", list(itertools.product(
    (0, 1, 5, 10, 17), (1, 2, 3, 4, 7), (False, True), (False, True))))
def test_same_indices_as_pytorch(n, replicas, drop_last, shuffle):
    torch_data = pytest.importorskip("torch.utils.data")
    for rank in range(replicas):
        for epoch in (0, 2):
            ours = DistributedSampler(range(n), replicas, rank, shuffle, seed=7,
                                      drop_last=drop_last)
            theirs = torch_data.DistributedSampler(range(n), replicas, rank, shuffle, seed=7,
                                                   drop_last=drop_last)
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_shards_cover_the_data_once_each_epoch():
    shards = [list(DistributedSampler(range(12), 3, r, seed=1)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(12))
    again = [DistributedSampler(range(12), 3, r, seed=1) for r in range(3)]
    for s in again:
        s.set_epoch(1)
    assert [list(s) for s in again] != shards


def test_padding_repeats_and_drop_last_cuts():
    padded = [list(DistributedSampler(range(5), 2, r, shuffle=False)) for r in range(2)]
    assert padded == [[0, 2, 4], [1, 3, 0]]
    cut = [list(DistributedSampler(range(5), 2, r, shuffle=False, drop_last=True))
           for r in range(2)]
    assert cut == [[0, 2], [1, 3]]


@pytest.mark.parametrize("replicas, rank, match", [
    (2, 2, r"Invalid rank 2, rank should be in the interval \[0, 1\]"),
    (2, -1, "Invalid rank -1"),
    (0, 0, "num_replicas should be a positive integer"),
])
def test_bad_arguments(replicas, rank, match):
    with pytest.raises(ValueError, match=match):
        DistributedSampler(range(4), replicas, rank)


def test_defaults_come_from_the_process_group(world):
    s = DistributedSampler(range(4))
    assert (s.num_replicas, s.rank) == (1, 0)


def test_defaults_need_a_process_group():
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(range(4))
