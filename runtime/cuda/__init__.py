"""The CUDA runtime: a thin driver wrapper (driver.py) and a fake one over host memory
(fake_driver.py), a caching device allocator, device arrays, and the CudaDevice that loads
and launches the CUDA renderer's PTX (codegen/cuda)."""
from .allocator import CachingAllocator
from .array import DeviceArray
from .device import CudaDevice, CudaKernelHandle
from .driver import CudaDriver
from .errors import CudaError, FakeDriverError
from .fake_driver import FakeDriver

__all__ = ["CachingAllocator", "DeviceArray", "CudaDevice", "CudaKernelHandle", "CudaDriver",
           "CudaError", "FakeDriverError", "FakeDriver"]
