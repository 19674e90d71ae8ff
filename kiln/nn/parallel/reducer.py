"""The eager gradient reduction of one DDP step: buckets filled as the backward makes the
gradients, each all-reduced (averaged) as soon as it is full, while the backward goes on.

A step begins at DDP's forward, which says how many gradient contributions each parameter
will get (`expect`: the proxy nodes the backward will reach; proxies.py). During the backward
each contribution is added into the parameter's slot of its bucket (the first one on top of
the `.grad` accumulated so far, as PyTorch reduces `.grad` itself after `no_sync()` steps).
A full bucket starts its all-reduce on the communication thread, buckets in index order on
every rank (a bucket that fills early waits for the ones before it), so all ranks issue the
same collectives in the same order. When the last bucket has started, the reducer waits for
them all and writes the averaged gradients into `.grad`.
"""
from __future__ import annotations

import numpy as np

from kiln.frontend.tensor import Tensor
from kiln.ir.errors import KilnError


class ReductionError(KilnError, RuntimeError):
    """A DDP step whose gradients were not all reduced (PyTorch raises RuntimeError)."""


class Reducer:
    def __init__(self, params: list, buckets: list, engine_of, as_views: bool):
        self.params = params
        self.buckets = buckets
        self.engine_of = engine_of      # NOTE: () -> the default group's engine, looked up late
        self.as_views = as_views
        self.where = {}                 # param index -> (bucket, member position)
        for b in buckets:
            for k, i in enumerate(b.members):
                self.where[i] = (b, k)
        self.expected: list[int] = [0] * len(params)
        self.active = False

    # ---- one step -------------------------------------------------------------------------
    def expect(self, counts: list[int]) -> None:
        """A new step: parameter i will get counts[i] contributions."""
        self.expected = list(counts)
        self.got = [0] * len(self.params)
        self.pending = [sum(1 for i in b.members if counts[i]) for b in self.buckets]
        self.scale = 1.0 / self.engine_of().group.size
        self.started = False
        self.launched = 0
        self.works: list = []
        self.active = True

    def contribute(self, i: int, g) -> None:
        """Contribution `g` (a Tensor or None) to parameter i's gradient."""
        if not self.active:
            raise ReductionError("DistributedDataParallel: a gradient arrived outside a step "
                                 "(a second backward through the same forward?)")
        if not self.started:
            self._start()
        b, k = self.where[i]
        if self.got[i] == 0:
            self._fill(i, b.slot(k), g)
        elif g is not None:
            slot = b.slot(k).reshape(g._data.shape)
            np.add(slot, g._data * self.scale if self.scale != 1 else g._data, out=slot)
        self.got[i] += 1
        if self.got[i] > self.expected[i]:
            raise ReductionError(f"DistributedDataParallel: parameter {i} got more gradients "
                                 "than the forward prepared (a second backward through the "
                                 "same forward is not supported)")
        if self.got[i] == self.expected[i]:
            self.pending[b.index] -= 1
            self._launch_ready()

    def _start(self) -> None:
        """The backward began: parameters no proxy reaches (unused in this forward) give
        their current `.grad` (or zeros) now."""
        self.started = True
        for i, n in enumerate(self.expected):
            if n == 0:
                b, k = self.where[i]
                self._fill(i, b.slot(k), None)

    def _fill(self, i: int, slot: np.ndarray, g) -> None:
        """The slot's first value: (`.grad` so far + g) / world size, in one pass when there
        is no `.grad` yet (the sum over ranks is then the average: no pass after it)."""
        old = self.params[i]._grad
        shaped = slot.reshape(self.params[i]._data.shape)
        if old is None and g is None:
            slot[...] = 0
        elif old is None:
            np.multiply(g._data, self.scale, out=shaped, casting="unsafe")
        else:
            if g is None:
                np.copyto(shaped, old._data)
            else:
                np.add(old._data, g._data, out=shaped, casting="unsafe")
            if self.scale != 1:
                slot *= self.scale

    def _launch_ready(self) -> None:
        engine = self.engine_of()
        while self.launched < len(self.buckets) and self.pending[self.launched] == 0:
            self.works.append(engine.submit(bucket_job(self.buckets[self.launched])))
            self.launched += 1
        if self.launched == len(self.buckets):
            self._finish()

    def _finish(self) -> None:
        """Each bucket's gradients into `.grad` as soon as its all-reduce is done (while
        later buckets' may still run)."""
        self.active = False
        for b, work in zip(self.buckets, self.works):
            work.wait()
            for k, i in enumerate(b.members):
                self._write_grad(self.params[i], b.slot(k))

    def _write_grad(self, p, slot: np.ndarray) -> None:
        value = slot.reshape(p._data.shape)
        if p._grad is not None and p._grad._data.shape == value.shape:
            np.copyto(p._grad._data, value)
            p._grad._version[0] += 1
        else:
            p.grad = Tensor._wrap(value if self.as_views else value.copy())

    # ---- between steps --------------------------------------------------------------------
    def check_finished(self) -> None:
        """Before a new forward: a backward that began must have reduced every bucket."""
        if not self.active or not self.started:
            self.active = False
            return
        self.active = False
        missing = [i for i, n in enumerate(self.expected) if self.got[i] < n]
        raise ReductionError(
            f"DistributedDataParallel: expected to have finished reduction in the prior "
            f"iteration before starting a new one; {len(missing)} parameter(s) did not get "
            f"their gradients (indices {missing[:10]}). The backward did not reach every "
            "parameter the forward used (backward(inputs=...), autograd.grad, or an output "
            "left out of the loss?)")


def bucket_job(bucket):
    """The all-reduce (a sum) of `bucket`, whose slots hold gradients already divided by the
    world size: their sum is the average.

    NOTE: the communication thread needs the GIL after each of its steps, and it gets it
    only between the NumPy calls of the backward running meanwhile: it is given one step (no
    division after the sum), with the signature check for a step's first bucket alone (the
    buckets' layout was compared across ranks when the model was wrapped)."""
    from kiln.distributed import jobs
    job = jobs.AllReduce(bucket.buffer, "sum")
    job.check = bucket.index == 0
    return job
