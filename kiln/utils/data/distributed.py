"""`DistributedSampler`: each rank's share of a dataset, as `torch.utils.data`'s."""
from __future__ import annotations

import math

from .generator import Generator, randperm
from .sampler import Sampler


class DistributedSampler(Sampler):
    """The indices rank `rank` of `num_replicas` reads: a permutation of the dataset (drawn
    afresh for each epoch from `seed + epoch`: call `set_epoch` before each epoch) cut into
    equal shards, rank r taking every num_replicas-th index from position r. To make the
    shards equal, indices are repeated from the start (`drop_last=False`) or the tail is
    dropped (`drop_last=True`). `num_replicas` and `rank` default to the default process
    group's. With the same seed it gives PyTorch's indices.

    >>> from kiln.utils.data.distributed import DistributedSampler
    >>> [list(DistributedSampler(range(5), num_replicas=2, rank=r, shuffle=False))
    ...  for r in (0, 1)]
    [[0, 2, 4], [1, 3, 0]]
    >>> s = DistributedSampler(range(5), num_replicas=2, rank=1, drop_last=True, seed=3)
    >>> len(s), len(list(s))
    (2, 2)
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if num_replicas is None or rank is None:
            from kiln import distributed as dist
            if not dist.is_initialized():
                raise RuntimeError("DistributedSampler needs num_replicas and rank, or an "
                                   "initialized default process group "
                                   "(kiln.distributed.init_process_group)")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or \
                num_replicas < 1:
            raise ValueError(f"num_replicas should be a positive integer, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank!r}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        n = len(dataset)
        if self.drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = randperm(n, Generator().manual_seed(self.seed + self.epoch))
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding and indices:
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """The epoch about to start: every rank must set the same one (it seeds the
        shuffle, so the shards of one epoch never overlap)."""
        self.epoch = epoch
