"""The CPU device: kernels are machine code at an address (`void f(ptr..., i64 lo, i64 hi)`,
see codegen/cpu/render_kernel.py), launched with ctypes over [0, outer) and split over
threads when the work is large; matmul is NumPy's BLAS writing into the planned buffer."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..allocator import default_allocator
from ..device import Device
from .launcher import CpuLauncher, default_launcher, kernel_function


@dataclasses.dataclass(frozen=True)
class CpuKernelHandle:
    """A loaded kernel: its ctypes function, outer extent and estimated work."""

    name: str
    fn: object
    outer: int
    work: int
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

    def empty(self, shape, dtype) -> np.ndarray:
        return self.allocator.empty(shape, dtype)

    def launch(self, handle: CpuKernelHandle, arrays: list) -> None:
        self.launcher.launch(handle.fn, [_pointer(a) for a in arrays], handle.outer,
                             handle.work)

    def call(self, op: str, attrs, ins: list, outs: list) -> None:
        if op != "matmul":
            super().call(op, attrs, ins, outs)
        np.matmul(ins[0], ins[1], out=outs[0])


_DEFAULT: CpuDevice | None = None


def default_cpu_device() -> CpuDevice:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CpuDevice()
    return _DEFAULT
