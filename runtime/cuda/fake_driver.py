"""A CUDA driver over host memory, with CudaDriver's methods, for testing the CUDA runtime
without a GPU.

Device pointers are the real addresses of NumPy buffers the fake owns (256-byte aligned like
cuMemAlloc's), so copies are `ctypes.memmove`. Every call is recorded in `calls`
((name, args)); launches also in `launches` with the entry, geometry and the parameter values
read back from the packed `void**` table, as a GPU would read them. A launch computes its
kernel when a callable was registered for its function (`register_kernel`; CudaDevice
registers the NumPy reference of each artifact it loads).

What a real launch needs is checked, and a violation raises FakeDriverError: the parameter
count and sizes against the `.entry` in the PTX, that grid * block covers the rows (the last
parameter), and that every pointer parameter lies inside a live allocation. Any call can be
made to fail (`fail_next`), to test how driver errors are reported.

    >>> drv = FakeDriver()
    >>> p = drv.mem_alloc(1000)
    >>> drv.mem_info()[1] - drv.mem_info()[0]
    1000
    >>> drv.fail_next("cuMemAlloc", "CUDA_ERROR_OUT_OF_MEMORY")
    >>> try:
    ...     drv.mem_alloc(8)
    ... except FakeDriverError as e:
    ...     print(e)
    cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (injected by the test)
"""
from __future__ import annotations

import bisect
import ctypes
import dataclasses
import re
import time

import numpy as np

from .errors import OUT_OF_MEMORY, FakeDriverError
from .params import PackedParams, unpack_params

_ALIGN = 256            # NOTE: cuMemAlloc's alignment
_MAX_BLOCK_THREADS = 1024
_ENTRY = re.compile(r"\.visible\s+\.entry\s+([\w$]+)\s*\((.*?)\)", re.S)
_PARAM = re.compile(r"\.param\s+\.([usbf])(\d+)\s*(\.ptr)?")


@dataclasses.dataclass(frozen=True)
class EntryParam:
    """One `.param` of a PTX entry: its width and whether it is a `.ptr`."""

    bits: int
    pointer: bool


@dataclasses.dataclass
class FakeLaunch:
    """A launch as the GPU would have seen it: `params` read back from the packed table."""

    entry: str
    grid: tuple
    block: tuple
    stream: int
    params: list


def ptx_entries(ptx: str) -> dict[str, list[EntryParam]]:
    """Each `.visible .entry NAME(...)` of a PTX module and its parameters.

    >>> ptx_entries(".visible .entry k(\\n .param .u64 .ptr .align 1 k_p0,\\n .param .u64 k_p1\\n)")
    {'k': [EntryParam(bits=64, pointer=True), EntryParam(bits=64, pointer=False)]}
    """
    return {name: [EntryParam(int(bits), bool(ptr)) for _, bits, ptr in _PARAM.findall(body)]
            for name, body in _ENTRY.findall(ptx)}


class FakeDriver:
    """Host memory standing in for a GPU of `capacity` bytes."""

    def __init__(self, capacity: int = 1 << 30):
        self.capacity = capacity
        self.calls: list[tuple] = []
        self.launches: list[FakeLaunch] = []
        self.modules: list[dict] = []
        self._memory: dict[int, np.ndarray] = {}    # NOTE: pointer -> the buffer behind it
        self._starts: list[int] = []                # NOTE: sorted pointers, for lookups
        self._kernels: dict[tuple, object] = {}
        self._failures: dict[str, str] = {}
        self._streams = 0

    def _record(self, name: str, *args) -> None:
        self.calls.append((name, args))
        failure = self._failures.pop(name, None)
        if failure is not None:
            raise FakeDriverError(name, failure, "injected by the test")

    def fail_next(self, call: str, error: str) -> None:
        """Make the next `call` (a driver function's name, e.g. "cuMemAlloc") fail with the
        CUresult named `error`."""
        self._failures[call] = error

    def count(self, call: str) -> int:
        return sum(1 for name, _ in self.calls if name == call)

    # ---- device and context ------------------------------------------------------------
    def init(self) -> None:
        self._record("cuInit", 0)

    def device_count(self) -> int:
        return 1

    def device_name(self) -> str:
        return "Kiln FakeDriver (host memory)"

    def compute_capability(self) -> tuple[int, int]:
        return (9, 0)

    def mem_info(self) -> tuple[int, int]:
        used = sum(size for _, size in self._memory.values())
        return self.capacity - used, self.capacity

    # ---- memory --------------------------------------------------------------------------
    def mem_alloc(self, nbytes: int) -> int:
        self._record("cuMemAlloc", nbytes)
        if nbytes <= 0:
            raise FakeDriverError("cuMemAlloc", "CUDA_ERROR_INVALID_VALUE", "0 bytes")
        if nbytes > self.mem_info()[0]:
            raise FakeDriverError("cuMemAlloc", OUT_OF_MEMORY, f"{nbytes} bytes")
        raw = np.zeros(nbytes + _ALIGN, np.uint8)
        ptr = raw.ctypes.data + (-raw.ctypes.data % _ALIGN)
        self._memory[ptr] = (raw, nbytes)
        bisect.insort(self._starts, ptr)
        return ptr

    def mem_free(self, ptr: int) -> None:
        self._record("cuMemFree", ptr)
        if ptr not in self._memory:
            raise FakeDriverError("cuMemFree", "CUDA_ERROR_INVALID_VALUE",
                                  f"{ptr:#x} is not an allocation")
        del self._memory[ptr]
        self._starts.remove(ptr)

    @property
    def live_bytes(self) -> int:
        return self.capacity - self.mem_info()[0]

    def allocation(self, ptr: int, nbytes: int, call: str = "?") -> np.ndarray:
        """The bytes from `ptr` to the end of its allocation; FakeDriverError unless `ptr`
        and the `nbytes` after it lie inside one live allocation."""
        i = bisect.bisect_right(self._starts, ptr) - 1
        if i >= 0:
            start = self._starts[i]
            raw, size = self._memory[start]
            if ptr < start + size and ptr + nbytes <= start + size:
                skip = ptr - raw.ctypes.data
                return raw[skip:skip + start + size - ptr]
        raise FakeDriverError(call, "CUDA_ERROR_ILLEGAL_ADDRESS",
                              f"{nbytes} bytes at {ptr:#x} are outside every live allocation")

    def _check_host(self, addr: int, call: str) -> None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._starts[i] + self._memory[self._starts[i]][1]:
            raise FakeDriverError(call, "CUDA_ERROR_INVALID_VALUE",
                                  f"host address {addr:#x} is device memory")

    def memcpy_htod(self, dst: int, src_host: int, nbytes: int, stream) -> None:
        self._record("cuMemcpyHtoDAsync", dst, src_host, nbytes, stream)
        self.allocation(dst, nbytes, "cuMemcpyHtoDAsync")
        self._check_host(src_host, "cuMemcpyHtoDAsync")
        ctypes.memmove(dst, src_host, nbytes)

    def memcpy_dtoh(self, dst_host: int, src: int, nbytes: int, stream) -> None:
        self._record("cuMemcpyDtoHAsync", dst_host, src, nbytes, stream)
        self.allocation(src, nbytes, "cuMemcpyDtoHAsync")
        self._check_host(dst_host, "cuMemcpyDtoHAsync")
        ctypes.memmove(dst_host, src, nbytes)

    def memcpy_dtod(self, dst: int, src: int, nbytes: int, stream) -> None:
        self._record("cuMemcpyDtoDAsync", dst, src, nbytes, stream)
        self.allocation(dst, nbytes, "cuMemcpyDtoDAsync")
        self.allocation(src, nbytes, "cuMemcpyDtoDAsync")
        ctypes.memmove(dst, src, nbytes)

    def memset_d8(self, dst: int, value: int, nbytes: int, stream) -> None:
        self._record("cuMemsetD8Async", dst, value, nbytes, stream)
        self.allocation(dst, nbytes, "cuMemsetD8Async")
        ctypes.memset(dst, value, nbytes)

    # ---- streams, modules, launches ------------------------------------------------------
    def stream_create(self) -> int:
        self._record("cuStreamCreate", 0)
        self._streams += 1
        return self._streams

    def stream_synchronize(self, stream) -> None:
        self._record("cuStreamSynchronize", stream)

    def module_load(self, ptx: str) -> int:
        self._record("cuModuleLoadData", len(ptx))
        entries = ptx_entries(ptx)
        if not entries:
            raise FakeDriverError("cuModuleLoadData", "CUDA_ERROR_INVALID_PTX", "no .entry")
        self.modules.append(entries)
        return len(self.modules) - 1

    def module_function(self, module: int, name: str) -> tuple:
        self._record("cuModuleGetFunction", module, name)
        if name not in self.modules[module]:
            raise FakeDriverError("cuModuleGetFunction", "CUDA_ERROR_NOT_FOUND", name)
        return (module, name)

    def register_kernel(self, function: tuple, compute) -> None:
        """Run `compute(views)` at each launch of `function`: `views` are the pointer
        parameters' uint8 views, each from the pointer to its allocation's end."""
        self._kernels[function] = compute

    def launch(self, function, grid, block, stream, params) -> None:
        packed = PackedParams(params)
        self._record("cuLaunchKernel", function, tuple(grid), tuple(block), stream)
        module, entry = function
        signature = self.modules[module][entry]
        if len(params) != len(signature):
            raise FakeDriverError("cuLaunchKernel", "CUDA_ERROR_INVALID_VALUE",
                                  f"{entry} takes {len(signature)} parameters, got "
                                  f"{len(params)}")
        values = unpack_params(packed.address, [p.bits // 8 for p in signature])
        self._check_geometry(entry, grid, block, signature, values)
        views = [self.allocation(v, 1, "cuLaunchKernel")
                 for v, p in zip(values, signature) if p.pointer]
        self.launches.append(FakeLaunch(entry, tuple(grid), tuple(block), stream, values))
        compute = self._kernels.get(function)
        if compute is not None:
            compute(views)

    def _check_geometry(self, entry, grid, block, signature, values) -> None:
        def bad(why):
            return FakeDriverError("cuLaunchKernel", "CUDA_ERROR_INVALID_VALUE", f"{entry}: {why}")
        if any(p.bits != 64 for p in signature):
            raise bad("Kiln packs 8-byte parameters; the entry declares "
                      f"{[p.bits for p in signature]} bits")
        if len(grid) != 3 or len(block) != 3 or min(*grid, *block) < 1:
            raise bad(f"grid {tuple(grid)} and block {tuple(block)} need 3 positive sizes")
        if block[0] * block[1] * block[2] > _MAX_BLOCK_THREADS:
            raise bad(f"block {tuple(block)} has more than {_MAX_BLOCK_THREADS} threads")
        if signature and not signature[-1].pointer:
            threads = grid[0] * grid[1] * grid[2] * block[0] * block[1] * block[2]
            if threads < values[-1]:
                raise bad(f"{threads} threads do not cover {values[-1]} rows")

    # ---- events ----------------------------------------------------------------------------
    def event_create(self) -> list:
        self._record("cuEventCreate", 0)
        return [None]

    def event_record(self, event, stream) -> None:
        self._record("cuEventRecord", stream)
        event[0] = time.perf_counter()

    def event_synchronize(self, event) -> None:
        self._record("cuEventSynchronize")

    def event_elapsed_ms(self, start, end) -> float:
        self._record("cuEventElapsedTime")
        if start[0] is None or end[0] is None:
            raise FakeDriverError("cuEventElapsedTime", "CUDA_ERROR_INVALID_HANDLE",
                                  "an event was never recorded")
        return (end[0] - start[0]) * 1e3

    def event_destroy(self, event) -> None:
        self._record("cuEventDestroy")
