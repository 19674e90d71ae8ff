"""Which devices this process can use."""
from __future__ import annotations

import functools


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
