"""`Work`: the handle a collective called with `async_op=True` returns."""
from __future__ import annotations

import threading
import time

_POLL_S = 0.05      # NOTE: how often a waiting rank looks at the watchdog's findings


class Work:
    """A collective in flight: `wait()` blocks until it completes (or raises the DistError
    that stopped it: a failed rank, a shape mismatch, the group's timeout).

    >>> import kiln, kiln.distributed as dist
    >>> dist.init_process_group("mpi")          # a world of one process
    >>> t = kiln.ones(3)
    >>> work = dist.all_reduce(t, async_op=True)
    >>> work.wait(), work.is_completed(), t.tolist()
    (True, True, [1.0, 1.0, 1.0])
    >>> dist.destroy_process_group()
    """

    def __init__(self, engine, job, seq: int, tensors=()):
        self.engine = engine
        self.job = job
        self.seq = seq
        self.tensors = list(tensors)
        self._done = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self):
        state = "done" if self._done.is_set() else "pending"
        return f"<Work #{self.seq} {self.job.describe()}: {state}>"

    def describe(self) -> str:
        return f"collective #{self.seq}, {self.job.describe()}"

    def finish(self, error: BaseException | None) -> None:
        """Called by the communication thread when the collective ended."""
        self._error = error
        self._done.set()

    def wait(self, timeout=None) -> bool:
        """Block until the collective completes; True, or raise why it could not.
        `timeout` (seconds or a timedelta) defaults to the group's."""
        limit = _seconds(timeout) if timeout is not None else self.engine.timeout
        deadline = time.monotonic() + limit
        while not self._done.wait(_POLL_S):
            failure = self.engine.failure_for(self.seq)
            if failure is not None:
                raise self.engine.broken_by(failure, self)
            if time.monotonic() > deadline:
                raise self.engine.timed_out(self, limit)
        if self._error is not None:
            raise self._error
        return True

    def is_completed(self) -> bool:
        return self._done.is_set()

    def is_success(self) -> bool:
        return self._done.is_set() and self._error is None

    def exception(self):
        return self._error

    def result(self) -> list:
        """The tensors the collective wrote (after `wait()`)."""
        return self.tensors

    def synchronize(self) -> None:
        self.wait()


class CompletedWork(Work):
    """A collective that already ran (inside `@kiln.jit` it is a node of the graph, run in
    order with the rest of it)."""

    def __init__(self, tensors=()):
        self.tensors = list(tensors)
        self.seq = 0
        self._error = None
        self._done = threading.Event()
        self._done.set()

    def __repr__(self):
        return "<Work: done>"

    def wait(self, timeout=None) -> bool:
        return True


def _seconds(timeout) -> float:
    if hasattr(timeout, "total_seconds"):
        return float(timeout.total_seconds())
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds or a timedelta, "
                         f"got {timeout!r}")
    return float(timeout)
