"""A device that compiles nothing: it records each launch and, when asked, computes it with
the NumPy references, so executables, memory plans and launch order are tested without a
compiler.

    >>> import numpy as np
    >>> from kiln.ir.schedule_text import parse_schedule
    >>> from kiln.runtime.executable import build_executable
    >>> s = parse_schedule('''
    ... schedule @f(%x: f32[3]) {
    ...   buffer %0: f32[3] output
    ...   launch @k (%x) -> (%0) {space=[3], reduce=[]} {
    ...     load %x strides=[1] offset=0
    ...     store %0 strides=[1] offset=0
    ...     body @k(%1: f32[3]) {
    ...       %2: f32[3] = neg %1
    ...       return %2
    ...     }
    ...   }
    ...   return %0
    ... }''')
    >>> dev = NullDevice(compute=True)
    >>> build_executable(s, dev)([np.ones(3, np.float32)])[0].tolist(), dev.launches
    ([-1.0, -1.0, -1.0], ['k'])
"""
from __future__ import annotations

import numpy as np

from .device import Device, transposed
from .reference import run_kernel_reference


class NullDevice(Device):
    """Records launches (`launches`: kernel names, `calls`: library routines, in order)."""

    name = "null"

    def __init__(self, compute: bool = False):
        self.compute = compute
        self.launches: list[str] = []
        self.calls: list[str] = []
        self.loaded: list = []

    def load(self, artifact):
        self.loaded.append(artifact)
        return artifact

    def launch(self, handle, arrays: list) -> None:
        self.launches.append(handle.name)
        if self.compute:
            # NOTE: a schedule kernel, or a backend's artifact that keeps its kernel (CUDA's)
            k = getattr(handle, "kernel", handle)
            n = len(k.loads)
            run_kernel_reference(k, arrays[:n], arrays[n:])

    def call(self, op: str, attrs, ins: list, outs: list, transpose=()) -> None:
        self.calls.append(op)
        if self.compute and op == "matmul":
            np.matmul(*transposed(ins, transpose), out=outs[0])
