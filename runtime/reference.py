"""Schedule steps run by NumPy references: the null device's arithmetic and the oracle the
compiled kernels are tested against.

A kernel is run by viewing each buffer through its access (`as_strided` over the iteration
space), interpreting the body on those views and writing each result back through its store
access.

    >>> import numpy as np
    >>> from kiln.ir.schedule_text import parse_schedule
    >>> s = parse_schedule('''
    ... schedule @f(%x: f32[2,3]) {
    ...   buffer %0: f32[2,1] output
    ...   launch @k (%x) -> (%0) {space=[2,3], reduce=[1]} {
    ...     load %x strides=[3,1] offset=0
    ...     store %0 strides=[1,0] offset=0
    ...     body @k(%1: f32[2,3]) {
    ...       %2: f32[2,1] = sum %1 {axes=[1], keepdim=true}
    ...       return %2
    ...     }
    ...   }
    ...   return %0
    ... }''')
    >>> out = np.zeros((2, 1), np.float32)
    >>> run_kernel_reference(s.kernels[0], [np.arange(6, dtype=np.float32).reshape(2, 3)], [out])
    >>> out.ravel().tolist()
    [3.0, 12.0]
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kiln.ir.interpreter import interpret
from kiln.ir.schedule import Access, Kernel


def _view(a: np.ndarray, acc: Access, space, shape) -> np.ndarray:
    """`a`'s elements as the value of `shape` that `acc` reads over `space`."""
    flat = a.reshape(-1)
    size = flat.itemsize
    full = as_strided(flat[acc.offset:], shape=tuple(space),
                      strides=tuple(s * size for s in acc.strides), writeable=True)
    if shape is None:       # NOTE: a store writes once along its zero strides
        index = tuple(slice(0, 1) if s == 0 else slice(None) for s in acc.strides)
    else:                   # NOTE: a load keeps what the value's shape keeps
        lined = (1,) * (len(space) - len(shape)) + tuple(shape)
        index = tuple(slice(0, 1) if d == 1 else slice(None) for d in lined)
    # NOTE: a 0-d space has no index: `full[()]` would be a scalar, not a writable view
    return (full[index] if index else full), shape


def run_kernel_reference(k: Kernel, ins: list, outs: list) -> None:
    """Compute kernel `k` from arrays `ins` into arrays `outs` (C-contiguous, of the buffers'
    types) with NumPy."""
    values = []
    for a, acc, v in zip(ins, k.loads, k.body.inputs):
        view, shape = _view(np.ascontiguousarray(a), acc, k.space, v.shape)
        values.append(np.ascontiguousarray(view).reshape(shape))
    results = interpret(k.body, values)
    for out, acc, r in zip(outs, k.stores, results):
        view, _ = _view(out, acc, k.space, None)
        view[...] = np.asarray(r).reshape(view.shape)
