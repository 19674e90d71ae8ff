"""`kiln.cuda`: what PyTorch users check before choosing a device.

`is_available()` answers "can Kiln put tensors on a GPU here?". Kiln's CUDA backend is not
built yet, so it is False everywhere for now, and a program written as
`device = "cuda" if kiln.cuda.is_available() else "cpu"` runs on the CPU instead of failing.
`driver_available()` says whether an NVIDIA driver and GPU are present at all.

    >>> import kiln
    >>> device = "cuda" if kiln.cuda.is_available() else "cpu"
    >>> kiln.ones(2).to(device).device
    device(type='cpu')
"""
from __future__ import annotations

from kiln.runtime.device import cuda_available

BACKEND_READY = False   # NOTE: flips when CUDA tensors and kernels land (DESIGN.md, runtime)


def driver_available() -> bool:
    """True when the CUDA driver loads and reports at least one GPU."""
    return cuda_available()


def is_available() -> bool:
    """True when Kiln can run CUDA tensors on this machine."""
    return BACKEND_READY and driver_available()


def device_count() -> int:
    return 1 if is_available() else 0
