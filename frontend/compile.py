"""A fused graph -> schedule -> memory plan -> an Executable on a device, through that
device's renderer. The one place the frontend picks a backend (the runtime never imports
codegen; this module hands the renderer's compile to the runtime).

    >>> import numpy as np
    >>> from kiln.ir.parser import parse
    >>> from kiln.passes.fusion import fuse_elementwise
    >>> g = fuse_elementwise(parse('''
    ... graph @f(%x: f32[2,4]) {
    ...   %0: f32[2,1] = max %x {axes=[1], keepdim=true}
    ...   return %0
    ... }'''))
    >>> exe = compile_graph(g)
    >>> exe([np.arange(8, dtype=np.float32).reshape(2, 4)])[0].ravel().tolist()
    [3.0, 7.0]
"""
from __future__ import annotations

from kiln.ir.graph import Graph


def backend(device: str = "cpu", launcher=None):
    """(Device, Renderer) for a device name (`launcher`: a CpuLauncher for the CPU device,
    for tests that pin the thread count)."""
    if device == "cpu":
        from kiln.codegen.cpu import default_cpu_renderer
        from kiln.runtime.cpu import CpuDevice, default_cpu_device
        dev = CpuDevice(launcher) if launcher is not None else default_cpu_device()
        return dev, default_cpu_renderer()
    from kiln.ir.errors import NotSupportedError
    raise NotSupportedError(f"not supported yet: compiling for device '{device}'")


def compile_graph(graph: Graph, launcher=None, device: str = "cpu"):
    """The Executable of a fused graph; it keeps `schedule_text` (before memory planning)
    and its planned `schedule` for the CLI's `schedule` and `memory` stages."""
    from kiln.passes.plan_memory import plan_memory
    from kiln.passes.schedule import build_schedule
    from kiln.runtime.executable import build_executable
    schedule = build_schedule(graph)
    text = str(schedule)
    plan_memory(schedule)
    dev, renderer = backend(device, launcher)
    exe = build_executable(schedule, dev, renderer)
    exe.schedule_text = text
    exe.graph = graph
    return exe
