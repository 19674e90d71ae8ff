"""`DataLoader`: batches of samples from a dataset, and `default_collate`, which stacks them.

Batches are read in the main process (`num_workers=0`); collation stacks tensors with Kiln's
own `stack`, so a batch is an ordinary Kiln tensor.
"""
from __future__ import annotations

import collections.abc as abc
import numbers

import numpy as np

from kiln.frontend import functional as F
from kiln.frontend.creation import tensor
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes
from kiln.ir.errors import NotSupportedError, ShapeError

from .generator import Generator
from .sampler import BatchSampler, RandomSampler, SequentialSampler

_COLLATE_ERROR = ("default_collate: batch must contain tensors, NumPy arrays, numbers, dicts "
                  "or lists; found {}")


def default_collate(batch):
    """Merge a list of samples into a batch, as PyTorch's `default_collate` does: tensors are
    stacked along a new first dimension, Python ints become an int64 tensor and floats a
    float64 tensor, NumPy arrays become tensors, and tuples, lists and dicts are collated
    field by field (tuples come back as lists, as in PyTorch).

    >>> import kiln
    >>> default_collate([(kiln.tensor([1.0, 2.0]), 0), (kiln.tensor([3.0, 4.0]), 1)])
    [tensor([[1., 2.],
            [3., 4.]]), tensor([0, 1])]
    >>> default_collate([{"x": 0.5}, {"x": 1.5}])["x"].dtype
    kiln.float64
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack(batch)
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "USO":
            raise TypeError(_COLLATE_ERROR.format(f"NumPy array of dtype {elem.dtype}"))
        return _stack([tensor(b) for b in batch])
    if isinstance(elem, np.generic):
        return tensor(np.array(batch))
    if isinstance(elem, numbers.Integral):
        return tensor(batch, dtype=dtypes.bool_ if isinstance(elem, bool) else dtypes.int64)
    if isinstance(elem, numbers.Real):
        return tensor(batch, dtype=dtypes.float64)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, abc.Mapping):
        return _collate_mapping(elem, batch)
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, abc.Sequence):
        return _collate_sequence(elem, batch)
    raise TypeError(_COLLATE_ERROR.format(type(elem).__name__))


def _stack(batch: list) -> Tensor:
    shape = tuple(batch[0].shape)
    for i, t in enumerate(batch):
        if tuple(t.shape) != shape:
            raise ShapeError(f"default_collate: stack expects each tensor to be equal size, "
                             f"but got {list(shape)} at entry 0 and {list(t.shape)} at entry "
                             f"{i}")
    return F.stack(batch, 0)


def _collate_mapping(elem, batch):
    collated = {key: default_collate([sample[key] for sample in batch]) for key in elem}
    try:
        return type(elem)(collated)
    except TypeError:
        return collated


def _collate_sequence(elem, batch):
    size = len(elem)
    if any(len(sample) != size for sample in batch):
        raise ShapeError("default_collate: each element in list of batch should be of equal "
                         "size")
    fields = [default_collate(list(samples)) for samples in zip(*batch)]
    if isinstance(elem, tuple):
        return fields
    try:
        return type(elem)(fields)
    except TypeError:
        return fields


def default_convert(data):
    """Without batching (`batch_size=None`): NumPy arrays become tensors, the rest stays."""
    if isinstance(data, np.ndarray) and data.dtype.kind not in "USO":
        return tensor(data)
    if isinstance(data, abc.Mapping):
        return {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(v) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(default_convert(v) for v in data)
    return data


class DataLoader:
    """Iterate over a dataset in batches, like `torch.utils.data.DataLoader`.

    `shuffle=True` draws a new order each epoch from `generator` (a seeded `kiln.Generator`)
    or, without one, from Kiln's global seed state (`kiln.manual_seed`). Batches are loaded in
    the main process; `num_workers` must be 0.

    >>> import kiln
    >>> ds = kiln.utils.data.TensorDataset(kiln.arange(10.0).reshape(5, 2), kiln.arange(5))
    >>> loader = DataLoader(ds, batch_size=2)
    >>> len(loader), [y.tolist() for _, y in loader]
    (3, [[0, 1], [2, 3], [4]])
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler=None, batch_sampler=None, num_workers: int = 0, collate_fn=None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn=None, multiprocessing_context=None,
                 generator: Generator | None = None, *, prefetch_factor=None,
                 persistent_workers: bool = False, pin_memory_device: str = ""):
        _check_workers(num_workers)
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None
                                          or drop_last):
            raise ValueError("DataLoader: batch_sampler option is mutually exclusive with "
                             "batch_size, shuffle, sampler, and drop_last")
        if batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None option disables auto-batching and "
                             "is mutually exclusive with drop_last")
        if sampler is None:
            sampler = (RandomSampler(dataset, generator=generator) if shuffle
                       else SequentialSampler(dataset))
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset = dataset
        self.batch_size = None if batch_sampler is None else getattr(
            batch_sampler, "batch_size", batch_size)
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None
                                         else default_convert)

    def __iter__(self):
        if self.batch_sampler is None:
            for index in self.sampler:
                yield self.collate_fn(self.dataset[index])
            return
        for indices in self.batch_sampler:
            yield self.collate_fn([self.dataset[i] for i in indices])

    def __len__(self) -> int:
        return len(self.sampler if self.batch_sampler is None else self.batch_sampler)


def _check_workers(num_workers: int) -> None:
    if num_workers < 0:
        raise ValueError("DataLoader: num_workers option should be non-negative; use "
                         "num_workers=0 to disable multiprocessing")
    if num_workers > 0:
        raise NotSupportedError(
            f"not supported yet: DataLoader(num_workers={num_workers}); Kiln loads batches "
            "in the main process",
            hint="pass num_workers=0 (the batches and their order are the same)")
