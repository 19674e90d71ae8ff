"""Kernel parameters as cuLaunchKernel takes them: `kernelParams` is a `void**` holding one
pointer per parameter to memory with its value; the driver copies the values during the call,
so the table only lives as long as the launch call.

Every parameter of a Kiln entry is 8 bytes, a `.u64 .ptr` per buffer and the i64 row count
(codegen/cuda/renderer.py, grid_entry_ir): the values sit in one uint64 array and the table
points at its slots. cuda-python takes the table's address as a plain int (its
`_HelperKernelParams` uses an int as the `void**` itself), which costs no conversion.

    >>> packed = PackedParams([0x1000, 0x2000, 7])
    >>> unpack_params(packed.address, [8, 8, 8])
    [4096, 8192, 7]
"""
from __future__ import annotations

import ctypes

PARAM_BYTES = 8
_READERS = {8: ctypes.c_uint64, 4: ctypes.c_uint32, 2: ctypes.c_uint16, 1: ctypes.c_uint8}


class PackedParams:
    """`values` (ints: device pointers, then rows) packed as a `void**` table at `address`."""

    __slots__ = ("values", "table", "address")

    def __init__(self, values):
        n = len(values)
        self.values = (ctypes.c_uint64 * n)(*values)
        base = ctypes.addressof(self.values)
        self.table = (ctypes.c_void_p * n)(*range(base, base + PARAM_BYTES * n, PARAM_BYTES))
        self.address = ctypes.addressof(self.table)


def unpack_params(address: int, sizes) -> list[int]:
    """What a launch reads from the `void**` at `address`: one value of each size in `sizes`
    (bytes), each through its own pointer (the fake driver decodes launches with this)."""
    table = (ctypes.c_void_p * len(sizes)).from_address(address)
    return [_READERS[size].from_address(table[i]).value for i, size in enumerate(sizes)]
