"""`kiln.cuda`: what PyTorch users check before choosing a device, and the GPU's counters.

`is_available()` answers "can Kiln put tensors on a GPU here?": an NVIDIA driver with a GPU
(`driver_available()`), or the simulated GPU that `KILN_FAKE_CUDA=1` turns on: device memory
in host memory, every kernel computed by its NumPy reference. The simulation is slow and
meant for testing device placement on a machine without a GPU; the kernels are still
compiled to PTX. A program written as `device = "cuda" if kiln.cuda.is_available() else
"cpu"` runs on the CPU where neither is there.

    >>> import kiln
    >>> device = "cuda" if kiln.cuda.is_available() else "cpu"
    >>> kiln.ones(2).to(device).device.type == device
    True
"""
from __future__ import annotations

import os

from kiln.runtime.device import cuda_available

BACKEND_READY = True    # NOTE: eager CUDA tensors (frontend/cuda_eager.py); jit runs them eagerly
_STATE: dict = {}


def fake_enabled() -> bool:
    """KILN_FAKE_CUDA=1: a simulated GPU in host memory (see the module docstring)."""
    return os.environ.get("KILN_FAKE_CUDA", "") not in ("", "0")


def driver_available() -> bool:
    """True when the CUDA driver loads and reports at least one GPU (asked once)."""
    if "driver" not in _STATE:
        _STATE["driver"] = cuda_available()
    return _STATE["driver"]


def is_available() -> bool:
    """True when Kiln can run CUDA tensors here (a GPU, or KILN_FAKE_CUDA=1)."""
    return BACKEND_READY and (fake_enabled() or driver_available())


def device_count() -> int:
    return 1 if is_available() else 0


def current_device() -> int:
    _device()
    return 0


def get_device_name(device=None) -> str:
    dev = _device()
    return "Kiln simulated GPU (KILN_FAKE_CUDA)" if _is_fake(dev) else dev.driver.device_name()


def synchronize(device=None) -> None:
    """Wait for the work queued on the GPU."""
    _device().synchronize()


def manual_seed(seed: int) -> None:
    """Seeds Kiln's generator (random tensors are made on the host, then copied over)."""
    import kiln
    kiln.manual_seed(seed)


manual_seed_all = manual_seed


def memory_stats(device=None) -> dict:
    """The caching allocator's counters (a subset of torch.cuda.memory_stats)."""
    return dict(_device().memory_stats())


def memory_allocated(device=None) -> int:
    return int(memory_stats()["allocated_bytes"])


def max_memory_allocated(device=None) -> int:
    return int(memory_stats()["peak_allocated_bytes"])


def memory_reserved(device=None) -> int:
    return int(memory_stats()["reserved_bytes"])


def empty_cache() -> None:
    """Return the cached, unused blocks to the driver."""
    if "device" in _STATE:
        _STATE["device"].empty_cache()


def _is_fake(dev) -> bool:
    return type(dev.driver).__name__ == "FakeDriver"


def _device():
    """The process's CUDA device (GPU 0, or the simulated one), made on first use."""
    from kiln.ir.errors import KilnError
    if not is_available():
        raise KilnError("no CUDA device here: no NVIDIA GPU and driver "
                        "(kiln.cuda.is_available() is False; KILN_FAKE_CUDA=1 simulates "
                        "one for testing)")
    dev = _STATE.get("device")
    if dev is None:
        from kiln.runtime.cuda import CudaDevice, FakeDriver
        dev = CudaDevice(None if driver_available() else FakeDriver())
        _STATE["device"] = dev
    return dev
