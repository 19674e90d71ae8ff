"""Bounded memory (issue 7, item 8): compiled kernels are freed with their cache entries, the
jit and kernel caches are LRUs (KILN_JIT_CACHE_SIZE, KILN_KERNEL_CACHE_SIZE), the caching
allocator honours its cap (KILN_ALLOCATOR_MAX_CACHED), and kiln.memory_stats() /
kiln.empty_cache() report and release what it holds.

The RSS checks run in a subprocess (other tests' memory does not count) with the disk cache
off, so every new shape really compiles."""
from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

import kiln
from kiln.codegen.cpu import CpuRenderer
from kiln.codegen.cpu import renderer as cpu_renderer
from kiln.frontend.jit import JitFunction
from kiln.runtime.allocator import HostAllocator, default_max_cached_bytes

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20

# NOTE: one jitted function called with a new shape every time (recompile_limit raised so it
# keeps compiling instead of going eager); each result is checked. RSS is measured after
# `warm` calls (MLIR/LLVM libraries loaded, caches full) and again after `calls` more.
RSS_SCRIPT = r"""
import gc, json, os, sys, weakref
import numpy as np
import kiln

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def engine_of(fn):
    # NOTE: the renderer's _Module that owns the first entry's machine code (its LLVM engine)
    (entry,) = next(iter(fn.cache.values()))
    return weakref.ref(entry.executable.kernels[0].code.module)

warm, calls = int(sys.argv[1]), int(sys.argv[2])
f = kiln.jit(lambda x: (x * 2).exp() + 1, recompile_limit=10**9)
first = None
for n in range(1, warm + calls + 1):
    x = np.linspace(-1, 1, n, dtype=np.float32)
    y = f(kiln.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, np.exp(x * 2) + 1, rtol=1e-5)
    if first is None:
        first = engine_of(f)
    if n == warm:
        gc.collect()
        base = rss()
gc.collect()
stats = kiln.memory_stats()
print(json.dumps({"growth": rss() - base, "jit_entries": len(f.cache), "traces": f.traces,
                  "kernels": stats["kernel_cache.entries"],
                  "first_engine_freed": first() is None}))
"""


def _run_rss(warm: int, calls: int, **env) -> dict:
    full_env = dict(os.environ, KILN_CACHE_DIR="off", **env)
    for name in ("KILN_JIT_CACHE_SIZE", "KILN_KERNEL_CACHE_SIZE", "KILN_ALLOCATOR_MAX_CACHED"):
        if name not in env:
            full_env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(warm), str(calls)],
                         cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_rss_stays_bounded_with_small_caches():
    # NOTE: before the caches were bounded every new shape kept ~0.9 MiB (its LLVM engine):
    # 150 shapes grew RSS by ~135 MiB. With 8-entry caches it grows by what LLVM itself keeps
    # per compile (llvmlite's pass pipeline, ~90 KiB; see the report) and no more.
    r = _run_rss(30, 150, KILN_JIT_CACHE_SIZE="8", KILN_KERNEL_CACHE_SIZE="8")
    assert r["jit_entries"] <= 8 and r["kernels"] <= 8, r
    assert r["traces"] == 180, r
    assert r["first_engine_freed"], r
    assert r["growth"] < 40 * MIB, f"RSS grew by {r['growth'] / MIB:.1f} MiB: {r}"


@pytest.mark.slow
def test_rss_within_100_mib_over_2000_new_shapes():
    """The acceptance check: default settings, 2,000 calls with new shapes."""
    r = _run_rss(20, 2000)
    assert r["first_engine_freed"], r
    assert r["growth"] < 100 * MIB, f"RSS grew by {r['growth'] / MIB:.1f} MiB: {r}"


# ---- the jit cache --------------------------------------------------------------------------
def _entry_keys(f):
    return [key[1][0][1] for key in f.cache]     # NOTE: the shape in each key's tensor guard


def test_jit_cache_evicts_least_recently_used(monkeypatch):
    monkeypatch.setenv("KILN_JIT_CACHE_SIZE", "2")
    f = kiln.jit(lambda x: (x * 2).exp() + 1, recompile_limit=100)
    assert isinstance(f, JitFunction) and f.cache_size == 2
    xs = {n: np.linspace(-1, 1, n, dtype=np.float32) for n in (3, 4, 5)}

    def call(n):
        np.testing.assert_allclose(f(kiln.from_numpy(xs[n])).numpy(), np.exp(xs[n] * 2) + 1,
                                   rtol=1e-5)
    call(3)
    call(4)
    call(3)                     # a hit: 3 is now the most recently used
    call(5)                     # evicts 4, not 3
    assert _entry_keys(f) == [(3,), (5,)] and f.traces == 3
    call(4)                     # traced again, still right
    assert _entry_keys(f) == [(5,), (4,)] and f.traces == 4


def test_evicted_reduction_and_matmul_retrace_correctly(monkeypatch):
    monkeypatch.setenv("KILN_JIT_CACHE_SIZE", "1")
    f = kiln.jit(lambda x, w: (x * 2).exp().sum(1, keepdim=True) + x @ w, recompile_limit=100)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((7, 7)).astype(np.float32)
    for n in (2, 3, 2, 3):
        x = rng.standard_normal((n, 7)).astype(np.float32)
        want = np.exp(x * 2).sum(1, keepdims=True) + x @ w
        got = f(kiln.from_numpy(x), kiln.from_numpy(w)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4)
        assert len(f.cache) == 1
    assert f.traces == 4


def test_recompile_limit_still_applies_after_eviction(monkeypatch):
    """An evicted guard set that comes back traces again and counts toward the limit."""
    monkeypatch.setenv("KILN_JIT_CACHE_SIZE", "1")
    f = kiln.jit(lambda x: x + 1, recompile_limit=2)
    with pytest.warns(kiln.KilnJitWarning, match="recompile limit"):
        for n in (3, 4, 3):
            assert f(kiln.ones(n)).numpy().tolist() == [2.0] * n
    assert f.traces == 2


# ---- the kernel cache (codegen/cpu/renderer.py) ---------------------------------------------
def _exp_kernel(n: int):
    """A schedule kernel computing exp over f32[n] (a new Kernel object at every call)."""
    from kiln.ir.schedule_text import parse_schedule
    return parse_schedule(f"""
schedule @f(%x: f32[{n}]) {{
  buffer %0: f32[{n}] output
  launch @k (%x) -> (%0) {{space=[{n}], reduce=[]}} {{
    load %x strides=[1] offset=0
    store %0 strides=[1] offset=0
    body @k(%1: f32[{n}]) {{
      %2: f32[{n}] = exp %1
      return %2
    }}
  }}
  return %0
}}""").kernels[0]


@pytest.mark.parametrize("disk", ["off", "on"])
def test_kernel_cache_is_an_lru_that_frees_engines(monkeypatch, tmp_path, disk):
    # NOTE: `stats["compiled"]` counts modules built, whether LLVM compiled them or they were
    # loaded from the disk cache; LLVM's own runs are counted apart, through its entry point.
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path) if disk == "on" else "off")
    llvm_runs = []
    emit = cpu_renderer.emit_object_modules
    monkeypatch.setattr(cpu_renderer, "emit_object_modules",
                        lambda texts: llvm_runs.append(1) or emit(texts))
    renderer = CpuRenderer(cache_size=2)
    held = renderer.compile(_exp_kernel(5))                       # kept by this test
    dropped = weakref.ref(renderer.compile(_exp_kernel(6)).code.module)
    renderer.compile(_exp_kernel(7))
    renderer.compile(_exp_kernel(8))                              # 5 and 6 are evicted
    gc.collect()
    assert len(renderer) == len(renderer._cache) == 2
    assert dropped() is None, "an evicted, unused kernel's module (and engine) is freed"
    assert renderer.stats == {"compiled": 4, "hits": 0} and len(llvm_runs) == 4
    # NOTE: still in use: found again through `_live` (one engine per kernel), not built again
    again = renderer.compile(_exp_kernel(5))
    assert again.code.module is held.code.module
    assert again.address == held.address
    x = np.linspace(-1, 1, 5, dtype=np.float32)
    out = np.zeros(5, np.float32)
    ptr = ctypes.c_void_p
    ctypes.CFUNCTYPE(None, ptr, ptr, ctypes.c_int64, ctypes.c_int64)(held.address)(
        x.ctypes.data, out.ctypes.data, 0, held.outer)           # NOTE: its code still runs
    np.testing.assert_allclose(out, np.exp(x), rtol=1e-6)
    assert renderer.stats == {"compiled": 4, "hits": 1}
    # NOTE: evicted and freed: built again (LLVM again, or a load from the disk cache)
    y = renderer.compile(_exp_kernel(6))
    assert renderer.stats == {"compiled": 5, "hits": 1} and len(renderer) == 2
    assert len(llvm_runs) == (4 if disk == "on" else 5)
    assert y.outer == 6 and y.n_buffers == 2


def test_kernel_cache_size_from_the_environment(monkeypatch):
    monkeypatch.setenv("KILN_KERNEL_CACHE_SIZE", "3")
    assert cpu_renderer._cache_size() == 3 and CpuRenderer().cache_size == 3
    assert CpuRenderer(cache_size=5).cache_size == 5
    monkeypatch.delenv("KILN_KERNEL_CACHE_SIZE")
    assert cpu_renderer._cache_size() == 64 == CpuRenderer().cache_size


# ---- the caching allocator ------------------------------------------------------------------
def test_distinct_sizes_share_size_classes():
    pool = HostAllocator(min_bytes=0, max_cached_bytes=1 << 30)
    for n in range((2 * MIB) // 4 + 1, (2 * MIB + MIB // 4) // 4, 211):    # one size class
        a = pool.empty((n,), np.float32)
        a[:] = 1.0
        del a
    assert pool.stats["fresh"] == 1 and pool.stats["reused"] > 200
    assert pool.cached_bytes == pool.size_class(2 * MIB + 4) == 2 * MIB + MIB // 4


def test_cap_is_honoured_and_blocks_over_it_are_not_pooled():
    pool = HostAllocator(min_bytes=0, max_cached_bytes=4 * MIB)
    held = [pool.empty((MIB // 4,), np.float32) for _ in range(6)]     # 6 x 1 MiB, all in use
    assert pool.cached_bytes <= 4 * MIB
    stats = pool.memory_stats()
    assert stats["num_uncached"] == 2 and stats["allocated_bytes.all.current"] == 4 * MIB
    for i, h in enumerate(held):
        h[:] = i
    assert [float(h[0]) for h in held] == [0, 1, 2, 3, 4, 5]        # six distinct buffers
    del held
    assert pool.memory_stats()["inactive_bytes.all.current"] == 4 * MIB


def test_unused_blocks_are_dropped_least_recently_used_first():
    pool = HostAllocator(min_bytes=0, max_cached_bytes=7 * MIB)
    for size in (1, 2, 3):                    # blocks of 1, 2 and 3 MiB, released at once
        pool.empty((size * MIB,), np.uint8)
    pool.empty((MIB,), np.uint8)              # the 1 MiB block is used again: most recent
    keep = pool.empty((2 * MIB + 1,), np.uint8)     # a new 2.25 MiB block: drops the 2 MiB
    assert sorted(pool.blocks) == [MIB, pool.size_class(2 * MIB + 1), 3 * MIB]
    assert pool.cached_bytes <= 7 * MIB
    assert pool.memory_stats()["num_freed"] == 1
    del keep


def test_empty_cache_keeps_blocks_in_use():
    pool = HostAllocator(min_bytes=0, max_cached_bytes=64 * MIB)
    live = pool.empty((MIB,), np.float32)
    live[:] = 3.0
    view = live[10:20]
    del live
    for n in (1, 2, 3):
        pool.empty((n * MIB,), np.uint8)
    assert pool.empty_cache() == 6 * MIB
    stats = pool.memory_stats()
    assert stats["reserved_bytes.all.current"] == stats["allocated_bytes.all.current"] == 4 * MIB
    assert np.all(view == 3.0)
    assert not np.shares_memory(pool.empty((MIB,), np.float32), view)   # never handed out
    del view
    assert pool.empty_cache() == 8 * MIB and pool.cached_bytes == 0     # both 4 MiB blocks


def test_default_cap_from_the_environment(monkeypatch):
    monkeypatch.setenv("KILN_ALLOCATOR_MAX_CACHED", "512M")
    assert default_max_cached_bytes() == 512 * MIB
    assert HostAllocator().max_cached_bytes == 512 * MIB
    monkeypatch.setenv("KILN_ALLOCATOR_MAX_CACHED", "1073741824")
    assert default_max_cached_bytes() == 1 << 30
    monkeypatch.setenv("KILN_ALLOCATOR_MAX_CACHED", "1.5GiB")
    assert default_max_cached_bytes() == 3 << 29
    monkeypatch.delenv("KILN_ALLOCATOR_MAX_CACHED")
    assert 0 < default_max_cached_bytes() <= 1 << 30


# ---- kiln.memory_stats / kiln.empty_cache ---------------------------------------------------
def test_memory_stats_and_empty_cache():
    f = kiln.jit(lambda x: x * 2 + 1)
    x = kiln.ones(1 << 20)                          # 4 MiB: pooled
    y = f(x)
    stats = kiln.memory_stats()
    for key in ("allocated_bytes.all.current", "allocated_bytes.all.peak",
                "reserved_bytes.all.current", "reserved_bytes.all.peak",
                "inactive_bytes.all.current", "num_alloc", "num_reused", "num_fresh",
                "num_freed", "max_cached_bytes", "kernel_cache.entries"):
        assert isinstance(stats[key], int), key
    assert stats["allocated_bytes.all.current"] >= 4 * MIB
    assert stats["allocated_bytes.all.peak"] >= stats["allocated_bytes.all.current"]
    assert stats["reserved_bytes.all.current"] <= stats["max_cached_bytes"]
    assert stats["kernel_cache.entries"] >= 1
    kiln.empty_cache()                              # y's block is in use: kept
    assert float(y.numpy()[123]) == 3.0
    assert kiln.memory_stats()["allocated_bytes.all.current"] >= 4 * MIB
    reserved = kiln.memory_stats()["reserved_bytes.all.current"]
    del y
    gc.collect()
    kiln.empty_cache()
    after = kiln.memory_stats()
    assert after["inactive_bytes.all.current"] == 0
    assert after["reserved_bytes.all.current"] <= reserved - 4 * MIB
    assert float(f(x).numpy()[0]) == 3.0            # allocates again after emptying
