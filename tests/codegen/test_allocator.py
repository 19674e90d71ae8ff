"""The caching host allocator never hands out a block that an array or view still uses."""
import numpy as np

from kiln.runtime.allocator import HostAllocator


def test_reuses_only_unused_blocks():
    pool = HostAllocator(min_bytes=0)
    a = pool.empty((256,), np.float32)
    view = a[10:20]
    del a
    b = pool.empty((256,), np.float32)
    b[:] = 1.0
    assert pool.stats == {"reused": 0, "fresh": 2}
    view[:] = 7.0
    assert np.all(b == 1.0)
    del view
    c = pool.empty((16, 16), np.float32)
    assert pool.stats["reused"] == 1 and c.shape == (16, 16)


def test_small_requests_and_dtypes():
    pool = HostAllocator(min_bytes=1 << 20)
    small = pool.empty((4,), np.int64)
    assert small.base is None and pool.stats["fresh"] == 0
    big = pool.empty((1 << 18,), np.float64)
    assert big.dtype == np.float64 and big.flags.c_contiguous and pool.stats["fresh"] == 1


def test_cache_limit_drops_unused_blocks():
    pool = HostAllocator(min_bytes=0, max_cached_bytes=1 << 17)
    for _ in range(5):
        pool.empty((1 << 14,), np.float32)      # 64 KiB each, released at once
    assert pool.cached_bytes <= 1 << 17
    held = [pool.empty((1 << 14,), np.float32) for _ in range(4)]
    assert len({h.__array_interface__["data"][0] for h in held}) == 4
