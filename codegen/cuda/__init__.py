"""The CUDA backend's renderer: schedule kernels -> MLIR -> LLVM IR -> PTX (llvmlite's NVPTX
target, libdevice for math). It needs no GPU; the CUDA runtime (runtime/cuda) loads the PTX."""
from .ptx import DEFAULT_ARCH, check_with_ptxas, libdevice_path, llvm_ir_to_ptx, ptxas_path
from .renderer import GPU_OPTIONS, CudaArtifact, CudaRenderer, grid_entry_ir

__all__ = ["DEFAULT_ARCH", "check_with_ptxas", "libdevice_path", "llvm_ir_to_ptx",
           "ptxas_path", "GPU_OPTIONS", "CudaArtifact", "CudaRenderer", "grid_entry_ir"]
