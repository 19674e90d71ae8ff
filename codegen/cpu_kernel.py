"""Compile a `kernel` node for the CPU, once per distinct body (in-process cache).

    >>> from kiln.ir.builder import GraphBuilder, make_node
    >>> from kiln.ir.types import TensorType
    >>> from kiln.ir.dtypes import float32
    >>> gb = GraphBuilder("body"); x = gb.add_input(TensorType(float32, (4,)))
    >>> k = make_node("kernel", [x], {"name": "k0", "body": gb.finish(gb.emit("exp", [x], {}))})
    >>> compile_kernel(k).plan.outer
    4
"""
from __future__ import annotations

import collections
import dataclasses
import os
import threading
import weakref

from .llvm_cpu import CpuObject, compile_llvm_ir
from .lower_kernel import KernelPlan, body_signature, lower_kernel, plan_kernel, symbol_name
from .mlir_pipeline import mlir_to_llvm_ir


@dataclasses.dataclass(frozen=True)
class _Artifact:
    symbol: str
    mlir: str
    llvm_ir: str
    obj: CpuObject
    ops_per_element: int


@dataclasses.dataclass(frozen=True)
class CompiledKernel:
    """One kernel node compiled for the CPU: every stage's text and the function address.
    Kernels with identical bodies share the artifact (and its symbol)."""

    name: str
    plan: KernelPlan
    artifact: _Artifact

    @property
    def symbol(self) -> str:
        return self.artifact.symbol

    @property
    def mlir(self) -> str:
        return self.artifact.mlir

    @property
    def llvm_ir(self) -> str:
        """LLVM IR as translated from MLIR (before LLVM's optimizer)."""
        return self.artifact.llvm_ir

    @property
    def llvm_ir_optimized(self) -> str:
        return self.artifact.obj.optimized_ir

    @property
    def asm(self) -> str:
        return self.artifact.obj.asm

    @property
    def address(self) -> int:
        return self.artifact.obj.address

    @property
    def work(self) -> int:
        """Estimated cost of one launch (elements x ops per element), for threading."""
        return self.plan.numel * self.artifact.ops_per_element


def _cache_size() -> int:
    return max(1, int(os.environ.get("KILN_KERNEL_CACHE_SIZE", "64")))


# NOTE: a bounded LRU (KILN_KERNEL_CACHE_SIZE entries): each artifact owns an MCJIT engine
# (about 0.8 MiB, mostly its TargetMachine), freed once neither this cache nor an Executable
# holds it. `_LIVE` finds an artifact evicted here but still held by an Executable, so an
# equal body never gets a second engine while the first is alive.
CACHE_SIZE = _cache_size()
_CACHE: collections.OrderedDict[str, _Artifact] = collections.OrderedDict()
_LIVE: weakref.WeakValueDictionary[str, _Artifact] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()
STATS = {"compiled": 0, "hits": 0}


def _cached(key: str) -> _Artifact | None:
    artifact = _CACHE.get(key)
    if artifact is None:
        artifact = _LIVE.get(key)
        if artifact is None:
            return None
        _CACHE[key] = artifact
    _CACHE.move_to_end(key)
    _evict()
    return artifact


def _evict():
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)


def compile_kernel(node) -> CompiledKernel:
    """Lower, translate and JIT a kernel node; identical bodies compile once per process
    (while the artifact is cached or in use)."""
    plan = plan_kernel(node)
    key = body_signature(node)
    with _LOCK:
        artifact = _cached(key)
        if artifact is not None:
            STATS["hits"] += 1
            return CompiledKernel(plan.name, plan, artifact)
    symbol = symbol_name(plan.name)
    lowered = lower_kernel(node, symbol)
    llvm_ir = mlir_to_llvm_ir(lowered.mlir, what=f"kernel {plan.name}")
    artifact = _Artifact(symbol, lowered.mlir, llvm_ir, compile_llvm_ir(llvm_ir, symbol),
                         lowered.ops_per_element)
    with _LOCK:
        artifact = _cached(key) or artifact     # NOTE: another thread may have won the race
        _CACHE[key] = _LIVE[key] = artifact
        _evict()
        STATS["compiled"] += 1
    return CompiledKernel(plan.name, plan, artifact)


def clear_cache():
    """Forget compiled kernels (tests; the engines are freed when no Executable holds them)."""
    with _LOCK:
        _CACHE.clear()
        _LIVE.clear()
