"""CUDA driver errors as Kiln errors: the failing driver call, its CUresult name and the
driver's own description.

    >>> print(CudaError("cuMemAlloc", "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"))
    cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)
"""
from __future__ import annotations

from kiln.ir.errors import KilnError


class CudaError(KilnError):
    """A driver call that did not return CUDA_SUCCESS (or could not be made at all)."""

    category = "cuda"

    def __init__(self, call: str, name: str, detail: str = "", hint: str | None = None):
        self.call = call
        self.name = name
        self.detail = detail
        text = f"{call} failed: {name}" + (f" ({detail})" if detail else "")
        super().__init__(text, hint=hint)


OUT_OF_MEMORY = "CUDA_ERROR_OUT_OF_MEMORY"


class FakeDriverError(CudaError):
    """What a real driver would reject (or crash on later), caught by the fake driver."""
