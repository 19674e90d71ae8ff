"""MLIR -> LLVM IR -> machine code: the float-constant compatibility step, errors, and the
exactness of constants end to end."""
from __future__ import annotations

import ctypes
import math
import struct

import numpy as np
import pytest

from kiln.codegen.errors import CodegenError
from kiln.codegen.llvm_cpu import compile_llvm_ir
from kiln.codegen.mlir_pipeline import fix_float_constants, mlir_to_llvm_ir
from kiln.codegen.scalar_builder import const_literal
from kiln.ir.dtypes import DType


@pytest.mark.parametrize("new,old", [
    ("fadd float %1, f0x3F800000", "fadd float %1, 0x3FF0000000000000"),
    ("fmul float %2, f0x3FB8AA3B", "fmul float %2, 0x3FF7154760000000"),
    ("fadd double %3, f0x3FF0000000000001", "fadd double %3, 0x3FF0000000000001"),
    ("fcmp olt float %61, 5.500000e-01", "fcmp olt float %61, 0x3FE19999A0000000"),
    ("fadd double %1, 5.500000e-01", "fadd double %1, 0x3FE199999999999A"),
    ("fmul float %18, 1.401300e-45", "fmul float %18, 0x36A0000000000000"),
    ("fadd float %0, +inf", "fadd float %0, 0x7FF0000000000000"),
    ("select i1 %c, float -inf, float %x", "select i1 %c, float 0xFFF0000000000000, float %x"),
    ("fadd double %0, +qnan", "fadd double %0, 0x7FF8000000000000"),
    ("fptrunc double 5.500000e-01 to float", "fptrunc double 0x3FE199999999999A to float"),
    ("<16 x float> splat (float -2.500000e+00)", "<16 x float> splat (float 0xC004000000000000)"),
    ("call float @llvm.fma.f32(float %a, float 1.000000e-01, float %c)",
     "call float @llvm.fma.f32(float %a, float 0x3FB99999A0000000, float %c)"),
    ("store i64 3, ptr %p, align 8", "store i64 3, ptr %p, align 8"),
    ("%f0x1 = add i32 %a, 1", "%f0x1 = add i32 %a, 1"),
])
def test_fix_float_constants(new, old):
    assert fix_float_constants(new) == old


def _roundtrip_module(values):
    """A function storing each f32 constant, through the whole pipeline."""
    lines = [f"func.func @consts(%p: memref<{len(values)}xf32>) {{"]
    for i, v in enumerate(values):
        lines += [f"  %i{i} = arith.constant {i} : index",
                  f"  %k{i} = arith.constant {const_literal(v, DType.float32)} : f32",
                  f"  memref.store %k{i}, %p[%i{i}] : memref<{len(values)}xf32>"]
    lines += ["  return", "}"]
    return "\n".join(lines)


def test_float32_constants_survive_the_pipeline_exactly():
    values = [0.55, 1.4426950408889634, 1e-45, -3.4e38, math.inf, -math.inf, 0.1, -0.0,
              2.0 ** -126, 6.9314575195e-01]
    obj = compile_llvm_ir(mlir_to_llvm_ir(_roundtrip_module(values)), "consts")
    out = np.zeros(len(values), np.float32)
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(obj.address)(out.ctypes.data)
    want = np.array(values, np.float32)
    assert out.tobytes() == want.tobytes()


def test_const_literal_is_exact_bits():
    assert const_literal(0.1, DType.float32) == "0x3DCCCCCD"
    assert const_literal(0.1, DType.float64) == "0x3FB999999999999A"
    assert const_literal(math.nan, DType.float32) == "0x7FC00000"
    assert const_literal(-1, DType.int32) == "-1"
    assert const_literal(1, DType.bool) == "true"
    bits = int(const_literal(1e-310, DType.float64), 16)
    assert struct.unpack("<d", struct.pack("<Q", bits))[0] == 1e-310


def test_bad_mlir_names_the_line():
    with pytest.raises(CodegenError, match="line 2: %x = arith.bogus"):
        mlir_to_llvm_ir("func.func @f() {\n  %x = arith.bogus\n  return\n}\n", what="kernel t")


def test_bad_llvm_ir_is_a_codegen_error():
    with pytest.raises(CodegenError, match="LLVM rejected the IR of @f"):
        compile_llvm_ir("define void @f() {\n  ret i32 0\n}\n", "f")
