"""LLVM IR text -> host machine code with llvmlite (O3, host CPU features, MCJIT).

    >>> obj = compile_llvm_ir("define i64 @one() {\\n  ret i64 1\\n}\\n", "one")
    >>> import ctypes
    >>> ctypes.CFUNCTYPE(ctypes.c_int64)(obj.address)()
    1
"""
from __future__ import annotations

import ctypes
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


def optimize(module, tm, unlocked: bool = False):
    """Run LLVM's O3 module pipeline with loop and SLP vectorization on `module`; `unlocked`:
    without llvmlite's process lock (see `_unlocked`)."""
    llvm = _llvm()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    # NOTE: no loop unrolling: the vectorizer's interleaving already gives the loops their
    # parallel chains, and unrolling layer norm's row loops on top made its kernel slower
    # (W3 3.9-5.1 -> 2.8-3.6 ms, interleaved runs) and cost ~30% of LLVM's time in W7.
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    try:
        if unlocked:
            _unlocked("LLVMPY_RunNewModulePassManager")(mpm, module, pb)
        else:
            mpm.run(module, pb)
    finally:
        # NOTE: llvmlite 0.50's pass manager never frees itself (its parent class's empty
        # cleanup wins): about 88 KiB per compile stayed allocated until disposed here.
        llvm.ffi.lib.LLVMPY_DisposeNewModulePassManger(mpm)
        mpm.detach()


def emit_object_unlocked(tm, module) -> bytes:
    """`tm.emit_object(module)` without llvmlite's process lock (see `_unlocked`)."""
    ffi = _llvm().ffi
    with ffi.OutputString() as err:
        buffer = _unlocked("LLVMPY_TargetMachineEmitToMemory")(tm, module, 1, err)
        if not buffer:
            raise CodegenError(f"LLVM could not generate code: {err}")
    try:
        return ctypes.string_at(ffi.lib.LLVMPY_GetBufferStart(buffer),
                                ffi.lib.LLVMPY_GetBufferSize(buffer))
    finally:
        ffi.lib.LLVMPY_DisposeMemoryBuffer(buffer)


def _unlocked(name: str):
    """libllvmlite's C function `name`, called without llvmlite's process-wide lock.
    NOTE: llvmlite runs every call under one lock, so compiles in several threads would take
    turns. LLVM itself only needs that threads share no context, module, target machine or
    pass builder, which holds for the callers here (each compile makes its own); ctypes
    releases the GIL during the call, so the optimizer and code generator use several cores.
    Without the raw function (another llvmlite), the locked one: correct, one at a time."""
    wrapped = getattr(_llvm().ffi.lib, name)
    return getattr(wrapped, "_cfn", wrapped)


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

