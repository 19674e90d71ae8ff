"""The CPU device: kernels are machine code at an address (`void f(ptr..., i64 lo, i64 hi)`,
see codegen/cpu/render_kernel.py), launched with ctypes over [0, outer) and split over
threads when the work is large; matmul is NumPy's BLAS writing into the planned buffer.

    >>> import numpy as np
    >>> out = np.empty((2, 2), np.float32)
    >>> default_cpu_device().call("matmul", None, [np.eye(2, dtype=np.float32),
    ...                           np.ones((2, 2), np.float32)], [out], (False, True))
    >>> out.tolist()
    [[1.0, 1.0], [1.0, 1.0]]
"""
from __future__ import annotations

import ctypes
import dataclasses

import numpy as np

from ..allocator import default_allocator
from ..device import Device, transposed
from .launcher import CpuLauncher, default_launcher, kernel_function
from .pointers import data_pointers, pointer_table_caller


@dataclasses.dataclass(frozen=True)
class CpuKernelHandle:
    """A loaded kernel: its ctypes function, outer extent and estimated work."""

    name: str
    fn: object
    outer: int
    work: int
    artifact: object


@dataclasses.dataclass(frozen=True)
class CpuSegmentHandle:
    """A loaded entry function and the buffers its pointer array lists."""

    name: str
    fn: object
    buffers: tuple
    artifact: object
    table: type         # NOTE: the ctypes array type of its pointer table



class CpuDevice(Device):
    name = "cpu"

    def __init__(self, launcher: CpuLauncher | None = None):
        self.launcher = launcher or default_launcher()
        self.allocator = default_allocator()

    def load(self, artifact) -> CpuKernelHandle:
        """`artifact` has `name`, `address`, `n_buffers`, `outer` and `work` (what the CPU
        renderer makes)."""
        fn = kernel_function(artifact.address, artifact.n_buffers)
        return CpuKernelHandle(artifact.name, fn, artifact.outer, artifact.work, artifact)

    @property
    def serial_work_limit(self) -> int:
        """Launches below this much work run on one thread: they can share one compiled
        entry function with their neighbours (no Python between them)."""
        return self.launcher.min_parallel_work

    def load_segment(self, artifact) -> "CpuSegmentHandle":
        """`artifact` has `address` (of `void entry(ptr *bufs)`) and `buffers`."""
        fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(artifact.address)
        buffers = tuple(artifact.buffers)
        return CpuSegmentHandle(artifact.name, fn, buffers, artifact,
                                ctypes.c_uint64 * len(buffers))

    def run_segment(self, handle: "CpuSegmentHandle", arrays: list) -> None:
        handle.fn(handle.table(*data_pointers(arrays)))

    def segment_caller(self, handle: "CpuSegmentHandle"):
        """`run(*arrays)`: run_segment with the arrays as arguments, for generated callers
        (runtime/runner.py)."""
        return pointer_table_caller(handle.fn, len(handle.buffers))

    def empty(self, shape, dtype) -> np.ndarray:
        return self.allocator.empty(shape, dtype)

    def allocator_for(self, nbytes: int):
        # NOTE: the pool's own rule (runtime/allocator.py), decided once instead of per call
        return np.empty if 0 < nbytes < self.allocator.min_bytes else self.empty

    def launch(self, handle: CpuKernelHandle, arrays: list) -> None:
        self.launcher.launch(handle.fn, data_pointers(arrays), handle.outer,
                             handle.work)

    def call(self, op: str, attrs, ins: list, outs: list, transpose=()) -> None:
        if op != "matmul":
            super().call(op, attrs, ins, outs, transpose)
        np.matmul(*transposed(ins, transpose), out=outs[0])


_DEFAULT: CpuDevice | None = None


def default_cpu_device() -> CpuDevice:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CpuDevice()
    return _DEFAULT
