"""The CPU backend's renderer: schedule kernels -> MLIR -> LLVM IR -> machine code."""
from .render_kernel import LoopNest, loop_nest, render_kernel
from .renderer import CpuArtifact, CpuRenderer, default_cpu_renderer, symbol_name

__all__ = ["CpuArtifact", "CpuRenderer", "default_cpu_renderer", "symbol_name", "LoopNest",
           "loop_nest", "render_kernel"]
