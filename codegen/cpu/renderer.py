"""The CPU Renderer: a schedule kernel -> MLIR -> LLVM IR -> machine code (llvmlite MCJIT).

Compiled kernels are cached in-process by their signature (equal kernels share one artifact)
in a bounded LRU: an artifact (and the LLVM engine that owns its code) is freed once neither
the cache nor an executable holds it.

    >>> from kiln.ir.schedule_text import parse_schedule
    >>> s = parse_schedule('''
    ... schedule @f(%x: f32[4]) {
    ...   buffer %0: f32[4] output
    ...   launch @k (%x) -> (%0) {space=[4], reduce=[]} {
    ...     load %x strides=[1] offset=0
    ...     store %0 strides=[1] offset=0
    ...     body @k(%1: f32[4]) {
    ...       %2: f32[4] = exp %1
    ...       return %2
    ...     }
    ...   }
    ...   return %0
    ... }''')
    >>> art = CpuRenderer().compile(s.kernels[0])
    >>> art.outer, art.n_buffers, "scf.for" in art.mlir
    (4, 2, True)
"""
from __future__ import annotations

import collections
import dataclasses
import os
import re
import threading

from kiln.ir.schedule import Kernel

from ..llvm_cpu import CpuObject, compile_llvm_ir
from ..mlir_pipeline import mlir_to_llvm_ir
from .render_kernel import LoopNest, render_kernel


def symbol_name(name: str) -> str:
    """A valid MLIR/LLVM symbol for a kernel name."""
    return "kiln_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


@dataclasses.dataclass(frozen=True)
class _Code:
    symbol: str
    mlir: str
    llvm_ir: str
    obj: CpuObject
    nest: LoopNest
    ops_per_element: int


@dataclasses.dataclass(frozen=True)
class CpuArtifact:
    """One kernel compiled for this CPU: every stage's text, the function's address and what
    the launcher needs (outer extent, buffer count, estimated work)."""

    name: str
    code: _Code
    n_buffers: int

    symbol = property(lambda self: self.code.symbol)
    mlir = property(lambda self: self.code.mlir)
    llvm_ir = property(lambda self: self.code.llvm_ir)
    llvm_ir_optimized = property(lambda self: self.code.obj.optimized_ir)
    asm = property(lambda self: self.code.obj.asm)
    address = property(lambda self: self.code.obj.address)
    outer = property(lambda self: self.code.nest.outer)
    numel = property(lambda self: self.code.nest.numel)
    nest = property(lambda self: self.code.nest)

    @property
    def work(self) -> int:
        """Estimated cost of one launch (iterations x ops per iteration), for threading."""
        return self.code.nest.numel * self.code.ops_per_element


def _cache_size() -> int:
    return max(1, int(os.environ.get("KILN_KERNEL_CACHE_SIZE", "512")))


class CpuRenderer:
    """Renders and compiles schedule kernels for this machine (see the module docstring)."""

    device = "cpu"

    def __init__(self, cache_size: int | None = None):
        self.cache_size = cache_size or _cache_size()
        self._cache: collections.OrderedDict[str, _Code] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"compiled": 0, "hits": 0}

    def render(self, k: Kernel) -> str:
        """The kernel's MLIR text."""
        return render_kernel(k, symbol_name(k.name)).mlir

    def compile(self, k: Kernel) -> CpuArtifact:
        key = k.signature()
        n_buffers = len(k.loads) + len(k.stores)
        with self._lock:
            code = self._cache.get(key)
            if code is not None:
                self._cache.move_to_end(key)
                self.stats["hits"] += 1
                return CpuArtifact(k.name, code, n_buffers)
        symbol = symbol_name(k.name)
        rendered = render_kernel(k, symbol)
        llvm_ir = mlir_to_llvm_ir(rendered.mlir, what=f"kernel {k.name}")
        code = _Code(symbol, rendered.mlir, llvm_ir, compile_llvm_ir(llvm_ir, symbol),
                     rendered.nest, rendered.ops_per_element)
        with self._lock:
            code = self._cache.setdefault(key, code)
            self.stats["compiled"] += 1
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return CpuArtifact(k.name, code, n_buffers)

    def clear(self):
        with self._lock:
            self._cache.clear()


_DEFAULT: CpuRenderer | None = None


def default_cpu_renderer() -> CpuRenderer:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CpuRenderer()
    return _DEFAULT
