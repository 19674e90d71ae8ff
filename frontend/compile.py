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

import os

from kiln.ir.graph import Graph


def backend(device: str = "cpu", launcher=None):
    """(Device, Renderer) for a device name (`launcher`: a CpuLauncher for the CPU device,
    for tests that pin the thread count)."""
    if device == "cpu":
        from kiln.codegen.cpu import default_cpu_renderer
        from kiln.runtime.cpu import CpuDevice, default_cpu_device
        dev = CpuDevice(launcher) if launcher is not None else default_cpu_device()
        return dev, default_cpu_renderer()
    if device == "cuda":
        from .cuda_eager import cuda_device, cuda_renderer
        return cuda_device(), cuda_renderer()
    from kiln.ir.errors import NotSupportedError
    raise NotSupportedError(f"not supported yet: compiling for device '{device}'")


def compile_graph(graph: Graph, launcher=None, device: str = "cpu"):
    """The Executable of a fused graph; it keeps `schedule_text` (before memory planning)
    and its planned `schedule` for the CLI's `schedule` and `memory` stages."""
    schedule, text = plan_graph(graph)
    return _executable(graph, schedule, text, launcher, device)


def plan_graph(graph: Graph):
    """(memory-planned schedule, its text before planning) of a fused graph."""
    from kiln.passes.plan_memory import plan_memory
    from kiln.passes.schedule import build_schedule
    schedule = build_schedule(graph)
    text = str(schedule)
    plan_memory(schedule)
    return schedule, text


def _executable(graph: Graph, schedule, text: str, launcher, device: str):
    from kiln.runtime.executable import build_executable
    dev, renderer = backend(device, launcher)
    exe = build_executable(schedule, dev, renderer)
    exe.schedule_text = text
    exe.graph = graph
    return exe


def compile_traced(traced: Graph, launcher=None, device: str = "cpu"):
    """(optimized graph, pass stages, Executable) of a traced graph: the passes, the schedule
    and its memory plan, or all three from the disk cache (frontend/plan_cache.py; stages is
    None then). KILN_VERIFY, KILN_PRINT_AFTER and KILN_DEBUG>=3 ask for the passes to run: no cache."""
    from . import plan_cache
    from kiln import debug
    use_cache = not (os.environ.get("KILN_VERIFY", "") not in ("", "0")
                     or os.environ.get("KILN_PRINT_AFTER", "") or debug.LEVEL >= 3)
    plan = plan_cache.load_plan(traced, device) if use_cache else None
    if plan is not None:
        optimized, schedule, text = plan
        return optimized, None, _executable(optimized, schedule, text, launcher, device)
    from kiln.passes.manager import run_passes
    optimized, stages = run_passes(traced)
    schedule, text = plan_graph(optimized)
    if use_cache:
        # NOTE: before the executable is built from it (building annotates the schedule)
        plan_cache.store_plan(traced, device, optimized, schedule, text)
    return optimized, stages, _executable(optimized, schedule, text, launcher, device)


def cuda_stages(traced: Graph) -> list[tuple[str, str]]:
    """The stages of a traced graph compiled for NVIDIA GPUs (no GPU needed): the passes, the
    schedule before and after memory planning, and each kernel's MLIR, LLVM IR and PTX."""
    from kiln.codegen.cuda import CudaRenderer
    from kiln.ir.schedule import Call
    from kiln.passes.manager import run_passes
    optimized, stages = run_passes(traced)
    schedule, text = plan_graph(optimized)
    # NOTE: the pass manager's "input" stage is the traced graph itself
    out = [("traced", str(traced))] + [(st.name, str(st.graph)) for st in stages
                                       if st.name != "input"]
    out += [("schedule", text), ("memory", str(schedule))]
    renderer = CudaRenderer()
    # NOTE: a matmul call is a generated kernel on the GPU (codegen/cuda/matmul.py)
    launches = [renderer.lower_call(st) if isinstance(st, Call) else st
                for st in schedule.steps]
    arts = [renderer.compile(st.kernel) for st in launches if hasattr(st, "kernel")]
    for stage, attr in (("mlir", "mlir"), ("llvm", "llvm_ir")):
        body = "\n".join(f"// kernel {a.name}: grid {a.grid}, block {a.block}\n"
                         f"{getattr(a, attr)}" for a in arts)
        out.append((stage, body or "(no generated kernels)\n"))
    # NOTE: the PTX of all kernels as one module (what the driver loads), so that the stage
    # printed alone is a file ptxas assembles
    header = "".join(f"// kernel {a.name}: .entry {a.entry}, grid {a.grid}, block {a.block}"
                     "\n" for a in arts)
    out.append(("ptx", header + renderer.module_ptx(arts) if arts
                else "(no generated kernels)\n"))
    return out
