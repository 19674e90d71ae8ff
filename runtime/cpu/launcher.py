"""Launch compiled CPU kernels: ctypes calls, split over a small pool of threads.

A kernel function is `void f(ptr..., i64 lo, i64 hi)` over rows [lo, hi) of its outermost
loop (see codegen/cpu/render_kernel.py). ctypes releases the GIL during the call, so the
pieces of one launch run on all cores.

Handing work to another thread costs 30-60 us on the 2-core machine this was tuned on,
so a launch is split only when its estimated work (elements x ops per element) is large:
W1 (about 100 ops per element) splits from about 300k elements, a plain add from about 2M.

A split launch runs on one worker thread per core, each pinned to its core (when the thread
count is the process's core count), taking pieces of the outer loop in turn until none is
left, while the caller waits.
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


class _Job:
    """One split launch: its pieces, taken in turn by the workers, and when they are done.
    NOTE: the state is the launch's own (no queue shared between launches), so a launch the
    caller stopped waiting for can never be mistaken for the next one's completion."""

    def __init__(self, fn, pointers: list, parts: list):
        self.fn, self.pointers = fn, pointers
        self.pieces = iter(parts)
        self.left = len(parts)          # pieces not finished (or never to be run)
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
        """Run pieces until none is left (a worker that comes late finds none)."""
        while True:
            with self.lock:
                piece = next(self.pieces, None)
            if piece is None:
                return
            if self.error is None:      # NOTE: after an error the rest are only counted
                try:
                    self.fn(*self.pointers, *piece)
                except BaseException as e:  # NOTE: re-raised by the launching thread
                    with self.lock:
                        self.error = self.error or e
            self._done(1)

    def cancel(self) -> None:
        """No more pieces start; the launch is finished once those running are."""
        with self.lock:
            skipped = sum(1 for _ in self.pieces)
        self._done(skipped)

    def _done(self, count: int) -> None:
        with self.lock:
            self.left -= count
            if self.left == 0:
                self.finished.set()

    def wait(self) -> None:
        """Until every piece has run or been cancelled, even when the wait is interrupted
        (Ctrl-C): the pieces write into buffers the caller frees once this returns. Then
        the interruption, or a piece's error, is raised."""
        interrupted = None
        while True:
            try:
                self.finished.wait()
                break
            except BaseException as e:
                interrupted = interrupted or e
                self.cancel()
        if interrupted is not None:
            raise interrupted
        if self.error is not None:
            raise self.error


class _Workers:
    """Daemon threads, each taking launches (`_Job`s) from its own queue; pinned one per
    core when there is one thread per core of the process's affinity mask (`cores`).
    NOTE: SimpleQueue (C) wakes a thread about twice as fast as ThreadPoolExecutor."""

    def __init__(self, count: int):
        self.cores = frozenset(os.sched_getaffinity(0))
        pin = len(self.cores) == count
        self.todo: list[queue.SimpleQueue] = []
        try:
            for i, core in enumerate(sorted(self.cores) if pin else [None] * count):
                todo = queue.SimpleQueue()
                threading.Thread(target=self._loop, args=(todo, core), name=f"kiln-cpu-{i}",
                                 daemon=True).start()
                self.todo.append(todo)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _loop(todo: queue.SimpleQueue, core: int | None):
        _pin_to(core)
        while True:
            job = todo.get()
            if job is None:
                return
            job.work()

    def run(self, fn, pointers: list, parts: list) -> None:
        job = _Job(fn, pointers, parts)
        for todo in self.todo:
            todo.put(job)
        job.wait()

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
            workers = self._workers
            # NOTE: workers pinned to cores this process has since given up are replaced
            if workers is not None and workers.cores != frozenset(os.sched_getaffinity(0)):
                workers.stop()
                workers = None
            if workers is None:
                workers = self._workers = _Workers(self.threads)
            workers.run(fn, pointers, parts)

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
