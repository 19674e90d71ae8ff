"""Kiln's code generators: a schedule `Kernel` -> MLIR -> LLVM IR -> host machine code.

Public entry points (each stage's text stays readable for the CLI):
`render_kernel(kernel, symbol)` (MLIR text and its `loop_nest`), `mlir_to_llvm_ir(text)`,
`compile_llvm_ir(text, name)`, and `CpuRenderer` whose `compile(kernel)` (one kernel) and
`compile_segment(name, steps)` (one entry function per run of small steps) run them all,
cached in-process and on disk; `default_cpu_renderer()` is the one the frontend uses.
"""
from .cpu import (CpuArtifact, CpuRenderer, LoopNest, default_cpu_renderer, loop_nest,
                  render_kernel)
from .llvm_cpu import compile_llvm_ir
from .mlir_pipeline import fix_float_constants, mlir_to_llvm_ir

__all__ = ["CpuArtifact", "CpuRenderer", "LoopNest", "default_cpu_renderer", "loop_nest",
           "render_kernel", "compile_llvm_ir", "fix_float_constants", "mlir_to_llvm_ir"]
