"""Several LLVM modules compiled apart in threads (a segment: an entry and its kernels), stored
as one bundle of objects and linked at load: the same code whatever the thread count, checked
like a single object, and the MLIR lowering's shared context gives the same text."""
import ctypes
import struct

import numpy as np
import pytest

from kiln.codegen import mlir_pipeline
from kiln.codegen.errors import CodegenError
from kiln.codegen.object_code import (emit_object_modules, load_object, optimized_ir,
                                      pack_objects, unpack_objects)

ENTRY = """declare void @double_it(ptr, i64)
declare void @add_one(ptr, i64)
define void @entry(ptr %x, i64 %n) {
  call void @double_it(ptr %x, i64 %n)
  call void @add_one(ptr %x, i64 %n)
  ret void
}
"""
KERNEL = """define void @{name}(ptr %x, i64 %n) {{
entry:
  br label %head
head:
  %i = phi i64 [0, %entry], [%next, %body]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %body, label %done
body:
  %p = getelementptr float, ptr %x, i64 %i
  %v = load float, ptr %p
  %w = {op} float %v, {constant}
  store float %w, ptr %p
  %next = add i64 %i, 1
  br label %head
done:
  ret void
}}
"""
TEXTS = [ENTRY, KERNEL.format(name="double_it", op="fmul", constant="2.0"),
         KERNEL.format(name="add_one", op="fadd", constant="1.0")]


def _run_entry(blob: bytes) -> np.ndarray:
    code = load_object(blob, ["entry", "double_it", "add_one"])
    x = np.arange(37, dtype=np.float32)
    ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(code.address("entry"))(
        x.ctypes.data, x.size)
    return x


@pytest.mark.parametrize("threads", ["1", "2", "5"])
def test_modules_compiled_apart_link_and_run(monkeypatch, threads):
    monkeypatch.setenv("KILN_COMPILE_THREADS", threads)
    blob, optimized = emit_object_modules(TEXTS)
    assert optimized is None and len(unpack_objects(blob)) == 3
    np.testing.assert_array_equal(_run_entry(blob), np.arange(37, dtype=np.float32) * 2 + 1)


def test_the_same_objects_whatever_the_thread_count(monkeypatch):
    blobs = set()
    for threads in ("1", "3"):
        monkeypatch.setenv("KILN_COMPILE_THREADS", threads)
        blobs.add(emit_object_modules(TEXTS)[0])
    assert len(blobs) == 1


def test_the_optimized_ir_of_the_whole_is_made_on_demand():
    text = optimized_ir(TEXTS)
    assert all(f"define void @{s}" in text for s in ("entry", "double_it", "add_one"))


def test_a_bundle_calling_a_symbol_defined_nowhere_is_refused():
    blob, _ = emit_object_modules(TEXTS[:2])        # add_one is missing
    with pytest.raises(CodegenError, match="add_one"):
        load_object(blob, ["entry"])


def test_a_bad_module_raises_in_the_callers_thread(monkeypatch):
    monkeypatch.setenv("KILN_COMPILE_THREADS", "2")
    with pytest.raises(CodegenError, match="LLVM rejected"):
        emit_object_modules(TEXTS + ["define i64 @f() {\n  ret i32 0\n}\n"])


@pytest.mark.parametrize("cut", [1, 9, 20, -1])
def test_a_truncated_bundle_is_refused(cut):
    blob = pack_objects(unpack_objects(emit_object_modules(TEXTS)[0]))
    with pytest.raises(CodegenError):
        load_object(blob[:cut], ["entry"])


def test_a_bundle_with_a_wrong_count_is_refused():
    blob = emit_object_modules(TEXTS)[0]
    bad = blob[:8] + struct.pack("<I", 0) + blob[12:]
    with pytest.raises(CodegenError, match="malformed"):
        load_object(bad, ["entry"])


MLIR = """func.func @f(%a: f32) -> f32 {
  %c = arith.constant 1.5 : f32
  %r = arith.addf %a, %c : f32
  return %r : f32
}
"""


def test_the_shared_mlir_context_gives_the_same_text_when_replaced(monkeypatch):
    first = mlir_pipeline.mlir_to_llvm_ir(MLIR)
    monkeypatch.setattr(mlir_pipeline, "_CONTEXT_USES", 1)     # a new context every module
    with pytest.raises(CodegenError, match="parse"):
        mlir_pipeline.mlir_to_llvm_ir("func.func @g( {")
    assert mlir_pipeline.mlir_to_llvm_ir(MLIR) == first
    assert mlir_pipeline.mlir_to_llvm_ir(MLIR) == first
