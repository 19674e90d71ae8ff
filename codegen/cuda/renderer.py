"""The CUDA backend's renderer: a schedule kernel -> MLIR -> LLVM IR -> PTX.

The kernel's MLIR is the CPU's (render_kernel.py), rendered with the GPU's options: one
function computing the parallel points [lo, hi) of the kernel (its parallel axes flattened,
row-major), with no stack scratch buffers and no x86 instructions. A `ptx_kernel` entry
runs it with one GPU thread per point:

    void @<symbol>_grid(ptr in0, ..., ptr out0, ..., i64 points)
        i = blockIdx.x * blockDim.x + threadIdx.x;  if i < points: <symbol>(..., i, i + 1)

so the threads of a warp touch neighbouring elements (coalesced), broadcasts included. A
kernel reducing along contiguous memory (a softmax's rows, a sum of everything) runs one warp
per point instead (`warp_reduces`): lane l of the warp takes reduction elements l, l + 32, ...
and shuffles combine the lanes' partial results (codegen/cpu/render_warp.py); a reduction
down columns keeps one thread per point, whose neighbours read along the rows. The same MLIR compiled
for the CPU is checked against the references (tests/codegen/test_cuda_ptx.py), the warp
kernels with one CPU thread per lane.

    >>> import textwrap
    >>> from kiln.ir.parser import parse
    >>> from kiln.passes.fusion import fuse_elementwise
    >>> from kiln.passes.schedule import build_schedule
    >>> g = fuse_elementwise(parse(textwrap.dedent('''
    ...     graph @f(%x: f32[1000]) {
    ...       %0: f32[1000] = exp %x
    ...       return %0
    ...     }''')))
    >>> art = CudaRenderer().compile(build_schedule(g).kernels[0])
    >>> art.entry, art.rows, art.grid
    ('kiln_fused_0_grid', 1000, (4, 1, 1))
    >>> ".visible .entry kiln_fused_0_grid(" in art.ptx
    True
"""
from __future__ import annotations

import dataclasses
import re
import threading
from collections import OrderedDict

from kiln.ir.schedule import Kernel

from ..cpu.render_kernel import Dim, LoopNest, RenderOptions, loop_nest, render_kernel
from ..cpu.render_warp import SHUFFLE_SUFFIX
from ..cpu.renderer import symbol_name
from ..mlir_pipeline import mlir_to_llvm_ir
from .matmul import matmul_kernel
from .matmul_tiled import is_generated_matmul, row_tile, tiled_matmul_mlir, tiled_points
from .ptx import DEFAULT_ARCH, llvm_ir_to_ptx

GPU_OPTIONS = RenderOptions(columns=False, scratch_bytes=0, vector_ldexp=False,
                            flat_parallel=True)
BLOCK_THREADS = 256
WARP = 32
GRID = "_grid"
# NOTE: the symbol a kernel is compiled under, replaced by its own in each artifact's texts
_PLACEHOLDER = "kiln_KSYM"


@dataclasses.dataclass(frozen=True)
class CudaArtifact:
    """One kernel compiled for NVIDIA GPUs: every stage's text and the launch geometry.
    `kernel` is the schedule kernel (the null device computes it with NumPy)."""

    name: str
    kernel: Kernel
    symbol: str
    mlir: str
    llvm_ir: str
    ptx: str
    nest: LoopNest
    arch: str
    block: tuple = (BLOCK_THREADS, 1, 1)
    lanes: int = 1          # NOTE: threads per point: WARP for a warp reduction

    entry = property(lambda self: self.symbol + GRID)
    rows = property(lambda self: self.nest.points)     # NOTE: flat_parallel: one per point
    n_buffers = property(lambda self: len(self.kernel.loads) + len(self.kernel.stores))
    loads = property(lambda self: self.kernel.loads)

    @property
    def grid(self) -> tuple:
        return (max(1, -(-self.rows * self.lanes // self.block[0])), 1, 1)


def warp_reduces(k: Kernel, nest: LoopNest) -> bool:
    """Whether kernel k runs one warp per point: it reduces at least a warp's worth of
    elements per point, and fewer of its accesses are scattered across a warp that way (the
    lanes step along the innermost reduction axis) than with one thread per point
    (neighbouring threads step along the innermost parallel axis). A softmax row and a
    product with a transposed operand go to warps; a sum down columns and a plain product
    keep one thread per point; a kernel with one point always takes a warp."""
    if not nest.reduce:
        return False
    extent = 1
    for d in nest.reduce:
        extent *= d.extent
    if extent < WARP:
        return False
    if nest.points == 1:
        return True
    return _scattered(nest.reduce[-1]) <= _scattered(nest.parallel[-1])


def _scattered(dim: Dim) -> int:
    """Accesses that neighbouring threads stepping along `dim` read or write in different
    places (neither the same element nor the next one)."""
    return sum(s not in (0, 1) for s in dim.strides)


def shuffle_ir(symbol: str) -> str:
    """LLVM IR of the shuffle a warp kernel calls (render_warp.py): the value of lane
    (lane xor offset), all 32 lanes taking part (`convergent`: never moved into a branch)."""
    return "\n".join([
        "declare i32 @llvm.nvvm.shfl.sync.bfly.i32(i32, i32, i32, i32)",
        f"define internal i32 @{symbol}{SHUFFLE_SUFFIX}(i32 %x, i32 %offset) "
        "convergent alwaysinline {",
        "  %r = call i32 @llvm.nvvm.shfl.sync.bfly.i32(i32 -1, i32 %x, i32 %offset, i32 31)",
        "  ret i32 %r",
        "}",
        ""])


def grid_entry_ir(symbol: str, n_pointers: int, lanes: int = 1) -> str:
    """LLVM IR of the `ptx_kernel` entry running kernel `symbol` one point per GPU thread
    (per warp of `lanes` threads, which the kernel gets as its lane, when lanes > 1).

    >>> print(grid_entry_ir("k", 1).splitlines()[4])
    define ptx_kernel void @k_grid(ptr %p0, i64 %rows) {
    """
    params = ", ".join(f"ptr %p{i}" for i in range(n_pointers))
    return "\n".join([
        "declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()",
        "declare i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()",
        "declare i32 @llvm.nvvm.read.ptx.sreg.ntid.x()",
        "",
        f"define ptx_kernel void @{symbol}{GRID}({params}, i64 %rows) {{",
        "  %tid = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()",
        "  %ctaid = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()",
        "  %ntid = call i32 @llvm.nvvm.read.ptx.sreg.ntid.x()",
        "  %t = zext i32 %tid to i64",
        "  %c = zext i32 %ctaid to i64",
        "  %n = zext i32 %ntid to i64",
        "  %base = mul i64 %c, %n",
        "  %g = add i64 %base, %t",
        f"  %i = udiv i64 %g, {lanes}",
        f"  %lane = urem i64 %g, {lanes}",
        "  %inside = icmp slt i64 %i, %rows",
        "  br i1 %inside, label %run, label %done",
        "run:",
        "  %next = add i64 %i, 1",
        f"  call void @{symbol}({params}, {'i64 %lane, ' if lanes > 1 else ''}"
        "i64 %i, i64 %next)",
        "  br label %done",
        "done:",
        "  ret void",
        "}",
        ""])


class CudaRenderer:
    """Compiles schedule kernels to PTX (cached by kernel signature, per process). Needs no
    GPU: the driver loads the PTX (runtime/cuda), and `ptxas` can check it anywhere."""

    def __init__(self, arch: str = DEFAULT_ARCH, cache_size: int = 256):
        self.arch = arch
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def render(self, k: Kernel, symbol: str | None = None) -> str:
        """The kernel's MLIR as the GPU renders it."""
        return render_kernel(k, symbol or symbol_name(k.name), GPU_OPTIONS).mlir

    def compile(self, k: Kernel) -> CudaArtifact:
        """The kernel's artifact; compiled once per signature (kernels equal but for their
        names share the code, each under its own symbol)."""
        key = k.signature()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is None:
            hit = self._compile(k, _PLACEHOLDER)
            with self._lock:
                self._cache[key] = hit
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        symbol = symbol_name(k.name)
        named = {f: getattr(hit, f).replace(_PLACEHOLDER, symbol)
                 for f in ("mlir", "llvm_ir", "ptx")}
        return dataclasses.replace(hit, name=k.name, kernel=k, symbol=symbol, **named)

    def _compile(self, k: Kernel, symbol: str) -> CudaArtifact:
        tm = row_tile(k) if is_generated_matmul(k) else 1
        if tm > 1:
            return self._compile_tiled_matmul(k, symbol, tm)
        lanes = WARP if warp_reduces(k, loop_nest(k)) else 1
        options = dataclasses.replace(GPU_OPTIONS, warp_lanes=lanes if lanes > 1 else 0)
        r = render_kernel(k, symbol, options)
        kernel_ir = mlir_to_llvm_ir(r.mlir, what=f"kernel {k.name} (cuda)")
        if lanes > 1:
            # NOTE: the shuffle's declaration, from the MLIR, becomes its definition
            kernel_ir = re.sub(rf"^declare .*@{symbol}{SHUFFLE_SUFFIX}\(.*$\n?", "",
                               kernel_ir, flags=re.M) + "\n" + shuffle_ir(symbol)
        llvm_ir = kernel_ir + "\n" + grid_entry_ir(symbol, len(k.loads) + len(k.stores), lanes)
        ptx = llvm_ir_to_ptx(llvm_ir, self.arch)
        return CudaArtifact(k.name, k, symbol, r.mlir, llvm_ir, ptx, r.nest, self.arch,
                            lanes=lanes)

    def _compile_tiled_matmul(self, k: Kernel, symbol: str, tm: int) -> CudaArtifact:
        """A matmul kernel as columns of `tm` results per thread (matmul_tiled.py); its
        points are the tiles."""
        mlir = tiled_matmul_mlir(k, symbol, tm)
        kernel_ir = mlir_to_llvm_ir(mlir, what=f"kernel {k.name} (cuda, tiled)")
        llvm_ir = kernel_ir + "\n" + grid_entry_ir(symbol, 3)
        nest = LoopNest((Dim(tiled_points(k, tm), ()),), ())
        return CudaArtifact(k.name, k, symbol, mlir, llvm_ir, llvm_ir_to_ptx(llvm_ir, self.arch),
                            nest, self.arch)

    def lower_call(self, call):
        """A schedule's library call as a Launch of a generated kernel (the runtime asks
        before it builds an executable): matmul has no GPU library here yet."""
        if call.op == "matmul":
            return matmul_kernel(call)
        return call

    def module_ptx(self, artifacts: list[CudaArtifact]) -> str:
        """One PTX module holding the entries of `artifacts` (distinct kernel symbols)."""
        symbols = [a.symbol for a in artifacts]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"kernels share a symbol: {symbols}")
        return llvm_ir_to_ptx([a.llvm_ir for a in artifacts], self.arch)

    def __len__(self) -> int:
        return len(self._cache)
