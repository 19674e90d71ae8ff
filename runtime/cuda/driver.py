"""The CUDA driver API, as much of it as Kiln needs, over cuda-python's `cuda.bindings.driver`
(imported on first use: importing Kiln never loads libcuda).

Every call's CUresult is checked: a failure raises CudaError naming the call, the error
(cuGetErrorName) and the driver's description (cuGetErrorString). A call that cannot reach
the driver at all (cuda-python raises when libcuda is missing) is a CudaError too; arguments
cuda-python refuses (TypeError, ValueError) are Kiln's bugs and pass through unchanged.

Device pointers are ints; streams, modules, functions and events are cuda-python's handle
objects, opaque to callers. `FakeDriver` (fake_driver.py) has the same methods over host
memory, for tests without a GPU.

    >>> drv = CudaDriver()          # nothing is loaded until a method is called
    >>> drv.context is None
    True
"""
from __future__ import annotations

import threading

from .errors import CudaError
from .params import PackedParams

_NO_DRIVER_HINT = "kiln.cuda.driver_available() says whether an NVIDIA driver and GPU are here"


class CudaDriver:
    """Device `ordinal`'s primary context (shared with every other CUDA user of the process,
    as the runtime API and PyTorch share it), made current in each thread that calls."""

    def __init__(self, ordinal: int = 0):
        self.ordinal = ordinal
        self.device = None
        self.context = None
        self._cu = None
        self._tls = threading.local()

    @property
    def cu(self):
        """The `cuda.bindings.driver` module."""
        if self._cu is None:
            try:
                from cuda.bindings import driver
            except ImportError as e:
                raise CudaError("import cuda.bindings.driver", "ImportError", str(e),
                                hint="pip install cuda-python") from e
            self._cu = driver
        return self._cu

    def _call(self, name: str, *args):
        """`name(*args)`, checked; its results after the CUresult (None, one value or a
        tuple)."""
        if self.context is not None and not getattr(self._tls, "current", False):
            # NOTE: the current context is per thread; a thread's first call sets it
            self._tls.current = True
            self._call("cuCtxSetCurrent", self.context)
        try:
            out = getattr(self.cu, name)(*args)
        except (TypeError, ValueError, OverflowError):
            raise
        except Exception as e:  # NOTE: no libcuda (DynamicLibNotFoundError), or a broken one
            raise CudaError(name, type(e).__name__, str(e), hint=_NO_DRIVER_HINT) from e
        if out[0] != self.cu.CUresult.CUDA_SUCCESS:
            raise self._error(name, out[0])
        return None if len(out) == 1 else out[1] if len(out) == 2 else out[1:]

    def _error(self, call: str, err) -> CudaError:
        name, text = getattr(err, "name", str(err)), ""
        try:     # NOTE: the enum's name stands in where the driver cannot describe its error
            e1, raw_name = self.cu.cuGetErrorName(err)
            e2, raw_text = self.cu.cuGetErrorString(err)
            if e1 == self.cu.CUresult.CUDA_SUCCESS:
                name = raw_name.decode()
            if e2 == self.cu.CUresult.CUDA_SUCCESS:
                text = raw_text.decode()
        except Exception:
            pass
        return CudaError(call, name, text)

    # ---- device and context ------------------------------------------------------------
    def init(self) -> None:
        """cuInit, then device `ordinal`'s primary context, current in this thread."""
        self._call("cuInit", 0)
        self.device = self._call("cuDeviceGet", self.ordinal)
        context = self._call("cuDevicePrimaryCtxRetain", self.device)
        self._call("cuCtxSetCurrent", context)
        self._tls.current = True
        self.context = context

    def device_count(self) -> int:
        return self._call("cuDeviceGetCount")

    def device_name(self) -> str:
        raw = self._call("cuDeviceGetName", 256, self.device)
        return raw.split(b"\0", 1)[0].decode()

    def compute_capability(self) -> tuple[int, int]:
        attr = self.cu.CUdevice_attribute
        return (self._call("cuDeviceGetAttribute",
                           attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.device),
                self._call("cuDeviceGetAttribute",
                           attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.device))

    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes of device memory."""
        free, total = self._call("cuMemGetInfo")
        return int(free), int(total)

    # ---- memory: plain device allocations (cuMemAlloc), never managed memory -----------
    def mem_alloc(self, nbytes: int) -> int:
        return int(self._call("cuMemAlloc", nbytes))

    def mem_free(self, ptr: int) -> None:
        self._call("cuMemFree", ptr)

    def memcpy_htod(self, dst: int, src_host: int, nbytes: int, stream) -> None:
        """From pageable host memory the driver stages the source before returning, so the
        host buffer may be reused at once (CUDA's API synchronization rules)."""
        self._call("cuMemcpyHtoDAsync", dst, src_host, nbytes, stream)

    def memcpy_dtoh(self, dst_host: int, src: int, nbytes: int, stream) -> None:
        """Ordered after the stream's work; the caller synchronizes before reading."""
        self._call("cuMemcpyDtoHAsync", dst_host, src, nbytes, stream)

    def memcpy_dtod(self, dst: int, src: int, nbytes: int, stream) -> None:
        self._call("cuMemcpyDtoDAsync", dst, src, nbytes, stream)

    def memset_d8(self, dst: int, value: int, nbytes: int, stream) -> None:
        self._call("cuMemsetD8Async", dst, value, nbytes, stream)

    # ---- streams, modules, launches ------------------------------------------------------
    def stream_create(self):
        return self._call("cuStreamCreate", 0)   # NOTE: CU_STREAM_DEFAULT: orders with stream 0

    def stream_synchronize(self, stream) -> None:
        self._call("cuStreamSynchronize", stream)

    def module_load(self, ptx: str):
        """A module from PTX text (the driver JIT-compiles it for this GPU)."""
        return self._call("cuModuleLoadData", ptx.encode() + b"\0")

    def module_function(self, module, name: str):
        return self._call("cuModuleGetFunction", module, name.encode())

    def launch(self, function, grid, block, stream, params) -> None:
        """`function` over `grid` blocks of `block` threads on `stream`; `params` are ints
        (device pointers, then rows), each passed as 8 bytes (params.py)."""
        packed = PackedParams(params)
        self._call("cuLaunchKernel", function, grid[0], grid[1], grid[2], block[0], block[1],
                   block[2], 0, stream, packed.address, 0)

    # ---- events (timing) -----------------------------------------------------------------
    def event_create(self):
        return self._call("cuEventCreate", 0)

    def event_record(self, event, stream) -> None:
        self._call("cuEventRecord", event, stream)

    def event_synchronize(self, event) -> None:
        self._call("cuEventSynchronize", event)

    def event_elapsed_ms(self, start, end) -> float:
        return float(self._call("cuEventElapsedTime", start, end))

    def event_destroy(self, event) -> None:
        self._call("cuEventDestroy", event)
