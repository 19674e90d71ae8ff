"""Launch compiled CPU kernels: ctypes calls, split over a small pool of threads.

A kernel function is `void f(ptr..., i64 lo, i64 hi)` over rows [lo, hi) of its outermost
loop (see codegen/cpu/render_kernel.py). ctypes releases the GIL during the call, so the
pieces of one launch run on all cores.

Handing work to another thread costs 30-60 us on the 2-core machine this was tuned on,
so a launch is split only when its estimated work (elements x ops per element) is large:
W1 (about 100 ops per element) splits from about 300k elements, a plain add from about 2M.

A split launch runs on one worker thread per core, each pinned to its core, taking pieces
of the outer loop from a shared counter until none is left, while the caller waits.
NOTE: unpinned, Linux often woke the worker on the caller's core and left the other core
idle for the whole launch: W1 at 2**24 took 11-12 ms in half the calls instead of 6 (its
CPU time equal to its wall time). Pieces taken in turn, rather than one half each, keep a
core that something else is using from holding up the launch.
"""
from __future__ import annotations

import ctypes
import os
import queue
import threading
import weakref

# NOTE: measured breakeven: W1 at 2**18 elements (2.6e7 units) runs in the same time on one
# or two threads; a float32 add gains from 2**22 elements (5.4e7 units).
MIN_PARALLEL_WORK = 30_000_000
# NOTE: taking a piece costs a few us of Python; a piece of less work than this is not
# worth its own turn.
MIN_PIECE_WORK = 10_000_000
MAX_PIECES_PER_THREAD = 8


def default_threads() -> int:
    """KILN_NUM_THREADS, else the cores this process may run on."""
    env = os.environ.get("KILN_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)))


def _pin_to(core: int | None) -> None:
    if core is None:
        return
    try:
        os.sched_setaffinity(0, {core})     # 0: the calling thread
    except OSError:                          # NOTE: a core taken away since: run unpinned
        pass


class _Workers:
    """Daemon threads, one per core when there are enough cores (pinned to it), each taking
    jobs from its own queue: a job runs pieces from a shared iterator until it is empty.
    NOTE: SimpleQueue (C) wakes a thread about twice as fast as ThreadPoolExecutor."""

    def __init__(self, count: int):
        cores = sorted(os.sched_getaffinity(0))
        pin = len(cores) >= count
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.todo = [queue.SimpleQueue() for _ in range(count)]
        for i, todo in enumerate(self.todo):
            core = cores[i] if pin else None
            threading.Thread(target=self._loop, args=(todo, core), name=f"kiln-cpu-{i}",
                             daemon=True).start()

    def _loop(self, todo: queue.SimpleQueue, core: int | None):
        _pin_to(core)
        while True:
            job = todo.get()
            if job is None:
                return
            fn, pointers, pieces = job
            error = None
            for lo, hi in pieces:
                if error is None:
                    try:
                        fn(*pointers, lo, hi)
                    except BaseException as e:  # NOTE: re-raised by the launching thread
                        error = e
            # NOTE: after an error the pieces are still drained, so the other workers stop
            self.done.put(error)

    def run(self, fn, pointers: list, parts: list) -> None:
        pieces = iter(parts)     # NOTE: next() on a list iterator is atomic under the GIL
        for todo in self.todo:
            todo.put((fn, pointers, pieces))
        errors = [self.done.get() for _ in self.todo]
        for e in errors:
            if e is not None:
                raise e

    def stop(self):
        for todo in self.todo:
            todo.put(None)


class CpuLauncher:
    """Runs kernel functions over (lo, hi) pieces on `threads` threads.
    One launch at a time per launcher (a lock), so pieces of two launches never mix."""

    def __init__(self, threads: int | None = None, min_parallel_work: int = MIN_PARALLEL_WORK):
        self.threads = threads or default_threads()
        self.min_parallel_work = min_parallel_work
        self._workers: _Workers | None = None
        self._lock = threading.Lock()
        _LAUNCHERS.add(self)

    def chunks(self, outer: int, work: int) -> list[tuple[int, int]]:
        """The (lo, hi) pieces of the outer loop one launch is split into: one when the work
        is too small to share, else between one and MAX_PIECES_PER_THREAD per thread."""
        if self.threads <= 1 or outer <= 1 or work < self.min_parallel_work:
            return [(0, outer)]
        pieces = max(self.threads, min(self.threads * MAX_PIECES_PER_THREAD,
                                       work // MIN_PIECE_WORK))
        n = min(pieces, outer)
        bounds = [outer * i // n for i in range(n + 1)]
        return [(bounds[i], bounds[i + 1]) for i in range(n)]

    def launch(self, fn, pointers: list[int], outer: int, work: int):
        """Call fn(*pointers, lo, hi) over [0, outer), in parallel when worth it."""
        parts = self.chunks(outer, work)
        if len(parts) == 1:
            fn(*pointers, 0, outer)
            return
        with self._lock:
            if self._workers is None:
                self._workers = _Workers(self.threads)
            self._workers.run(fn, pointers, parts)

    def close(self):
        """Stop this launcher's threads (a later parallel launch starts new ones)."""
        with self._lock:
            if self._workers is not None:
                self._workers.stop()
                self._workers = None

    def _forget_threads(self):
        # NOTE: in a forked child the threads are gone (only the forking thread survives),
        # and a launch would wait for them forever; the lock may be held by a thread that
        # is gone too.
        self._workers = None
        self._lock = threading.Lock()


_LAUNCHERS: "weakref.WeakSet[CpuLauncher]" = weakref.WeakSet()


def _after_fork_in_child():
    for launcher in list(_LAUNCHERS):
        launcher._forget_threads()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def kernel_function(address: int, n_buffers: int):
    """A ctypes callable for `void f(ptr * n_buffers, i64 lo, i64 hi)` at `address`."""
    proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * n_buffers), ctypes.c_int64,
                             ctypes.c_int64)
    return proto(address)


_DEFAULT: CpuLauncher | None = None


def default_launcher() -> CpuLauncher:
    """The process-wide launcher (created on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CpuLauncher()
    return _DEFAULT
