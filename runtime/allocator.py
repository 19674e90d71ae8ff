"""A caching host allocator for kernel outputs.

Large fresh allocations are slow here: glibc maps them with mmap and unmaps them on free, so
every call pays a page fault per 4 KiB on first write (7-70 ms for 64 MiB on these VMs). Like
PyTorch's caching allocator, Kiln keeps large blocks and hands them out again once nothing uses
them. NumPy views always reference the array that owns the memory, so a block is free exactly
when the pool holds the only reference to it.

    >>> pool = HostAllocator(min_bytes=0)
    >>> a = pool.empty((4,), "float32")
    >>> del a
    >>> b = pool.empty((4,), "float32")    # the same block again
    >>> pool.stats["reused"]
    1
"""
from __future__ import annotations

import sys
import threading

import numpy as np

_ALIGN = 1 << 16


class HostAllocator:
    """Reuses blocks of >= `min_bytes` bytes, caching at most `max_cached_bytes` in all."""

    def __init__(self, min_bytes: int = 1 << 20, max_cached_bytes: int = 2 << 30):
        self.min_bytes = min_bytes
        self.max_cached_bytes = max_cached_bytes
        self.blocks: dict[int, list[np.ndarray]] = {}
        self.cached_bytes = 0
        self.lock = threading.Lock()
        self.stats = {"reused": 0, "fresh": 0}

    def empty(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < self.min_bytes or nbytes == 0:
            return np.empty(shape, dtype)
        size = -(-nbytes // _ALIGN) * _ALIGN
        with self.lock:
            base = self._take(size)
        return base[:nbytes].view(dtype).reshape(shape)

    def _take(self, size: int) -> np.ndarray:
        blocks = self.blocks.setdefault(size, [])
        for base in blocks:
            # NOTE: 3 = the list, the loop variable and getrefcount's argument: nothing else
            # (no array or view handed out earlier) still uses this block.
            if sys.getrefcount(base) <= 3:
                self.stats["reused"] += 1
                return base
        if self.cached_bytes + size > self.max_cached_bytes:
            self._drop_unused()
        base = np.empty(size, np.uint8)
        self.stats["fresh"] += 1
        if self.cached_bytes + size <= self.max_cached_bytes:
            blocks.append(base)
            self.cached_bytes += size
        return base

    def _drop_unused(self):
        for size, blocks in self.blocks.items():
            keep = [b for b in blocks if sys.getrefcount(b) > 3]
            self.cached_bytes -= size * (len(blocks) - len(keep))
            blocks[:] = keep


_DEFAULT = HostAllocator()


def default_allocator() -> HostAllocator:
    return _DEFAULT
