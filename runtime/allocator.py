"""A caching host allocator for kernel outputs, with a cap it honours.

Large fresh allocations are slow here: glibc maps them with mmap and unmaps them on free, so
every call pays a page fault per 4 KiB on first write (7-70 ms for 64 MiB on these VMs). Like
PyTorch's caching allocator, Kiln keeps large blocks and hands them out again once nothing uses
them. NumPy views always reference the array that owns the memory, so a block is free exactly
when the pool holds the only reference to it.

Requests are rounded up to size classes (8 per power of two above 1 MiB, 64 KiB steps below:
at most 12.5% more than asked), so outputs of many distinct sizes share blocks. The pool holds
at most `max_cached_bytes` in all, in use or not (`KILN_ALLOCATOR_MAX_CACHED`, bytes or with
a K/M/G suffix; default the smaller of 1 GiB and a quarter of the RAM): a block that does not
fit is handed out untracked (freed when released), and a fresh block drops unused ones first,
least recently used first. `empty_cache()` drops every unused block.

    >>> pool = HostAllocator(min_bytes=0)
    >>> a = pool.empty((4,), "float32")
    >>> del a
    >>> b = pool.empty((4,), "float32")    # the same block again
    >>> pool.stats["reused"]
    1
    >>> pool.size_class(2_200_000)         # 2 MiB + 1/8 of 2 MiB
    2359296
"""
from __future__ import annotations

import collections
import math
import os
import sys
import threading

import numpy as np

_ALIGN = 1 << 16
_DIVISIONS = 8          # NOTE: size classes per power of two (PyTorch's roundup_power2)


def _parse_bytes(text: str) -> int:
    """'1073741824', '512M', '1.5G' -> bytes."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def default_max_cached_bytes() -> int:
    """`KILN_ALLOCATOR_MAX_CACHED`, else min(1 GiB, a quarter of the physical memory)."""
    env = os.environ.get("KILN_ALLOCATOR_MAX_CACHED")
    if env:
        return max(0, _parse_bytes(env))
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 4 << 30
    return min(1 << 30, ram // 4)


class _Block:
    """One pooled allocation; `base` is referenced only here while nobody uses it."""
    __slots__ = ("size", "base")

    def __init__(self, size: int, base: np.ndarray):
        self.size = size
        self.base = base


def _refs(block: _Block) -> int:
    return sys.getrefcount(block.base)


# NOTE: a block is unused when its array has exactly the references of a fresh pooled block
# (the _Block's slot and getrefcount's argument), measured through the same code path once
# here rather than hard-coded: interpreters differ in how many references a call adds.
_UNUSED_REFS = _refs(_Block(0, np.empty(1, np.uint8)))


class HostAllocator:
    """Reuses blocks of >= `min_bytes` bytes, holding at most `max_cached_bytes` in all
    (None: `default_max_cached_bytes()`)."""

    def __init__(self, min_bytes: int = 1 << 20, max_cached_bytes: int | None = None):
        self.min_bytes = min_bytes
        self.max_cached_bytes = (default_max_cached_bytes() if max_cached_bytes is None
                                 else max_cached_bytes)
        self.blocks: dict[int, list[_Block]] = {}       # size class -> blocks
        # NOTE: every block, least recently handed out first (the eviction order)
        self._lru: collections.OrderedDict[int, _Block] = collections.OrderedDict()
        self.cached_bytes = 0                   # all pooled blocks, in use or not
        self.lock = threading.Lock()
        self.stats = {"reused": 0, "fresh": 0}
        self._counts = {"freed": 0, "uncached": 0, "peak_cached": 0, "peak_allocated": 0}

    @staticmethod
    def size_class(nbytes: int) -> int:
        """The block size a request of `nbytes` gets: a multiple of 64 KiB, and above 1 MiB
        one of 8 steps per power of two."""
        size = -(-nbytes // _ALIGN) * _ALIGN
        if size > 1 << 20:
            step = 1 << max(size.bit_length() - 1 - _DIVISIONS.bit_length() + 1, 16)
            size = -(-size // step) * step
        return size

    def empty(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        # NOTE: math.prod, not np.prod: a small output is most calls, and np.prod costs µs
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < self.min_bytes or nbytes == 0:
            return np.empty(shape, dtype)
        size = self.size_class(nbytes)
        with self.lock:
            base = self._take(size)
        return base[:nbytes].view(dtype).reshape(shape)

    def _take(self, size: int) -> np.ndarray:
        blocks = self.blocks.setdefault(size, [])
        for block in blocks:
            if _refs(block) <= _UNUSED_REFS:
                self.stats["reused"] += 1
                self._lru.move_to_end(id(block))
                base = block.base
                self._note_peak()
                return base
        if self.cached_bytes + size > self.max_cached_bytes:
            self._drop_unused(self.max_cached_bytes - size)
        base = np.empty(size, np.uint8)
        self.stats["fresh"] += 1
        if self.cached_bytes + size <= self.max_cached_bytes:
            block = _Block(size, base)
            blocks.append(block)
            self._lru[id(block)] = block
            self.cached_bytes += size
            self._note_peak()
        else:   # NOTE: over the cap even with every unused block gone: not pooled
            self._counts["uncached"] += 1
        return base

    def _drop_unused(self, target: int | None = None) -> int:
        """Drop unused blocks, least recently used first, until at most `target` bytes are
        cached (None: all unused blocks). Returns the bytes dropped."""
        dropped = 0
        for key, block in list(self._lru.items()):
            if target is not None and self.cached_bytes <= target:
                break
            if _refs(block) > _UNUSED_REFS:
                continue
            del self._lru[key]
            self.blocks[block.size].remove(block)
            if not self.blocks[block.size]:
                del self.blocks[block.size]
            self.cached_bytes -= block.size
            dropped += block.size
            self._counts["freed"] += 1
        return dropped

    def _allocated_bytes(self) -> int:
        return sum(b.size for b in self._lru.values() if _refs(b) > _UNUSED_REFS)

    def _note_peak(self):
        counts = self._counts
        counts["peak_cached"] = max(counts["peak_cached"], self.cached_bytes)
        # NOTE: a scan of the pooled blocks (at most max_cached_bytes / min_bytes of them)
        counts["peak_allocated"] = max(counts["peak_allocated"], self._allocated_bytes())

    def empty_cache(self) -> int:
        """Drop every block nobody uses; returns the bytes released."""
        with self.lock:
            return self._drop_unused()

    def memory_stats(self) -> dict:
        """Pool counters (PyTorch-style names; see `kiln.memory_stats`)."""
        with self.lock:
            allocated = self._allocated_bytes()
            counts = self._counts
            return {
                "allocated_bytes.all.current": allocated,
                "allocated_bytes.all.peak": max(counts["peak_allocated"], allocated),
                "reserved_bytes.all.current": self.cached_bytes,
                "reserved_bytes.all.peak": counts["peak_cached"],
                "inactive_bytes.all.current": self.cached_bytes - allocated,
                "num_blocks": len(self._lru),
                "num_alloc": self.stats["fresh"] + self.stats["reused"],
                "num_reused": self.stats["reused"],
                "num_fresh": self.stats["fresh"],
                "num_freed": counts["freed"],
                "num_uncached": counts["uncached"],
                "max_cached_bytes": self.max_cached_bytes,
                "min_block_bytes": self.min_bytes,
            }

    def reset_peak_stats(self):
        with self.lock:
            self._counts["peak_cached"] = self.cached_bytes
            self._counts["peak_allocated"] = self._allocated_bytes()


_DEFAULT = HostAllocator()


def default_allocator() -> HostAllocator:
    return _DEFAULT


def _kernel_cache_entries() -> int:
    """Compiled modules held by the renderer's in-process cache. NOTE: read from the module
    if already loaded (the runtime does not import codegen); 0 when it was never used."""
    renderer = sys.modules.get("kiln.codegen.cpu.renderer")
    default = getattr(renderer, "_DEFAULT", None)
    return len(default) if default is not None else 0


def memory_stats() -> dict:
    """Host memory counters, a subset of `torch.cuda.memory_stats()`:

    - `allocated_bytes.all.current` / `.peak`: bytes of pooled blocks in use (a kernel output
      or a view of it still alive), now and at most so far;
    - `reserved_bytes.all.current` / `.peak`: bytes the caching allocator holds, in use or
      not (never above `max_cached_bytes`); `inactive_bytes.all.current`: of those, unused;
    - `num_alloc`, `num_reused`, `num_fresh`: pooled requests, served from the cache or by a
      new block; `num_freed`: blocks dropped (over the cap or by `empty_cache`);
      `num_uncached`: requests handed a block outside the pool because the cap was reached;
    - `num_blocks`, `max_cached_bytes`, `min_block_bytes` (smaller requests bypass the pool);
    - `kernel_cache.entries`: compiled kernels held by the in-process kernel cache.

    >>> import kiln
    >>> f = kiln.jit(lambda x: x * 2 + 1)
    >>> y = f(kiln.ones(1 << 20))            # a 4 MiB output: a pooled block
    >>> stats = kiln.memory_stats()
    >>> stats["allocated_bytes.all.current"] >= 4 << 20
    True
    >>> stats["kernel_cache.entries"] >= 1
    True
    """
    stats = default_allocator().memory_stats()
    stats["kernel_cache.entries"] = _kernel_cache_entries()
    return stats


def empty_cache() -> None:
    """Release every cached block that no tensor uses (blocks in use stay).

    >>> import kiln
    >>> f = kiln.jit(lambda x: x * 2 + 1)
    >>> y = f(kiln.ones(1 << 20)); del y     # the block is now cached, unused
    >>> kiln.empty_cache()
    >>> kiln.memory_stats()["inactive_bytes.all.current"]
    0
    """
    default_allocator().empty_cache()
