"""MLIR text -> LLVM IR text, through the torch-mlir wheel's upstream MLIR bindings.

    >>> text = "func.func @f(%a: f32) -> f32 {\\n  return %a : f32\\n}\\n"
    >>> "define float @f" in mlir_to_llvm_ir(text)
    True
"""
from __future__ import annotations

import math
import re
import struct
import threading

from .errors import CodegenError

# NOTE: math-to-llvm first (fma, roundeven, sqrt... become intrinsics); math-to-libm then turns
# the few ops left on purpose (f64 erf) into libm calls. Bare-pointer memrefs give kernels
# plain pointer arguments, callable through ctypes.
CPU_PIPELINE = ("builtin.module(convert-scf-to-cf,convert-math-to-llvm,convert-math-to-libm,"
                "convert-arith-to-llvm,finalize-memref-to-llvm,"
                "convert-func-to-llvm{use-bare-ptr-memref-call-conv=1},convert-cf-to-llvm,"
                "reconcile-unrealized-casts)")

_LOCK = threading.Lock()
# NOTE: a new MLIR context registers every dialect of the wheel (about 4 ms, more than a small
# kernel's whole lowering), so one context serves many modules. It is replaced after
# _CONTEXT_USES modules: a context keeps every type and attribute it ever uniqued.
_CONTEXT_USES = 256
_context: list = [None, 0]     # [context, modules lowered in it] (under _LOCK)


def mlir_to_llvm_ir(text: str, pipeline: str = CPU_PIPELINE, what: str = "module") -> str:
    """Parse MLIR text, lower it with `pipeline` and translate it to LLVM IR text that
    llvmlite's LLVM parses (see `fix_float_constants`). `what` names it in errors."""
    from torch_mlir import ir, passmanager
    translate = _translator()
    with _LOCK, _shared_context(ir):
        try:
            module = ir.Module.parse(text)
        except Exception as e:  # NOTE: MLIRError carries the diagnostics; keep them
            raise CodegenError(f"MLIR parse of {what} failed: {e}{_quote(text, e)}") from e
        try:
            passmanager.PassManager.parse(pipeline).run(module.operation)
        except Exception as e:
            raise CodegenError(f"MLIR pipeline on {what} failed: {e}\n  pipeline: {pipeline}")
        llvm_ir = translate(module.operation)
        del module      # NOTE: freed while its context is entered, before another replaces it
    return fix_float_constants(llvm_ir)


def _shared_context(ir):
    """The process's MLIR context (lock held), new every _CONTEXT_USES modules."""
    if _context[0] is None or _context[1] >= _CONTEXT_USES:
        _context[:] = [ir.Context(), 0]
    _context[1] += 1
    return _context[0]


def _translator():
    """translate_module_to_llvmir. NOTE: taken from the native module itself when it is there:
    the public `torch_mlir.dialects.llvm` also imports the generated op classes (~40 ms)."""
    try:
        from torch_mlir._mlir_libs._mlirDialectsLLVM import translate_module_to_llvmir
    except ImportError:
        from torch_mlir.dialects.llvm import translate_module_to_llvmir
    return translate_module_to_llvmir


# NOTE: one token per match, in line order: a type keyword (remembered: a constant takes the
# type written last before it on its line, e.g. `fcmp olt float %1, 5.5e-01`), or a constant
# in the newer syntax: `f0x` hex bits, `+inf`/`-qnan`/`+nan(0x..)`, or an inexact decimal.
def _quote(text: str, error) -> str:
    """The source lines an MLIR diagnostic points at (`"-":50:31: ...`)."""
    lines = text.split("\n")
    quoted = []
    for m in re.finditer(r'"-":(\d+):\d+', str(error)):
        n = int(m.group(1))
        if 0 < n <= len(lines):
            quoted.append(f"\n  line {n}: {lines[n - 1].strip()}")
    return "".join(quoted)


_TOKEN = re.compile(r"""
    (?P<type>\b(?:half|bfloat|float|double)\b)
  | (?<![\w%@.$])(?P<hex>f0x[0-9A-Fa-f]+)\b
  | (?<![\w%@.$])(?P<special>[+-](?:inf|qnan|snan|nan)(?:\(0x[0-9A-Fa-f]+\))?)
  | (?<![\w%@.$])(?P<decimal>[-+]?\d+\.\d+(?:e[-+]?\d+)?)(?![\w.])
""", re.X)


def fix_float_constants(llvm_ir: str) -> str:
    """Rewrite float constants to LLVM's classic 16-digit double-hex form.

    NOTE: this compatibility step is the only one. The MLIR wheel's LLVM prints constants in
    a syntax newer than llvmlite 0.50's LLVM parses: `f0x3FB8AA3B` bits, `+inf`, `+qnan`,
    and decimals that only round to the value (`float 5.500000e-01`). The classic form is the
    value as a double, exact for every float; NaN payloads become the default quiet NaN.

    >>> fix_float_constants("fcmp olt float %1, 5.500000e-01")
    'fcmp olt float %1, 0x3FE19999A0000000'
    >>> fix_float_constants("fadd float %1, f0x3F800000")
    'fadd float %1, 0x3FF0000000000000'
    """
    return "\n".join(_fix_line(line) for line in llvm_ir.split("\n"))


def _fix_line(line: str) -> str:
    if "0x" not in line and "." not in line and "inf" not in line and "nan" not in line:
        return line
    last_type = ["double"]

    def replace(m):
        kind = m.lastgroup
        text = m.group(kind)
        if kind == "type":
            last_type[0] = text
            return text
        if last_type[0] not in ("float", "double"):
            return text
        return _double_hex(_constant_value(kind, text, last_type[0]))

    return _TOKEN.sub(replace, line)


def _constant_value(kind: str, text: str, type_name: str) -> float:
    if kind == "hex":
        digits = text[3:]
        if len(digits) == 8:
            return struct.unpack("<f", struct.pack("<I", int(digits, 16)))[0]
        return struct.unpack("<d", struct.pack("<Q", int(digits, 16)))[0]
    if kind == "special":
        sign = -1.0 if text[0] == "-" else 1.0
        return sign * (math.inf if text[1:].startswith("inf") else math.nan)
    value = float(text)
    if type_name == "float":
        value = struct.unpack("<f", struct.pack("<f", value))[0]
    return value


def _double_hex(value: float) -> str:
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", value))[0]
