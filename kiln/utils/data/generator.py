"""`kiln.Generator` and the draws data loading makes from it, as PyTorch makes them.

`Generator` is PyTorch's CPU generator (frontend/torch_rng.py): the same seed gives the same
numbers as `torch.Generator().manual_seed(seed)`. Shuffling, splitting and worker seeds draw
with PyTorch's calls (`randperm`, `randint`, an int64 `random_()`), so `DataLoader(...,
shuffle=True)`, `random_split` and the samplers give PyTorch's orders for the same seed.

    >>> import kiln
    >>> from kiln.utils.data import DataLoader, Generator
    >>> g = Generator().manual_seed(0)
    >>> g.initial_seed()
    0
    >>> [b.tolist() for b in DataLoader(kiln.arange(6), batch_size=3, shuffle=True,
    ...                                 generator=Generator().manual_seed(1))]
    [[0, 4, 5], [1, 2, 3]]
"""
from __future__ import annotations

import numpy as np

from kiln.frontend.torch_rng import DEFAULT_SEED, Generator, impl_of  # noqa: F401

__all__ = ["Generator", "next_seed", "randperm", "randint"]


def next_seed(generator: Generator | None = None) -> int:
    """A seed drawn as PyTorch's DataLoader draws its workers' base seed: an int64
    `random_()` from `generator`, or from the default generator (`kiln.manual_seed`)."""
    return int(impl_of(generator).random_bits(1, np.int64)[0])


def randperm(n: int, generator: Generator | None = None) -> list[int]:
    """`torch.randperm(n, generator=generator).tolist()`."""
    return impl_of(generator).randperm(n).tolist()


def randint(high: int, size: int, generator: Generator | None = None) -> list[int]:
    """`torch.randint(high=high, size=(size,), generator=generator).tolist()`."""
    return impl_of(generator).random_range(size, np.int64, 0, high).tolist()
