"""Data pointers of NumPy arrays, read fast: every launch passes one per buffer.

`a.__array_interface__["data"][0]` builds a dict per call (about 1.2 µs); a W5 training step
passes ~60 buffers. An ndarray's C struct starts with the object header and then `char *data`
(NumPy's `PyArrayObject_fields`, unchanged since NumPy 1.7), so the pointer can be read at a
fixed offset from the object's address (about 0.2 µs). The offset is checked at import against
`__array_interface__` on arrays of several kinds; where it does not hold (an interpreter with a
larger object header), every read takes the slow path.

    >>> import numpy as np
    >>> a = np.arange(4.0)
    >>> data_pointer(a[1:]) == a.__array_interface__["data"][0] + 8
    True
    >>> data_pointers([a, a[2:]])[1] - data_pointers([a])[0]
    16
"""
from __future__ import annotations

import ctypes
import sys

import numpy as np

_from_address = ctypes.c_void_p.from_address
_ndarray = np.ndarray


def _interface_pointer(a) -> int:
    return a.__array_interface__["data"][0]


def _header_offset() -> int | None:
    """Where an ndarray's data pointer sits in its object, if the layout is the expected one."""
    offset = object.__basicsize__ if hasattr(object, "__basicsize__") else 16
    base = np.arange(64, dtype=np.float32)
    samples = [base, base[3:], base.reshape(8, 8).T, np.empty(0), np.zeros((), np.int8)]
    for a in samples:
        if _from_address(id(a) + offset).value != _interface_pointer(a) and \
                _interface_pointer(a) != 0:
            return None
    return offset if sys.implementation.name == "cpython" else None


_OFFSET = _header_offset()


def data_pointer(a) -> int:
    """The address of `a`'s first element (0 for an empty array NumPy gave no memory)."""
    if _OFFSET is not None and type(a) is _ndarray:
        return _from_address(id(a) + _OFFSET).value or 0
    return _interface_pointer(a)


def data_pointers(arrays) -> list[int]:
    """`data_pointer` of each array, in order (a launch's few buffers; a compiled segment's
    many are read by `pointer_table_caller`'s generated code)."""
    return [data_pointer(a) for a in arrays]


def pointer_table_caller(fn, n: int):
    """`call(a0, ..., a{n-1})`: fn(table of the arrays' data pointers), written as straight
    Python (a comprehension or loop costs more than the pointer reads themselves)."""
    names = [f"a{i}" for i in range(n)]
    lines = [f"def call({', '.join(names)}):", "    t = T()"]
    for i, a in enumerate(names):
        if _OFFSET is None:
            lines.append(f"    t[{i}] = slow({a})")
        else:
            lines.append(f"    t[{i}] = (at(id({a}) + {_OFFSET}).value or 0) "
                         f"if type({a}) is ndarray else slow({a})")
    lines.append("    fn(t)")
    scope = {"T": ctypes.c_uint64 * n, "at": _from_address, "ndarray": _ndarray,
             "slow": _interface_pointer, "fn": fn}
    exec(compile("\n".join(lines) + "\n", "<kiln pointer table>", "exec"), scope)
    return scope["call"]
