"""Kiln's code generators: a fused `kernel` node -> MLIR -> LLVM IR -> host machine code.

Public entry points (each stage's text stays readable for the CLI):
`lower_kernel_to_mlir(node)`, `mlir_to_llvm_ir(text)`, `compile_llvm_ir(text, name)`, and
`compile_kernel(node)` which runs them all, cached per distinct kernel body.
"""
from .cpu_kernel import CompiledKernel, compile_kernel
from .llvm_cpu import compile_llvm_ir
from .lower_kernel import lower_kernel_to_mlir, plan_kernel
from .mlir_pipeline import fix_float_constants, mlir_to_llvm_ir

__all__ = ["CompiledKernel", "compile_kernel", "compile_llvm_ir", "lower_kernel_to_mlir",
           "plan_kernel", "fix_float_constants", "mlir_to_llvm_ir"]
