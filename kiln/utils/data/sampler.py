"""Samplers: which dataset indices a `DataLoader` reads, in which order and batches.

The random samplers draw as PyTorch's do (`randperm`, `randint` by 32, `multinomial`), so
with the same seed they give PyTorch's indices."""
from __future__ import annotations

import numpy as np

from .generator import Generator, impl_of, next_seed, randint, randperm


class Sampler:
    """Base class: an iterable of dataset indices (subclasses define `__iter__`)."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """Random indices, drawn afresh each epoch: a permutation (repeated and cut to
    `num_samples` if that is given), or `num_samples` draws with replacement, PyTorch's.

    Without `generator`, each epoch seeds a fresh Generator from the default one (PyTorch's
    way), so `kiln.manual_seed(s)` gives `torch.manual_seed(s)`'s order.

    >>> from kiln.utils.data import Generator
    >>> list(RandomSampler(range(5), generator=Generator().manual_seed(3)))
    [1, 0, 3, 4, 2]
    >>> len(RandomSampler(range(5), replacement=True, num_samples=8))
    8
    """

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None,
                 generator: Generator | None = None):
        if num_samples is not None and (isinstance(num_samples, bool)
                                        or not isinstance(num_samples, int) or num_samples <= 0):
            raise ValueError(f"num_samples should be a positive integer value, but got "
                             f"num_samples={num_samples!r}")
        self.data_source = data_source
        self.replacement = bool(replacement)
        self._num_samples = num_samples
        self.generator = generator

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        generator = self.generator
        if generator is None:
            generator = Generator().manual_seed(next_seed(None))
        if self.replacement:
            for _ in range(self.num_samples // 32):
                yield from randint(n, 32, generator)
            yield from randint(n, self.num_samples % 32, generator)
        elif n:
            for _ in range(self.num_samples // n):
                yield from randperm(n, generator)
            yield from randperm(n, generator)[:self.num_samples % n]

    def __len__(self) -> int:
        return self.num_samples


class WeightedRandomSampler(Sampler):
    """`num_samples` indices drawn from 0..len(weights)-1 with probability proportional to
    `weights` (they need not sum to one), with replacement by default: PyTorch's
    `multinomial` on the weights as float64, so the same seed gives PyTorch's indices.

    >>> from kiln.utils.data import Generator
    >>> s = WeightedRandomSampler([0.0, 1.0, 3.0], 1000, generator=Generator().manual_seed(0))
    >>> draws = list(s)
    >>> len(draws), draws.count(0), 0.7 < draws.count(2) / 1000 < 0.8
    (1000, 0, True)
    """

    def __init__(self, weights, num_samples: int, replacement: bool = True,
                 generator: Generator | None = None):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got "
                             f"num_samples={num_samples!r}")
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement should be a boolean value, but got "
                             f"replacement={replacement!r}")
        self.weights = _weights_array(weights)
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = generator

    def __iter__(self):
        w = self._checked_weights()
        draws = impl_of(self.generator).multinomial(w[None, :], self.num_samples,
                                                    self.replacement)
        return iter(draws[0].tolist())

    def _checked_weights(self) -> np.ndarray:
        w = self.weights
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise RuntimeError("invalid multinomial distribution (encountering probability "
                               "entry < 0, inf or nan)")
        if w.sum() <= 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        if not self.replacement and np.count_nonzero(w) < self.num_samples:
            raise RuntimeError(f"invalid multinomial distribution (with replacement=False, "
                               f"not enough non-negative category to sample): "
                               f"{np.count_nonzero(w)} nonzero weights for num_samples="
                               f"{self.num_samples}")
        return w

    def __len__(self) -> int:
        return self.num_samples


def _weights_array(weights) -> np.ndarray:
    """The weights as float64 NumPy (from a tensor, an array or a sequence), checked 1-D."""
    if hasattr(weights, "_kiln_apply"):
        weights = weights.detach().cpu().numpy()
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"weights should be a 1d sequence but given weights have shape "
                         f"{tuple(w.shape)}")
    return w


class SubsetRandomSampler(Sampler):
    """The given indices in a random order (PyTorch's `randperm` over them).

    >>> from kiln.utils.data import Generator
    >>> list(SubsetRandomSampler([10, 20, 30], generator=Generator().manual_seed(0)))
    [30, 10, 20]
    """

    def __init__(self, indices, generator: Generator | None = None):
        self.indices = indices
        self.generator = generator

    def __iter__(self):
        for i in randperm(len(self.indices), self.generator):
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler(Sampler):
    """Group a sampler's indices into lists of `batch_size` (the last may be short).

    >>> list(BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False))
    [[0, 1], [2, 3], [4]]
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size!r}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self):
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
