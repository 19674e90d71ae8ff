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


def _pointer(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


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
        return CpuSegmentHandle(artifact.name, fn, tuple(artifact.buffers), artifact)

    def run_segment(self, handle: "CpuSegmentHandle", arrays: list) -> None:
        ptrs = np.fromiter((_pointer(a) for a in arrays), np.uint64, len(arrays))
        handle.fn(_pointer(ptrs))

    def empty(self, shape, dtype) -> np.ndarray:
        return self.allocator.empty(shape, dtype)

    def launch(self, handle: CpuKernelHandle, arrays: list) -> None:
        self.launcher.launch(handle.fn, [_pointer(a) for a in arrays], handle.outer,
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
