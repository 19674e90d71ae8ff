"""Calling NumPy's bundled OpenBLAS from generated code.

NumPy ships OpenBLAS as `numpy.libs/libscipy_openblas64_*.so`, with CBLAS entry points that
take 64-bit integers (`scipy_cblas_sgemm64_`). Loading it into LLVM's symbol table lets
compiled code call the same GEMM NumPy uses, with no Python in between; it keeps its own
thread pool (OPENBLAS_NUM_THREADS).

    >>> gemm_symbol("f32") in ("scipy_cblas_sgemm64_", "cblas_sgemm")
    True
"""
from __future__ import annotations

import functools
import glob
import os

from ..errors import CodegenError

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
_NAMES = {"f32": ("scipy_cblas_sgemm64_", "float"),
          "f64": ("scipy_cblas_dgemm64_", "double")}


@functools.cache
def load_openblas() -> str:
    """Load NumPy's OpenBLAS into the process's global symbols (where compiled code finds
    it, linked by MCJIT or by codegen/elf_loader.py); its path."""
    import ctypes

    import numpy as np

    from ..elf_loader import process_symbol
    root = os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs")
    found = sorted(glob.glob(os.path.join(root, "libscipy_openblas64_*.so")))
    if not found:
        raise CodegenError(f"no OpenBLAS library next to NumPy (looked in {root}); compiled "
                           "matmul needs NumPy's bundled scipy-openblas64")
    ctypes.CDLL(found[0], mode=os.RTLD_GLOBAL)
    if not process_symbol(_NAMES["f32"][0]):
        raise CodegenError(f"{found[0]} has no {_NAMES['f32'][0]}")
    return found[0]


def gemm_symbol(dtype: str) -> str:
    return _NAMES[dtype][0]


def gemm_declaration(dtype: str) -> str:
    sym, ty = _NAMES[dtype]
    return (f"declare void @{sym}(i32, i32, i32, i64, i64, i64, {ty}, ptr, i64, ptr, i64, "
            f"{ty}, ptr, i64)")


def gemm_call(dtype: str, m: int, n: int, k: int, a: str, b: str, c: str,
              trans_a: bool = False, trans_b: bool = False) -> str:
    """One row-major C = A @ B call on pointers `a`, `b`, `c` (LLVM IR values); A is [m, k]
    (stored [k, m] when trans_a), B is [k, n] (stored [n, k] when trans_b)."""
    sym, ty = _NAMES[dtype]
    lda = m if trans_a else k
    ldb = k if trans_b else n
    ta = TRANS if trans_a else NO_TRANS
    tb = TRANS if trans_b else NO_TRANS
    return (f"call void @{sym}(i32 {ROW_MAJOR}, i32 {ta}, i32 {tb}, i64 {m}, i64 {n}, "
            f"i64 {k}, {ty} 1.0, ptr {a}, i64 {lda}, ptr {b}, i64 {ldb}, {ty} 0.0, ptr {c}, "
            f"i64 {n})")
