"""The CUDA device: the CUDA renderer's PTX loaded with the driver and launched one GPU
thread per row on the device's stream, over DeviceArrays from a caching allocator.

`CudaDevice()` runs on GPU 0 through the real driver (driver.py). `CudaDevice(FakeDriver())`
runs on host memory, each launch computed by the kernel's NumPy reference: the whole runtime
(executables, arenas, copies, launch parameters and geometry) is tested without a GPU.

    >>> import numpy as np
    >>> from kiln.runtime.cuda.fake_driver import FakeDriver
    >>> dev = CudaDevice(FakeDriver())
    >>> x = dev.from_host(np.arange(3, dtype=np.float32))
    >>> x  # doctest: +ELLIPSIS
    DeviceArray(shape=(3,), dtype=float32, device='cuda', ptr=...)
    >>> x.to_host().tolist(), dev.memory_stats()["allocated_bytes"]
    ([0.0, 1.0, 2.0], 512)
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np

from kiln.ir.errors import KilnError, NotSupportedError

from ..device import Device
from ..reference import run_kernel_reference
from .allocator import CachingAllocator
from .array import ArrayFunctions, DeviceArray
from .driver import CudaDriver
from .errors import FakeDriverError


@dataclasses.dataclass(frozen=True)
class CudaKernelHandle:
    """A loaded entry: its driver function and launch geometry (artifact.grid, .block)."""

    name: str
    function: object
    grid: tuple
    block: tuple
    rows: int
    n_buffers: int
    artifact: object


class CudaDevice(Device):
    name = "cuda"

    def __init__(self, driver=None):
        self.driver = driver if driver is not None else CudaDriver()
        self.driver.init()
        self.stream = self.driver.stream_create()
        self.allocator = CachingAllocator(self.driver)
        self.xp = ArrayFunctions(self)
        self._modules: dict[str, object] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<CudaDevice {type(self.driver).__name__}>"

    # ---- kernels ---------------------------------------------------------------------------
    def load(self, artifact) -> CudaKernelHandle:
        """`artifact` is a CudaArtifact (codegen/cuda): its PTX module is loaded once per
        distinct PTX text, its entry looked up."""
        register = getattr(self.driver, "register_kernel", None)
        # NOTE: kernels equal but for their extents share PTX (the extent is the launch's row
        # count); the fake computes each by its own kernel's reference, so there a module is
        # loaded per kernel signature
        key = artifact.ptx if register is None else (artifact.ptx, artifact.kernel.signature())
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                module = self._modules[key] = self.driver.module_load(artifact.ptx)
        function = self.driver.module_function(module, artifact.entry)
        if register is not None:        # NOTE: the fake driver computes launches this way
            register(function, reference_kernel(artifact.kernel))
        return CudaKernelHandle(artifact.name, function, tuple(artifact.grid),
                                tuple(artifact.block), artifact.rows, artifact.n_buffers,
                                artifact)

    def launch(self, handle: CudaKernelHandle, arrays: list) -> None:
        """Queue the kernel on the stream: its buffers' pointers, then its row count."""
        if len(arrays) != handle.n_buffers:
            raise KilnError(f"kernel {handle.name} takes {handle.n_buffers} buffers, got "
                            f"{len(arrays)}")
        self.driver.launch(handle.function, handle.grid, handle.block, self.stream,
                           [a.ptr for a in arrays] + [handle.rows])

    def call(self, op: str, attrs, ins: list, outs: list, transpose=()) -> None:
        raise NotSupportedError(f"not supported yet: {op} on cuda (library routines need "
                                "cuBLAS, which the CUDA runtime does not call yet)")

    def on_host(self, fn):
        """`fn` over NumPy arrays as a function of device arrays: operands are copied to the
        host and results back (a `run` step: an op with no kernel lowering yet)."""
        def run(arrays):
            results = fn([a.to_host() if type(a) is DeviceArray else a for a in arrays])
            return [self.from_host(np.asarray(r)) for r in results]
        return run

    def synchronize(self) -> None:
        self.driver.stream_synchronize(self.stream)

    # ---- memory ------------------------------------------------------------------------------
    def empty(self, shape, dtype) -> DeviceArray:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes == 0:
            return DeviceArray(self, 0, shape, dtype)
        lease = self.allocator.lease(nbytes)
        return DeviceArray(self, lease.ptr, shape, dtype, lease)

    def zeros(self, shape, dtype) -> DeviceArray:
        out = self.empty(shape, dtype)
        if out.nbytes:
            self.driver.memset_d8(out.ptr, 0, out.nbytes, self.stream)
        return out

    def copy(self, dst: DeviceArray, src: DeviceArray) -> None:
        """dst[...] = src, queued on the stream (same shape and dtype)."""
        if dst.shape != src.shape or dst.dtype != src.dtype:
            raise KilnError(f"copy between {src.dtype}{list(src.shape)} and "
                            f"{dst.dtype}{list(dst.shape)}")
        if dst.nbytes:
            self.driver.memcpy_dtod(dst.ptr, src.ptr, dst.nbytes, self.stream)

    def clone(self, a: DeviceArray) -> DeviceArray:
        out = self.empty(a.shape, a.dtype)
        self.copy(out, a)
        return out

    def from_host(self, x) -> DeviceArray:
        """A device copy of array `x`."""
        x = np.asarray(x)
        if not x.flags.c_contiguous:    # NOTE: not ascontiguousarray: it makes a 0-d array 1-d
            x = x.copy(order="C")
        if x.dtype.hasobject:
            raise KilnError(f"an array of Python objects ({x.dtype}) cannot go to a GPU")
        out = self.empty(x.shape, x.dtype)
        if out.nbytes:
            self.driver.memcpy_htod(out.ptr, x.ctypes.data, x.nbytes, self.stream)
        return out

    def to_host(self, a: DeviceArray) -> np.ndarray:
        out = np.empty(a.shape, a.dtype)
        self.download(out, a)
        return out

    def download(self, dst: np.ndarray, src: DeviceArray) -> None:
        """Copy `src` into the C-contiguous host array `dst`, after the queued work."""
        if src.nbytes:
            self.driver.memcpy_dtoh(dst.ctypes.data, src.ptr, src.nbytes, self.stream)
            self.driver.stream_synchronize(self.stream)

    def memory_stats(self) -> dict:
        """The caching allocator's counters (allocator.py; like torch.cuda.memory_stats)."""
        return self.allocator.stats()

    def empty_cache(self) -> None:
        self.allocator.empty_cache()

    def mem_get_info(self) -> tuple[int, int]:
        """(free, total) bytes on the GPU, as torch.cuda.mem_get_info."""
        return self.driver.mem_info()

    # ---- timing ------------------------------------------------------------------------------
    def time_ms(self, fn, repeat: int = 1) -> float:
        """Device milliseconds per call of `fn()` (which queues work on the stream), between
        two CUDA events recorded around `repeat` calls."""
        drv = self.driver
        start, end = drv.event_create(), drv.event_create()
        try:
            drv.event_record(start, self.stream)
            for _ in range(repeat):
                fn()
            drv.event_record(end, self.stream)
            drv.event_synchronize(end)
            return drv.event_elapsed_ms(start, end) / repeat
        finally:
            drv.event_destroy(start)
            drv.event_destroy(end)


def reference_kernel(k):
    """`compute(views)` for the fake driver: kernel `k` by its NumPy reference over its
    pointer parameters' bytes (each from the pointer to its allocation's end), refusing a
    buffer too small for the elements the kernel's accesses touch."""
    body_types = [v.type for v in k.body.inputs] + [v.type for v in k.body.outputs]
    dtypes = [t.dtype.np for t in body_types]
    spans = [acc.span(k.space) * dt.itemsize for acc, dt in zip(k.loads + k.stores, dtypes)]
    n = len(k.loads)

    def compute(views):
        for i, (raw, span) in enumerate(zip(views, spans)):
            if raw.nbytes < span:
                raise FakeDriverError("cuLaunchKernel", "CUDA_ERROR_ILLEGAL_ADDRESS",
                                      f"{k.name}: buffer {i} has {raw.nbytes} bytes, the "
                                      f"kernel reaches {span}")
        arrays = [raw[:span].view(dt) for raw, span, dt in zip(views, spans, dtypes)]
        run_kernel_reference(k, arrays[:n], arrays[n:])
    return compute

