"""`DataLoader`: batches of samples from a dataset, and `default_collate`, which stacks them.

Batches are read in the main process (`num_workers=0`) or, as in PyTorch, by worker processes
(`num_workers=N`, `_WorkerPool` below); collation stacks tensors with Kiln's own `stack`, so a
batch is an ordinary Kiln tensor.
"""
from __future__ import annotations

import collections.abc as abc
import multiprocessing
import numbers
import pickle
import queue
import random
import signal
import sys
import time
import traceback
import weakref

import numpy as np

from kiln.frontend import functional as F
from kiln.frontend.creation import tensor
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes
from kiln.ir.errors import NotSupportedError, ShapeError

from .generator import Generator, next_seed
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
    or, without one, from Kiln's global seed state (`kiln.manual_seed`). With
    `num_workers=N`, N worker processes (`multiprocessing_context`, default the platform's
    start method) load batches ahead (`prefetch_factor` each) and the batches come back in
    order; each worker is seeded with base seed + its id and runs `worker_init_fn(id)` first;
    `persistent_workers=True` keeps them between epochs. Without workers, batches are loaded
    in the main process.

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
        _check_workers(num_workers, timeout, prefetch_factor, persistent_workers)
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
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers else prefetch_factor
        self.persistent_workers = persistent_workers
        self._pool = None
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None
                                         else default_convert)

    def __iter__(self):
        # NOTE: like PyTorch, an epoch first draws the workers' base seed (also without
        # workers), so the shuffle order does not depend on num_workers; persistent workers
        # keep theirs (PyTorch draws it when it makes the iterator, once)
        pool = self._pool
        reuse = self.num_workers > 0 and pool is not None and pool.alive()
        base_seed = None if reuse else next_seed(self.generator)
        tasks = iter(self.sampler if self.batch_sampler is None else self.batch_sampler)
        if self.num_workers == 0:
            return self._single_process(tasks)
        if not reuse:
            pool = _WorkerPool(self, base_seed)
            if self.persistent_workers:
                self._pool = pool
        return pool.run_epoch(tasks, self.timeout, self.prefetch_factor * self.num_workers,
                              keep=self.persistent_workers)

    def _single_process(self, tasks):
        for task in tasks:
            yield _fetch(self.dataset, self.collate_fn, self.batch_sampler is not None, task)

    def __len__(self) -> int:
        return len(self.sampler if self.batch_sampler is None else self.batch_sampler)


def _fetch(dataset, collate_fn, auto_batch: bool, task):
    """One batch (or, without auto-batching, one converted sample)."""
    if auto_batch:
        return collate_fn([dataset[i] for i in task])
    return collate_fn(dataset[task])


def _check_workers(num_workers: int, timeout: float, prefetch_factor, persistent: bool) -> None:
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError("DataLoader: num_workers option should be non-negative; use "
                         "num_workers=0 to disable multiprocessing")
    if timeout < 0:
        raise ValueError("DataLoader: timeout option should be non-negative")
    if num_workers == 0 and prefetch_factor is not None:
        raise ValueError("DataLoader: prefetch_factor option could only be specified in "
                         "multiprocessing; let num_workers > 0 to enable multiprocessing, "
                         "otherwise set prefetch_factor to None")
    if prefetch_factor is not None and prefetch_factor < 1:
        raise ValueError(f"DataLoader: prefetch_factor option should be a positive integer, "
                         f"got {prefetch_factor}")
    if persistent and num_workers == 0:
        raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")


# ---- worker processes ------------------------------------------------------------------------
class WorkerInfo:
    """What `get_worker_info()` returns inside a worker: `id`, `num_workers`, `seed` and the
    worker's copy of `dataset`."""

    def __init__(self, id: int, num_workers: int, seed: int, dataset):
        self.id = id
        self.num_workers = num_workers
        self.seed = seed
        self.dataset = dataset

    def __repr__(self):
        return (f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, "
                f"dataset={type(self.dataset).__name__})")


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """Inside a DataLoader worker process, its `WorkerInfo`; in the main process, None."""
    return _worker_info


class _WorkerError:
    """An exception raised in a worker, carried back to the main process with its traceback."""

    def __init__(self, worker_id: int, where: str):
        self.exc_type = _picklable_type(sys.exc_info()[0])
        self.message = (f"Caught {self.exc_type.__name__}{where} in DataLoader worker process "
                        f"{worker_id}.\nOriginal {traceback.format_exc()}")

    def reraise(self):
        message = self.message
        if self.exc_type is KeyError:   # NOTE: KeyError shows repr(message): keep the lines
            message = _Lines(message)
        try:
            error = self.exc_type(message)
        except Exception:   # NOTE: an exception type whose constructor needs other arguments
            error = RuntimeError(self.message)
        raise error


class _Lines(str):
    def __repr__(self):
        return str(self)


def _picklable_type(kind: type) -> type:
    try:
        pickle.loads(pickle.dumps(kind))
        return kind
    except Exception:
        return RuntimeError


def _seed_worker(seed: int) -> None:
    """PyTorch's worker seeding: Kiln's global generator and Python's `random` (not NumPy's)."""
    from kiln.frontend.creation import manual_seed
    random.seed(seed)
    manual_seed(seed)


def _worker_loop(dataset, index_queue, result_queue, collate_fn, auto_batch: bool,
                 worker_id: int, num_workers: int, seed: int, init_fn) -> None:
    """A worker: read (key, task) until None; put (key, batch or _WorkerError) back."""
    global _worker_info
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # NOTE: Ctrl-C is the main process's
    _seed_worker(seed)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    init_error = None
    if init_fn is not None:
        try:
            init_fn(worker_id)
        except Exception:
            init_error = _WorkerError(worker_id, " in worker_init_fn")
    while True:
        item = index_queue.get()
        if item is None:
            break
        key, task = item
        if init_error is not None:
            result_queue.put((key, init_error))
            continue
        try:
            data = _fetch(dataset, collate_fn, auto_batch, task)
        except Exception:
            data = _WorkerError(worker_id, "")
        result_queue.put((key, data))


def _mp_context(context):
    if context is None:
        return multiprocessing.get_context()
    if isinstance(context, str):
        return multiprocessing.get_context(context)
    return context


def _check_picklable(loader, method: str) -> None:
    """With 'spawn' or 'forkserver' the dataset and functions reach the workers by pickling:
    check it here, so the error names the cause instead of a worker dying at start."""
    if method == "fork":
        return
    for what, value in (("dataset", loader.dataset), ("collate_fn", loader.collate_fn),
                        ("worker_init_fn", loader.worker_init_fn)):
        try:
            pickle.dumps(value)
        except Exception as e:
            raise NotSupportedError(
                f"not supported yet: DataLoader(num_workers={loader.num_workers}) with the "
                f"'{method}' start method needs a picklable {what}: {type(e).__name__}: {e}",
                hint="define the Dataset class and functions at the top level of an importable "
                     "module, or pass multiprocessing_context='fork'") from e


class _WorkerPool:
    """The worker processes of a DataLoader: one task queue each, one shared result queue.
    Tasks go out round-robin, tagged (epoch, batch number); results are handed out in
    batch order."""

    def __init__(self, loader, base_seed: int):
        ctx = _mp_context(loader.multiprocessing_context)
        self.method = ctx.get_start_method()
        _check_picklable(loader, self.method)
        self.results = ctx.Queue()
        self.queues, self.workers = [], []
        auto_batch = loader.batch_sampler is not None
        n = loader.num_workers
        for wid in range(n):
            tasks = ctx.Queue()
            proc = ctx.Process(target=_worker_loop, daemon=True,
                               args=(loader.dataset, tasks, self.results, loader.collate_fn,
                                     auto_batch, wid, n, base_seed + wid,
                                     loader.worker_init_fn))
            proc.start()
            self.queues.append(tasks)
            self.workers.append(proc)
        self.epoch = 0
        self._finalizer = weakref.finalize(self, _shutdown, self.queues, self.workers,
                                           self.results, 5.0)

    def alive(self) -> bool:
        return self._finalizer.alive and all(p.is_alive() for p in self.workers)

    def shutdown(self, wait: float = 5.0) -> None:
        """Stop the workers: ask them to finish, then terminate those still running after
        `wait` seconds (0 after an error: a worker may be stuck in the dataset)."""
        if self._finalizer.alive:
            self._finalizer.detach()
            _shutdown(self.queues, self.workers, self.results, wait)

    def run_epoch(self, tasks, timeout: float, outstanding: int, keep: bool):
        """Yield the batches of `tasks` in order, keeping `outstanding` tasks in flight."""
        self.epoch += 1
        try:
            yield from self._epoch(tasks, timeout, outstanding)
        finally:
            if not keep:
                self.shutdown()

    def _epoch(self, tasks, timeout: float, outstanding: int):
        sent = received = 0
        ready: dict = {}
        for task in tasks:
            self.queues[sent % len(self.queues)].put(((self.epoch, sent), task))
            sent += 1
            if sent - received < outstanding:
                continue
            received = yield from self._hand_out(ready, received, timeout)
        while received < sent:
            received = yield from self._hand_out(ready, received, timeout)

    def _hand_out(self, ready: dict, received: int, timeout: float):
        """Wait for batch `received`, yield it; returns the next number to wait for."""
        while received not in ready:
            (epoch, number), data = self._get(timeout)
            if epoch == self.epoch:     # NOTE: a result of an abandoned epoch is dropped
                ready[number] = data
        data = ready.pop(received)
        if isinstance(data, _WorkerError):
            data.reraise()
        yield data
        return received + 1

    def _get(self, timeout: float):
        start = time.monotonic()
        while True:
            wait = 1.0 if timeout <= 0 else min(1.0, max(0.0, start + timeout - time.monotonic()))
            try:
                return self.results.get(timeout=wait)
            except queue.Empty:
                pass
            self._check_workers()
            if timeout > 0 and time.monotonic() - start >= timeout:
                self.shutdown(wait=0.0)
                raise RuntimeError(f"DataLoader timed out after {timeout} seconds")

    def _check_workers(self) -> None:
        dead = [p for p in self.workers if not p.is_alive()]
        if not dead:
            return
        self.shutdown(wait=0.0)
        pids = ", ".join(str(p.pid) for p in dead)
        codes = ", ".join(str(p.exitcode) for p in dead)
        hint = ""
        if self.method != "fork":
            hint = (f" (with the '{self.method}' start method each worker imports the main "
                    "module and unpickles the dataset: a Dataset defined in a script needs "
                    "the `if __name__ == '__main__':` guard, and one defined interactively "
                    "cannot be loaded)")
        raise RuntimeError(f"DataLoader worker (pid(s) {pids}) exited unexpectedly with exit "
                           f"code(s) {codes}{hint}")


def _shutdown(queues, workers, results, wait: float) -> None:
    for q in queues:
        try:
            q.put(None)
        except Exception:   # NOTE: a queue already closed
            pass
    deadline = time.monotonic() + wait
    for p in workers:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join()
    for q in [*queues, results]:
        q.cancel_join_thread()
        q.close()
