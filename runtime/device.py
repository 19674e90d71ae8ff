"""The Device interface every backend's runtime implements, and which devices exist here.

A Device is handed compiled artifacts by a backend's renderer (the runtime never imports
codegen) and runs them:

- `load(artifact)`: make a renderer's artifact launchable (the CPU wraps the address of
  machine code; CUDA would load PTX with cuModuleLoadData); returns a handle;
- `empty(shape, dtype)`: device memory for one tensor (an arena is one uint8 tensor);
- `copy(dst, src)`: copy between two of its buffers;
- `launch(handle, arrays)`: run a kernel over its operands then its results;
- `call(op, attrs, ins, outs)`: a library routine (matmul) writing into `outs`;
- `synchronize()`: wait for launched work (a no-op where launches are synchronous);
- `xp`: the NumPy functions an executable applies to the device's arrays (`ndarray`,
  `asarray`, `ascontiguousarray`, `copyto`, `may_share_memory`, `array`): NumPy itself for
  host memory, stand-ins for a device's own arrays (runtime/cuda/array.py).

Optional: `on_host(fn)` makes a function of NumPy arrays (a `run` step's reference) one of
the device's arrays, for a device whose memory NumPy cannot read (CUDA copies over and back).
"""
from __future__ import annotations

import functools

import numpy as np


class Device:
    """The interface (see the module docstring); `name` is what TensorType.device says."""

    name = "?"
    xp = np

    def load(self, artifact):
        raise NotImplementedError

    def empty(self, shape, dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def allocator_for(self, nbytes: int):
        """The `empty(shape, dtype)` to use for buffers of `nbytes` (a generated runner picks
        it once per buffer; a device may skip its pool for small ones)."""
        return self.empty

    def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        np.copyto(dst, src)

    def launch(self, handle, arrays: list) -> None:
        raise NotImplementedError

    def call(self, op: str, attrs, ins: list, outs: list, transpose=()) -> None:
        raise NotImplementedError(f"not supported yet: library routine '{op}' on {self.name}")

    def synchronize(self) -> None:
        return None


def c_strides(shape, itemsize: int) -> tuple:
    """Byte strides of a C-contiguous array.

    >>> c_strides((2, 3), 4)
    (12, 4)
    """
    out, step = [], itemsize
    for d in reversed(shape):
        out.append(step)
        step *= d
    return tuple(reversed(out))


def transposed(arrays: list, flags) -> list:
    """`arrays` with the last two axes swapped where `flags` says (a call's `transpose`).

    >>> [a.shape for a in transposed([np.zeros((2, 3)), np.zeros((4, 5))], (False, True))]
    [(2, 3), (5, 4)]
    """
    if not flags:
        return arrays
    return [np.swapaxes(a, -1, -2) if f else a for a, f in zip(arrays, flags)]


@functools.cache
def cuda_available() -> bool:
    """True when cuda-python imports and the driver initializes with at least one GPU.

    Without a driver (the import works, calls fail) or without cuda-python this is False;
    it never raises.
    """
    try:
        from cuda.bindings import driver
    except Exception:  # NOTE: no cuda-python, or a broken install: no CUDA either way
        return False
    try:
        (err,) = driver.cuInit(0)
        if err != driver.CUresult.CUDA_SUCCESS:
            return False
        err, count = driver.cuDeviceGetCount()
        return err == driver.CUresult.CUDA_SUCCESS and count > 0
    except Exception:  # NOTE: the driver library itself is missing (DynamicLibNotFoundError)
        return False


def available_devices() -> list[str]:
    """`["cpu"]`, plus `"cuda"` where a GPU is usable."""
    return ["cpu"] + (["cuda"] if cuda_available() else [])
