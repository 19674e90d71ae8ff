"""Tensor types and source locations: what every IR value carries."""
from __future__ import annotations

import dataclasses
import linecache
import os
import sys

from .dtypes import DType


@dataclasses.dataclass(frozen=True)
class TensorType:
    """dtype, static shape and device of a value; prints as `f32[4,8]` (`f32[4,8]@cuda`)."""

    dtype: DType
    shape: tuple[int, ...]
    device: str = "cpu"

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        dev = "" if self.device == "cpu" else f"@{self.device}"
        return f"{self.dtype.value}[{dims}]{dev}"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape), self.device)

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape, self.device)


@dataclasses.dataclass(frozen=True)
class Loc:
    """A user's source line: `model.py:41`."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line}"

    @property
    def source(self) -> str:
        return linecache.getline(self.file, self.line).strip()


_KILN_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INTERNAL_DIRS = tuple(
    os.path.join(_KILN_ROOT, d) + os.sep
    for d in ("kiln", "frontend", "ir", "passes", "codegen", "runtime")
)


def user_loc() -> Loc | None:
    """The innermost stack frame outside Kiln's own packages (the user's line)."""
    frame = sys._getframe(1)
    while frame is not None:
        fname = frame.f_code.co_filename
        # NOTE: `<kiln ...>`: the runners Kiln generates (runtime/runner.py)
        if not fname.startswith((*_INTERNAL_DIRS, "<frozen", "<kiln")):
            return Loc(fname, frame.f_lineno)
        frame = frame.f_back
    return None
