"""Device arrays: C-contiguous tensors in GPU memory, and the array functions the executable
applies to them.

A DeviceArray is a pointer, a shape and a dtype over a block of the device's caching
allocator; views (a byte slice, a dtype view, a reshape: what an arena's temps are) share the
block, which goes back to the allocator when the last array over it is garbage-collected.
There is no implicit conversion to NumPy: `to_host()` copies (a hidden device->host copy per
`np.asarray` would be the kind of slowness nobody finds). `__cuda_array_interface__` lets
other CUDA libraries (PyTorch, CuPy, Numba) read one without a copy.

`ArrayFunctions` is the device's `xp` (runtime/device.py): the few NumPy functions the
executable and its generated runner use (copyto, may_share_memory, array, asarray,
ascontiguousarray), over DeviceArrays.
"""
from __future__ import annotations

import math
import types

import numpy as np

from kiln.ir.errors import KilnError, NotSupportedError

from ..device import c_strides

_CONTIGUOUS = types.SimpleNamespace(c_contiguous=True, writeable=True)


class DeviceArray:
    """`shape` elements of `dtype` at device pointer `ptr` (C order) on `device`."""

    __slots__ = ("device", "ptr", "shape", "dtype", "strides", "_lease")

    def __init__(self, device, ptr: int, shape, dtype, lease=None):
        self.device = device
        self.ptr = ptr
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.strides = c_strides(self.shape, self.dtype.itemsize)
        self._lease = lease         # NOTE: holds the block; shared by every view of it

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    itemsize = property(lambda self: self.dtype.itemsize)
    nbytes = property(lambda self: self.size * self.dtype.itemsize)
    flags = property(lambda self: _CONTIGUOUS)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d device array")
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"DeviceArray(shape={self.shape}, dtype={self.dtype}, "
                f"device='{self.device.name}', ptr={self.ptr:#x})")

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "strides": None, "version": 3}

    def to_host(self) -> np.ndarray:
        """A NumPy copy (waits for the work queued before it)."""
        return self.device.to_host(self)

    def copy(self) -> "DeviceArray":
        return self.device.clone(self)

    def _derived(self, ptr: int, shape, dtype) -> "DeviceArray":
        return DeviceArray(self.device, ptr, shape, dtype, self._lease)

    def __getitem__(self, key) -> "DeviceArray":
        """A 1-D slice with unit step (an arena's byte ranges)."""
        if self.ndim != 1 or not isinstance(key, slice) or key.step not in (None, 1):
            raise NotSupportedError(f"not supported yet: indexing a device array with {key!r} "
                                    "(only 1-D slices with unit step)")
        lo, hi, _ = key.indices(self.shape[0])
        n = max(0, hi - lo)
        return self._derived(self.ptr + lo * self.itemsize if n else 0, (n,), self.dtype)

    def view(self, dtype) -> "DeviceArray":
        """The same bytes as `dtype` (the last axis rescales, as NumPy's `view`)."""
        dtype = np.dtype(dtype)
        last = self.shape[-1] * self.itemsize if self.shape else self.itemsize
        if last % dtype.itemsize:
            raise KilnError(f"cannot view {self.dtype}{list(self.shape)} as {dtype}: the last "
                            f"axis's {last} bytes are not a multiple of {dtype.itemsize}")
        shape = self.shape[:-1] + (last // dtype.itemsize,)
        return self._derived(self.ptr, shape, dtype)

    def reshape(self, *shape) -> "DeviceArray":
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
            else shape
        if -1 in shape:
            known = math.prod(d for d in shape if d != -1)
            shape = tuple(self.size // known if d == -1 else d for d in shape)
        if math.prod(shape) != self.size:
            raise KilnError(f"cannot reshape {self.dtype}{list(self.shape)} to {list(shape)}")
        return self._derived(self.ptr, shape, self.dtype)


class ArrayFunctions:
    """NumPy's copyto, may_share_memory, array, asarray and ascontiguousarray for `device`'s
    arrays; host arrays are copied over where a device array is needed."""

    ndarray = DeviceArray

    def __init__(self, device):
        self.device = device

    def asarray(self, a) -> DeviceArray:
        """`a` itself, or a host array's copy on the device (as torch.as_tensor does).
        NOTE: every CudaDevice of a process uses GPU 0's primary context, so an array of one
        is valid memory for all of them."""
        if type(a) is DeviceArray:
            return a
        return self.device.from_host(np.asarray(a))

    ascontiguousarray = asarray     # NOTE: device arrays are always C-contiguous

    def array(self, a, copy: bool = True, order: str = "C") -> DeviceArray:
        a = self.asarray(a)
        return self.device.clone(a) if copy else a

    def copyto(self, dst, src) -> None:
        """dst[...] = src, between any two of device and host arrays of one shape."""
        if dst.shape != src.shape or dst.dtype != src.dtype:
            raise NotSupportedError(f"not supported yet: copying {src.dtype}{list(src.shape)} "
                                    f"into {dst.dtype}{list(dst.shape)} on a device")
        if type(dst) is DeviceArray:
            self.device.copy(dst, self.asarray(src))
        elif type(src) is not DeviceArray:
            np.copyto(dst, src)
        elif dst.flags.c_contiguous:
            self.device.download(dst, src)
        else:
            np.copyto(dst, src.to_host())

    @staticmethod
    def may_share_memory(a, b) -> bool:
        """Whether two device arrays' bytes overlap (never a device and a host array)."""
        if type(a) is not DeviceArray or type(b) is not DeviceArray:
            return False
        return a.nbytes > 0 and b.nbytes > 0 and a.ptr < b.ptr + b.nbytes \
            and b.ptr < a.ptr + a.nbytes
