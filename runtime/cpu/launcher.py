"""Launch compiled CPU kernels: ctypes calls, split over a small pool of threads.

A kernel function is `void f(ptr..., i64 lo, i64 hi)` over rows [lo, hi) of its outermost
loop (see codegen/cpu/render_kernel.py). ctypes releases the GIL during the call, so the chunks
of one launch run on all cores; the calling thread runs the first chunk itself.

Handing a chunk to another thread costs 30-60 us on the 2-core machine this was tuned on,
so a launch is split only when its estimated work (elements x ops per element) is large:
W1 (about 100 ops per element) splits from about 300k elements, a plain add from about 2M.
"""
from __future__ import annotations

import ctypes
import os
import queue
import threading

# NOTE: measured breakeven: W1 at 2**18 elements (2.6e7 units) runs in the same time on one
# or two threads; a float32 add gains from 2**22 elements (5.4e7 units).
MIN_PARALLEL_WORK = 30_000_000


def default_threads() -> int:
    """KILN_NUM_THREADS, else the cores this process may run on."""
    env = os.environ.get("KILN_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)))


class _Workers:
    """Daemon threads taking (fn, args) from a queue; each posts its error or None back.
    NOTE: SimpleQueue (C) wakes a thread about twice as fast as ThreadPoolExecutor."""

    def __init__(self, count: int):
        self.todo: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(count):
            threading.Thread(target=self._loop, name=f"kiln-cpu-{i}", daemon=True).start()

    def _loop(self):
        while True:
            item = self.todo.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
                self.done.put(None)
            except BaseException as e:  # NOTE: handed to the launching thread to re-raise
                self.done.put(e)

    def stop(self, count: int):
        for _ in range(count):
            self.todo.put(None)


class CpuLauncher:
    """Runs kernel functions over (lo, hi) chunks on `threads` threads (caller included).
    One launch at a time per launcher (a lock), so chunks of two launches never mix."""

    def __init__(self, threads: int | None = None, min_parallel_work: int = MIN_PARALLEL_WORK):
        self.threads = threads or default_threads()
        self.min_parallel_work = min_parallel_work
        self._workers: _Workers | None = None
        self._lock = threading.Lock()

    def chunks(self, outer: int, work: int) -> list[tuple[int, int]]:
        """The (lo, hi) ranges of the outer loop one launch is split into."""
        n = min(self.threads, outer) if work >= self.min_parallel_work else 1
        n = max(n, 1)
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
                self._workers = _Workers(self.threads - 1)
            for lo, hi in parts[1:]:
                self._workers.todo.put((fn, (*pointers, lo, hi)))
            try:
                fn(*pointers, *parts[0])
            finally:  # NOTE: always collect every chunk, so none is left for the next launch
                errors = [self._workers.done.get() for _ in parts[1:]]
        for e in errors:
            if e is not None:
                raise e


    def close(self):
        """Stop this launcher's threads (a later parallel launch starts new ones)."""
        with self._lock:
            if self._workers is not None:
                self._workers.stop(self.threads - 1)
                self._workers = None


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
