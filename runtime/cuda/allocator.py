"""A caching allocator for device memory: a subset of PyTorch's CUDA caching allocator.

cuMemAlloc and cuMemFree are slow (and cuMemFree synchronizes the device), while a compiled
step asks for the same buffer sizes on every call. So a released block goes to a free list
for its size and is handed out again; `empty_cache()` returns the cached blocks to the driver
(and a failed cuMemAlloc does so and retries once). Sizes are rounded up to 512 bytes
(PyTorch's rounding of small blocks), so nearby sizes share blocks.

Everything runs on one stream: a block released while queued kernels still use it is only
handed to work queued after them on that stream, which runs after them, so reuse needs no
synchronization (PyTorch's rule for a block used on one stream).

Blocks are released from any thread, and from a garbage collection that may run in the middle
of an allocation: releases are queued (deque appends are atomic) and folded into the free
lists by the next allocation, `empty_cache` or `stats`.

    >>> from kiln.runtime.cuda.fake_driver import FakeDriver
    >>> pool = CachingAllocator(FakeDriver())
    >>> a = pool.malloc(1000)
    >>> a.size, pool.stats()["allocated_bytes"]
    (1024, 1024)
    >>> pool.release(a)
    >>> pool.malloc(600).ptr == a.ptr      # the cached block again: 600 bytes round to 1024
    True
"""
from __future__ import annotations

import collections
import threading

from .errors import OUT_OF_MEMORY, CudaError

ROUND = 512


def round_size(nbytes: int) -> int:
    """`nbytes` rounded up to a multiple of ROUND (at least ROUND).

    >>> round_size(1), round_size(512), round_size(513)
    (512, 512, 1024)
    """
    return max(ROUND, -(-nbytes // ROUND) * ROUND)


class Block:
    """`size` bytes of device memory at `ptr`."""

    __slots__ = ("ptr", "size")

    def __init__(self, ptr: int, size: int):
        self.ptr = ptr
        self.size = size

    def __repr__(self) -> str:
        return f"<Block {self.size} bytes at {self.ptr:#x}>"


class Lease:
    """A block handed out until this object is garbage-collected (DeviceArrays share one)."""

    __slots__ = ("block", "pool", "__weakref__")

    def __init__(self, block: Block, pool: "CachingAllocator"):
        self.block = block
        self.pool = pool

    ptr = property(lambda self: self.block.ptr)
    size = property(lambda self: self.block.size)

    def __del__(self):
        try:
            self.pool.release(self.block)
        except Exception:   # NOTE: at interpreter exit the pool may be half torn down
            pass


class CachingAllocator:
    """Device memory from `driver.mem_alloc`, cached by size."""

    def __init__(self, driver):
        self.driver = driver
        self._free: dict[int, list[int]] = collections.defaultdict(list)
        self._released: collections.deque = collections.deque()
        self._lock = threading.RLock()
        self._stats = dict.fromkeys(
            ("allocated_bytes", "reserved_bytes", "peak_allocated_bytes", "peak_reserved_bytes",
             "num_allocs", "num_frees", "num_device_allocs", "num_device_frees",
             "num_alloc_retries"), 0)

    def lease(self, nbytes: int) -> Lease:
        """A block of at least `nbytes`, released when the Lease is garbage-collected."""
        return Lease(self.malloc(nbytes), self)

    def malloc(self, nbytes: int) -> Block:
        """A block of at least `nbytes` (rounded, see `round_size`): a cached one or a new
        one from the driver. Give it back with `release`."""
        size = round_size(nbytes)
        with self._lock:
            self._drain()
            cached = self._free.get(size)
            ptr = cached.pop() if cached else self._device_alloc(size)
            s = self._stats
            s["num_allocs"] += 1
            s["allocated_bytes"] += size
            s["peak_allocated_bytes"] = max(s["peak_allocated_bytes"], s["allocated_bytes"])
        return Block(ptr, size)

    def release(self, block: Block) -> None:
        """Give `block` back for reuse (safe from any thread and from finalizers)."""
        self._released.append(block)

    def _drain(self) -> None:
        while self._released:
            block = self._released.popleft()
            self._free[block.size].append(block.ptr)
            self._stats["allocated_bytes"] -= block.size
            self._stats["num_frees"] += 1

    def _device_alloc(self, size: int) -> int:
        try:
            ptr = self.driver.mem_alloc(size)
        except CudaError as e:
            if e.name != OUT_OF_MEMORY or not self._cached_bytes():
                raise
            # NOTE: the cache may hold the memory (in blocks of other sizes): free it, retry
            self._stats["num_alloc_retries"] += 1
            self._empty_cache_locked()
            ptr = self.driver.mem_alloc(size)
        s = self._stats
        s["num_device_allocs"] += 1
        s["reserved_bytes"] += size
        s["peak_reserved_bytes"] = max(s["peak_reserved_bytes"], s["reserved_bytes"])
        return ptr

    def _cached_bytes(self) -> int:
        return sum(size * len(ptrs) for size, ptrs in self._free.items())

    def empty_cache(self) -> None:
        """Return every cached (unused) block to the driver."""
        with self._lock:
            self._drain()
            self._empty_cache_locked()

    def _empty_cache_locked(self) -> None:
        for size, ptrs in self._free.items():
            while ptrs:
                self.driver.mem_free(ptrs.pop())
                self._stats["num_device_frees"] += 1
                self._stats["reserved_bytes"] -= size
        self._free.clear()

    def stats(self) -> dict:
        """Counters like a subset of `torch.cuda.memory_stats()`: bytes handed out
        (`allocated_bytes`), held from the driver (`reserved_bytes`), their peaks, requests
        and releases (`num_allocs`, `num_frees`), driver calls (`num_device_allocs`,
        `num_device_frees`) and allocations retried after emptying the cache."""
        with self._lock:
            self._drain()
            return dict(self._stats, cached_bytes=self._cached_bytes())
