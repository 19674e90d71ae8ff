"""Tensor types and source locations: what every IR value carries."""
from __future__ import annotations

import dataclasses
import functools
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


def _library_dirs() -> tuple:
    """The standard library's and installed packages' folders (tqdm, numpy, ...): a line
    there is not the user's, though the user's code called it."""
    import site
    import sysconfig
    dirs = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib",
                                                   "platlib")}
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:      # NOTE: an old virtualenv's site module has no such call
        pass
    # NOTE: never Kiln's own checkout (an editable install lives outside site-packages)
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs
                 if d and not _KILN_ROOT.startswith(os.path.realpath(d)))


_LIBRARY_DIRS = _library_dirs()
# NOTE: `<kiln ...>`: the runners Kiln generates (runtime/runner.py)
_NOT_USER = (*_INTERNAL_DIRS, "<frozen", "<kiln")


def user_loc() -> Loc | None:
    """The innermost stack frame outside Kiln's own packages, the standard library and
    installed packages (the user's line). When the user's code is only reached through
    them (a callback from a library), the innermost frame outside Kiln."""
    frame = sys._getframe(1)
    fallback = None
    while frame is not None:
        fname = frame.f_code.co_filename
        if not fname.startswith(_NOT_USER):
            if not _in_library(fname):
                return Loc(fname, frame.f_lineno)
            if fallback is None:
                fallback = Loc(fname, frame.f_lineno)
        frame = frame.f_back
    return fallback


@functools.lru_cache(maxsize=4096)
def _in_library(fname: str) -> bool:
    return fname.startswith(_LIBRARY_DIRS) or (
        os.path.isabs(fname) and os.path.realpath(fname).startswith(_LIBRARY_DIRS))
