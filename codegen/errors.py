"""Errors raised while compiling a kernel (MLIR or LLVM rejected what Kiln generated)."""
from __future__ import annotations

from kiln.ir.errors import KilnError


class CodegenError(KilnError):
    """Generated code failed a compiler stage; the message names the kernel and stage."""

    category = "codegen"
