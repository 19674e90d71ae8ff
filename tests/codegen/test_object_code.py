"""LLVM IR -> object file bytes -> loaded machine code (kiln.codegen.object_code): the loaded
functions compute exactly what the JIT path (llvm_cpu.compile_llvm_ir) computes, calls to libm
and to in-process symbols are linked at load time, and bad bytes are refused, not crashed on."""
from __future__ import annotations

import ctypes
import doctest
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from kiln.codegen import object_code
from kiln.codegen.errors import CodegenError
from kiln.codegen.llvm_cpu import _llvm, compile_llvm_ir
from kiln.codegen.object_code import emit_object, load_object, undefined_symbols

ROOT = Path(__file__).resolve().parents[2]

# A kernel-shaped function: rows [lo, hi) of out[i] = expf(a[i]) * b[i] + poly(a[i]), where
# poly is a vectorizable polynomial with constants (a constant pool in the object file).
KERNEL_IR = """
declare float @expf(float)

define void @kern(ptr noalias %a, ptr noalias %b, ptr noalias %out, i64 %lo, i64 %hi) {
entry:
  %empty = icmp sge i64 %lo, %hi
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ %lo, %entry ], [ %next, %loop ]
  %pa = getelementptr float, ptr %a, i64 %i
  %pb = getelementptr float, ptr %b, i64 %i
  %po = getelementptr float, ptr %out, i64 %i
  %x = load float, ptr %pa
  %y = load float, ptr %pb
  %e = call float @expf(float %x)
  %p0 = fmul float %x, 0x3FC5555560000000
  %p1 = fadd float %p0, 0x3FE0000000000000
  %p2 = fmul float %p1, %x
  %p3 = fadd float %p2, 1.0
  %m = fmul float %e, %y
  %r = fadd float %m, %p3
  store float %r, ptr %po
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, %hi
  br i1 %more, label %loop, label %done
done:
  ret void
}

define double @sum_sq(ptr noalias %a, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %acc = phi double [ 0.0, %entry ], [ %acc2, %loop ]
  %p = getelementptr double, ptr %a, i64 %i
  %x = load double, ptr %p
  %sq = fmul double %x, %x
  %acc2 = fadd double %acc, %sq
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  ret double %acc2
}
"""
KERNEL_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_int64, ctypes.c_int64)
SUM_PROTO = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_void_p, ctypes.c_int64)


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _run_kernel(address: int, a, b, lo: int, hi: int) -> np.ndarray:
    out = np.full_like(a, np.nan)
    KERNEL_PROTO(address)(_ptr(a), _ptr(b), _ptr(out), lo, hi)
    return out


def test_docstring_examples():
    result = doctest.testmod(object_code)
    assert result.attempted > 0 and result.failed == 0


def test_loaded_object_computes_what_the_jit_path_computes(rng):
    a = (rng.standard_normal(1003) * 4).astype(np.float32)
    b = rng.standard_normal(1003).astype(np.float32)
    d = rng.standard_normal(517)
    obj = emit_object(KERNEL_IR)
    assert obj[:4] == b"\x7fELF" or sys.platform != "linux"
    assert "expf" in undefined_symbols(obj)
    loaded = load_object(obj, ["kern", "sum_sq"])
    jit_kern, jit_sum = compile_llvm_ir(KERNEL_IR, "kern"), compile_llvm_ir(KERNEL_IR, "sum_sq")
    for lo, hi in ((0, 1003), (5, 998), (7, 7)):
        got = _run_kernel(loaded.address("kern"), a, b, lo, hi)
        want = _run_kernel(jit_kern.address, a, b, lo, hi)
        np.testing.assert_array_equal(got, want)          # bit for bit, NaN outside [lo, hi)
    ref = np.exp(a.astype(np.float64)) * b + ((a * (1 / 6) + 0.5) * a + 1)
    np.testing.assert_allclose(_run_kernel(loaded.address("kern"), a, b, 0, 1003), ref,
                               rtol=1e-5, atol=1e-5)
    assert SUM_PROTO(loaded.address("sum_sq"))(_ptr(d), d.size) == \
        SUM_PROTO(jit_sum.address)(_ptr(d), d.size)
    assert loaded.symbols == ("kern", "sum_sq")


def test_real_kernel_from_the_compiler_matches_the_jit_path(rng):
    """Machine code for a kernel as Kiln lowers it (MLIR -> LLVM IR, its exp expansion),
    loaded from an object file, computes exactly what the JIT-compiled kernel computes."""
    from kiln.codegen.cpu import CpuRenderer
    from kiln.ir.dtypes import DType
    from kiln.passes.schedule import build_schedule

    from codegen_helpers import emit1, kernel_graph, t

    f32 = DType.float32

    def build(gb, x, y):
        return [emit1(gb, "tanh", [emit1(gb, "add", [emit1(gb, "exp", [x]),
                                                   emit1(gb, "mul", [x, y])])])]

    graph = kernel_graph([t(f32, 16, 33), t(f32, 16, 33)], build)
    (kernel,) = build_schedule(graph).kernels
    ck = CpuRenderer().compile(kernel)
    loaded = load_object(emit_object(ck.llvm_ir), [ck.symbol])
    x = rng.standard_normal((16, 33)).astype(np.float32) * 3
    y = rng.standard_normal((16, 33)).astype(np.float32)
    outs = []
    for address in (ck.address, loaded.address(ck.symbol)):
        out = np.full_like(x, np.nan)
        KERNEL_PROTO(address)(_ptr(x), _ptr(y), _ptr(out), 0, ck.outer)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[1], np.tanh(np.exp(x) + x * y), rtol=2e-6, atol=2e-6)


_EXTERNAL_IR = """
declare i64 @{sym}(i64)
define i64 @call_ext(i64 %x) {{
  %r = call i64 @{sym}(i64 %x)
  %s = add i64 %r, 1
  ret i64 %s
}}
"""
_CALLBACKS = []      # registered with LLVM for the whole process: kept alive as long


def test_symbol_defined_in_this_process_is_linked_at_load_time():
    sym = f"kiln_test_ext_{uuid.uuid4().hex}"          # not registered by any earlier run
    ir = _EXTERNAL_IR.format(sym=sym)
    obj = emit_object(ir)
    assert undefined_symbols(obj) == [sym]
    with pytest.raises(CodegenError, match=sym):
        load_object(obj, ["call_ext"])               # not defined here yet: refused
    proto = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
    _CALLBACKS.append(proto(lambda x: 3 * x))
    _llvm().add_symbol(sym, ctypes.cast(_CALLBACKS[-1], ctypes.c_void_p).value)
    loaded = load_object(obj, ["call_ext"])
    jit = compile_llvm_ir(ir, "call_ext")
    assert proto(loaded.address("call_ext"))(14) == proto(jit.address)(14) == 43


def test_missing_symbol_and_bad_ir_raise_codegen_errors():
    obj = emit_object(KERNEL_IR)
    with pytest.raises(CodegenError, match="@nope"):
        load_object(obj, ["kern", "nope"])
    loaded = load_object(obj, [])
    assert loaded.address("sum_sq")                  # looked up on first use
    with pytest.raises(CodegenError, match="@nope"):
        loaded.address("nope")
    with pytest.raises(CodegenError, match="LLVM rejected the IR"):
        emit_object("define i64 @f() {\n  ret i32 0\n}\n")


@pytest.mark.parametrize("bad", [b"", b"\x7fELF", b"not an object at all" * 10,
                                 b"\x7fELF\x02\x01\x01" + bytes(200)])
def test_bytes_that_are_not_an_object_are_refused(bad):
    with pytest.raises(CodegenError):
        load_object(bad, ["kern"])


def test_truncated_object_is_refused():
    obj = emit_object(KERNEL_IR)
    for keep in (16, 64, len(obj) // 2, len(obj) - 1):
        with pytest.raises(CodegenError, match="malformed|not an"):
            load_object(obj[:keep], ["kern"])


_FUZZ = r"""
import random, sys
from kiln.codegen.errors import CodegenError
from kiln.codegen.object_code import emit_object, load_object
sys.path.insert(0, sys.argv[1])
from test_object_code import KERNEL_IR
obj = emit_object(KERNEL_IR)
rng = random.Random(int(sys.argv[2]))
loaded = refused = 0
for _ in range(int(sys.argv[3])):
    b = bytearray(obj)
    if rng.random() < 0.3:
        b = b[:rng.randrange(len(b))]
    else:
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    try:
        keep = load_object(bytes(b), [])            # loaded, never called
        loaded += 1
    except CodegenError:
        refused += 1
print(loaded, refused)
"""


def test_damaged_objects_never_crash_the_process():
    """Random bit flips and truncations (in a child process, so a crash fails the test):
    each object is loaded or refused with a CodegenError; LLVM never aborts."""
    r = subprocess.run([sys.executable, "-c", _FUZZ, str(Path(__file__).parent), "7", "400"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    loaded, refused = map(int, r.stdout.split())
    assert loaded + refused == 400 and loaded > 0 and refused > 0


_FRESH = r"""
import ctypes, sys
from kiln.codegen.object_code import load_object
code = load_object(sys.stdin.buffer.read(), ["kern"])
a = (ctypes.c_float * 3)(0.0, 1.0, -2.0); b = (ctypes.c_float * 3)(1.0, 2.0, 3.0)
out = (ctypes.c_float * 3)()
ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, ctypes.c_int64, ctypes.c_int64)(
    code.address("kern"))(ctypes.addressof(a), ctypes.addressof(b), ctypes.addressof(out), 0, 3)
print(*[x.hex() for x in out])
"""


def test_a_fresh_process_loads_an_object_that_calls_libm():
    """As a disk-cache hit would: the first LLVM work of a new process is load_object, and
    `expf` still resolves. The result equals this process's JIT-compiled kernel's."""
    r = subprocess.run([sys.executable, "-c", _FRESH], input=emit_object(KERNEL_IR),
                       capture_output=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    a = np.array([0.0, 1.0, -2.0], np.float32)
    b = np.array([1.0, 2.0, 3.0], np.float32)
    jit = compile_llvm_ir(KERNEL_IR, "kern")         # keep it: it owns the machine code
    want = _run_kernel(jit.address, a, b, 0, 3)
    assert r.stdout.decode().split() == [float(x).hex() for x in want]
