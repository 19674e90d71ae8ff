"""Kiln's runtime: executables (kernel launches plus reference ops), the CPU launcher and
device discovery."""
from .cpu import CpuLauncher, default_launcher
from .device import available_devices, cuda_available
from .executable import Executable, build_executable

__all__ = ["CpuLauncher", "default_launcher", "available_devices", "cuda_available",
           "Executable", "build_executable"]
