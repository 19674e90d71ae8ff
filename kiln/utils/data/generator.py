"""`kiln.Generator`: a seeded source of randomness for shuffling and splitting data.

Each draw takes a fresh 63-bit seed from (base seed, draw count), the same scheme as Kiln's
global seed state, so a generator's sequence depends only on its seed and how many draws came
before; `get_state()`/`set_state()` save and restore that position.
"""
from __future__ import annotations

import os

import numpy as np

from kiln.frontend.creation import SEEDS, tensor
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes
from kiln.ir.errors import KilnError

DEFAULT_SEED = 67280421310721   # NOTE: the seed a fresh torch.Generator() starts from


class Generator:
    """A random number generator for data loading, like `torch.Generator` (Kiln exports it
    as `kiln.Generator` too).

    >>> import kiln
    >>> from kiln.utils.data import DataLoader, Generator
    >>> g = Generator().manual_seed(0)
    >>> g.initial_seed()
    0
    >>> a = [b.tolist() for b in DataLoader(kiln.arange(6), batch_size=3, shuffle=True,
    ...                                     generator=Generator().manual_seed(1))]
    >>> b = [b.tolist() for b in DataLoader(kiln.arange(6), batch_size=3, shuffle=True,
    ...                                     generator=Generator().manual_seed(1))]
    >>> a == b, sorted(a[0] + a[1])
    (True, [0, 1, 2, 3, 4, 5])
    """

    def __init__(self, device="cpu"):
        if str(getattr(device, "type", device)).split(":")[0] != "cpu":
            raise KilnError(f"kiln.Generator: only CPU generators exist, got device {device!r}")
        self.manual_seed(DEFAULT_SEED)

    def manual_seed(self, seed: int) -> "Generator":
        """Restart from `seed`; returns the generator (`Generator().manual_seed(0)`)."""
        self._base = int(seed)
        self._count = 0
        return self

    def seed(self) -> int:
        """Restart from a non-deterministic seed and return it."""
        seed = int.from_bytes(os.urandom(8), "little") >> 1
        self.manual_seed(seed)
        return seed

    def initial_seed(self) -> int:
        return self._base

    def get_state(self) -> Tensor:
        """The generator's position: an int64 tensor [seed, draws] for `set_state`."""
        return tensor([self._base, self._count], dtype=dtypes.int64)

    def set_state(self, state: Tensor) -> "Generator":
        values = state.tolist() if isinstance(state, Tensor) else list(state)
        if len(values) != 2:
            raise KilnError(f"kiln.Generator.set_state: expected the 2-element state that "
                            f"get_state() returns, got {len(values)} elements")
        self._base, self._count = int(values[0]), int(values[1])
        return self

    def next_seed(self) -> int:
        """A fresh 63-bit seed; advances the generator by one draw."""
        n = self._count
        self._count += 1
        return _mix(self._base, n)


def _mix(base: int, n: int) -> int:
    state = np.random.SeedSequence([base & (2**63 - 1), n]).generate_state(1, np.uint64)[0]
    return int(state >> 1)


def next_seed(generator: Generator | None) -> int:
    """A seed from `generator`, or from Kiln's global seed state (`kiln.manual_seed`)."""
    return SEEDS.next() if generator is None else generator.next_seed()


def numpy_rng(generator: Generator | None = None) -> np.random.Generator:
    """A NumPy generator seeded by one draw: for indices (which samples, in which order), not
    tensor math, which goes through Kiln's ops."""
    return np.random.default_rng(next_seed(generator))


def randperm(n: int, generator: Generator | None = None) -> list[int]:
    """A random permutation of range(n) as a list of ints."""
    return numpy_rng(generator).permutation(n).tolist()
