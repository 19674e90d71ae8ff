"""Kiln's own linker for cached objects (kiln.codegen.elf_loader): on x86-64 Linux it links
what `emit_object` makes, so a warm start loads no LLVM; where it does not apply, MCJIT
links as before. What the loaded code computes is checked against MCJIT's in
tests/codegen/test_object_code.py, which now loads through it."""
from __future__ import annotations

import ctypes
import gc
import weakref

import numpy as np
import pytest

from kiln.codegen import elf_loader
from kiln.codegen.llvm_cpu import compile_llvm_ir
from kiln.codegen.object_code import emit_object, emit_object_modules, load_object

pytestmark = pytest.mark.skipif(not elf_loader.supported(), reason="x86-64 Linux only")

# NOTE: a constant pool (the float constants), a call out (expf) and a call between two
# objects of one bundle: the relocations the kernels need
CALLEE = """
declare float @expf(float)
define float @scaled_exp(float %x) {
  %e = call float @expf(float %x)
  %y = fmul float %e, 0x3FF8000000000000
  ret float %y
}
"""
CALLER = """
declare float @scaled_exp(float)
define void @apply(ptr noalias %a, ptr noalias %out, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %pa = getelementptr float, ptr %a, i64 %i
  %po = getelementptr float, ptr %out, i64 %i
  %x = load float, ptr %pa
  %y = call float @scaled_exp(float %x)
  %z = fadd float %y, 0x3FB99999A0000000
  store float %z, ptr %po
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}
"""
PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


def _apply(address: int, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    PROTO(address)(x.ctypes.data, out.ctypes.data, x.size)
    return out


def test_a_bundle_is_linked_by_kiln_and_computes_what_mcjit_computes():
    bundle, _ = emit_object_modules([CALLER, CALLEE])
    loaded = load_object(bundle, ["apply"])
    assert isinstance(loaded.engine, elf_loader.Image)
    x = np.linspace(-3, 3, 37, dtype=np.float32)
    jit = compile_llvm_ir(CALLEE + CALLER.replace("declare float @scaled_exp(float)\n", ""),
                          "apply")
    assert _apply(loaded.address("apply"), x).tobytes() == _apply(jit.address, x).tobytes()
    np.testing.assert_allclose(_apply(loaded.address("apply"), x), np.exp(x) * 1.5 + 0.1,
                               rtol=1e-6)


def test_the_code_lives_as_long_as_its_loaded_object():
    loaded = load_object(emit_object(CALLEE), ["scaled_exp"])
    image = weakref.ref(loaded.engine)
    f = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_float)(loaded.address("scaled_exp"))
    assert f(0.0) == 1.5
    del loaded, f
    gc.collect()
    assert image() is None


def test_what_it_does_not_handle_is_left_to_mcjit():
    obj = emit_object(CALLEE)
    assert elf_loader.load([obj], ["no_such_symbol"]) is None
    assert elf_loader.load([obj], ["scaled_exp"]) is not None


def test_a_warm_process_loads_no_llvm_and_no_mlir(run_program, tmp_path):
    program = """
import json, sys
import numpy as np, kiln
f = kiln.jit(lambda a, b: kiln.tanh(a @ b) * 2.0 + kiln.exp(a).sum())
a = kiln.from_numpy(np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8))
out = f(a, a).numpy()
print(json.dumps({"llvmlite": "llvmlite" in sys.modules, "mlir": "torch_mlir" in sys.modules,
                  "out": out.ravel().tolist()}))
"""
    cold = run_program(program, tmp_path)
    warm = run_program(program, tmp_path)
    assert cold["llvmlite"] and cold["mlir"]
    assert not warm["llvmlite"] and not warm["mlir"], warm
    assert warm["out"] == cold["out"]


def _objects_declined(ir: str, symbols: list[str]) -> None:
    """Left to MCJIT by Kiln's loader, and still loaded and right through it."""
    obj = emit_object(ir)
    assert elf_loader.load([obj], symbols) is None
    loaded = load_object(obj, symbols)
    assert not isinstance(loaded.engine, elf_loader.Image)
    return loaded


def test_writable_data_is_left_to_mcjit():
    loaded = _objects_declined("""
@count = internal global i64 0
define i64 @bump() {
  %v = load i64, ptr @count
  %w = add i64 %v, 1
  store i64 %w, ptr @count
  ret i64 %w
}
""", ["bump"])
    f = ctypes.CFUNCTYPE(ctypes.c_int64)(loaded.address("bump"))
    assert [f(), f()] == [1, 2]


def test_an_alignment_above_a_page_is_left_to_mcjit():
    loaded = _objects_declined("""
@g = constant [4 x i64] [i64 1, i64 2, i64 3, i64 4], align 65536
define ptr @addr() {
  ret ptr @g
}
""", ["addr"])
    assert ctypes.CFUNCTYPE(ctypes.c_void_p)(loaded.address("addr"))() % 65536 == 0


def test_a_weak_definition_in_a_bundle_is_left_to_mcjit():
    bundle, _ = emit_object_modules([
        "define weak i64 @v() {\n  ret i64 1\n}\n",
        "define i64 @v() {\n  ret i64 2\n}\ndefine i64 @w() {\n  ret i64 3\n}\n"])
    from kiln.codegen.object_code import unpack_objects
    assert elf_loader.load(unpack_objects(bundle), ["w"]) is None


def test_loaded_code_is_sealed_read_only_and_executable():
    loaded = load_object(emit_object(CALLEE), ["scaled_exp"])
    base = loaded.engine.base
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= base < hi:
                assert line.split()[1] == "r-xp", line
                break
        else:
            pytest.fail("the mapping is not in /proc/self/maps")


def test_sealed_code_refuses_a_write_instead_of_crashing():
    loaded = load_object(emit_object(CALLEE), ["scaled_exp"])
    with pytest.raises(ValueError, match="sealed"):
        loaded.engine.write(0, b"\x90")
