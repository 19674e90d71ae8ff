"""LLVM IR text -> host machine code with llvmlite (O3, host CPU features, MCJIT).

    >>> obj = compile_llvm_ir("define i64 @one() {\\n  ret i64 1\\n}\\n", "one")
    >>> import ctypes
    >>> ctypes.CFUNCTYPE(ctypes.c_int64)(obj.address)()
    1
"""
from __future__ import annotations

import functools
import threading

from .errors import CodegenError

_LOCK = threading.Lock()


@functools.cache
def _llvm():
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def host_target_machine():
    """A target machine for this CPU (name and features), O3.
    NOTE: an MCJIT engine takes ownership of its target machine, so each caller gets a new
    one."""
    llvm = _llvm()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, jit=True)


def optimize(module, tm):
    """Run LLVM's O3 module pipeline with loop and SLP vectorization on `module`."""
    llvm = _llvm()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    try:
        mpm.run(module, pb)
    finally:
        # NOTE: llvmlite 0.50's pass manager never frees itself (its parent class's empty
        # cleanup wins): about 88 KiB per compile stayed allocated until disposed here.
        llvm.ffi.lib.LLVMPY_DisposeNewModulePassManger(mpm)
        mpm.detach()


class CpuObject:
    """A function compiled for this machine. Holds the engine that owns the code: the
    `address` is valid while this object lives."""

    def __init__(self, name: str, engine, optimized_ir: str):
        self.name = name
        self.engine = engine
        self.optimized_ir = optimized_ir
        self.address = engine.get_function_address(name)
        if not self.address:
            raise CodegenError(f"LLVM module has no function @{name}")
        self._asm: str | None = None

    @property
    def asm(self) -> str:
        """Host assembly of the optimized module (made on first use: it re-runs codegen)."""
        if self._asm is None:
            llvm = _llvm()
            with _LOCK:
                self._asm = host_target_machine().emit_assembly(
                    llvm.parse_assembly(self.optimized_ir))
        return self._asm


def compile_llvm_ir(text: str, name: str) -> CpuObject:
    """Parse, verify, optimize and JIT-compile LLVM IR; `name` is the function to expose."""
    llvm = _llvm()
    with _LOCK:
        try:
            module = llvm.parse_assembly(text)
            module.verify()
        except RuntimeError as e:
            raise CodegenError(f"LLVM rejected the IR of @{name}: {e}") from e
        tm = host_target_machine()
        optimize(module, tm)
        optimized = str(module)
        engine = llvm.create_mcjit_compiler(module, tm)
        engine.finalize_object()
    return CpuObject(name, engine, optimized)

