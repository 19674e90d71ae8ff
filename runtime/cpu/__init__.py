"""The CPU device: compiled kernels launched through ctypes over a small thread pool."""
from .device import CpuDevice, default_cpu_device
from .launcher import CpuLauncher, default_launcher, default_threads, kernel_function

__all__ = ["CpuDevice", "default_cpu_device", "CpuLauncher", "default_launcher",
           "default_threads", "kernel_function"]
