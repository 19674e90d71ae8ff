"""Tensor factories (`kiln.tensor`, `zeros`, `randn`, ...) and the global random seed."""
from __future__ import annotations

import itertools
import threading

import numpy as np

from kiln.ir import dtypes
from kiln.ir.errors import KilnError
from kiln.ir.registry import apply

from .functional import SOURCE, full as _full_op
from .tensor import Tensor, device as _device
from .trace import current_trace

_CONSTANT_LIMIT = 64   # NOTE: larger literals inside a trace are captured as inputs instead


def _shape_arg(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _finish(t: Tensor, requires_grad: bool, device=None) -> Tensor:
    """A factory's result: made on the CPU, moved to `device` (as a leaf), then marked."""
    if t._trace is not None:
        # NOTE: made inside a trace: on its device, or the function runs eagerly
        trace = t._trace
        if trace.require_device("cpu" if device is None else _device(device).type,
                                "a tensor made", scalar=t.ndim == 0):
            trace.host.add(t._data)
    elif device is not None:
        t = t.to(device)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _default_dtype(arr: np.ndarray):
    if arr.dtype.kind == "f":
        return dtypes.DEFAULT_FLOAT
    if arr.dtype.kind in "iu":
        return dtypes.DEFAULT_INT
    if arr.dtype.kind == "b":
        return dtypes.bool_
    raise KilnError(f"kiln.tensor: cannot make a tensor from data of NumPy dtype {arr.dtype}")


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor from Python data or a NumPy array (floats default to float32).

    >>> import kiln
    >>> kiln.tensor([[1, 2], [3, 4]]).shape
    kiln.Size([2, 2])
    """
    if isinstance(data, Tensor):
        if device is None and data._trace is None:
            device = data.device        # NOTE: a copy where the data is, as PyTorch's
        data = data.detach().cpu().numpy()
    if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in data):
        data = [x.item() if isinstance(x, Tensor) else x for x in data]
    arr = np.asarray(data)
    dt = dtypes.as_dtype(dtype) if dtype is not None else (
        dtypes.from_numpy(arr.dtype) if isinstance(data, np.ndarray) and arr.dtype.kind != "u"
        else _default_dtype(arr))
    arr = np.require(arr.astype(dt.np), requirements="C")
    trace = current_trace()
    if trace is not None and arr.size <= _CONSTANT_LIMIT:
        t = apply("constant", [], {"data": arr.tolist(), "shape": arr.shape, "dtype": dt},
                  like=SOURCE)
        return _finish(t, requires_grad, device)
    return _finish(Tensor._wrap(arr), requires_grad, device)


def from_numpy(arr: np.ndarray) -> Tensor:
    """Wrap a NumPy array (bool, int32, int64, float32, float64)."""
    dtypes.from_numpy(arr.dtype)
    return Tensor._wrap(np.require(arr, requirements="C"))


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if dtype is None:
        dtype = dtypes.result_dtype([dtypes.bool_], [fill_value])
    t = _full_op(_shape_arg((size,)),
                 fill_value, dtypes.as_dtype(dtype))
    return _finish(t, requires_grad, device)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_shape_arg(size), 0, dtype or dtypes.DEFAULT_FLOAT, device=device,
                requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_shape_arg(size), 1, dtype or dtypes.DEFAULT_FLOAT, device=device,
                requires_grad=requires_grad)


def _device_of(x: Tensor, device):
    return device if device is not None else x.device


def zeros_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(tuple(x.shape), dtype=dtype or x.dtype, device=_device_of(x, device),
                 requires_grad=requires_grad)


def ones_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(tuple(x.shape), dtype=dtype or x.dtype, device=_device_of(x, device),
                requires_grad=requires_grad)


def full_like(x: Tensor, fill_value, dtype=None, device=None) -> Tensor:
    return full(tuple(x.shape), fill_value, dtype=dtype or x.dtype,
                device=_device_of(x, device))


def arange(start, end=None, step=1, dtype=None, device=None,
           requires_grad: bool = False) -> Tensor:
    """`arange(5)`, `arange(1, 4)`, `arange(0, 1, 0.25)` like PyTorch."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = dtypes.result_dtype([dtypes.bool_], [start, end, step])
    t = apply("arange", [], {"start": start, "stop": end, "step": step,
                             "dtype": dtypes.as_dtype(dtype)}, like=SOURCE)
    return _finish(t, requires_grad, device)


# ---- random ---------------------------------------------------------------------------------
class _SeedState:
    """The global random state: a base seed and a counter; each draw takes a fresh seed."""

    def __init__(self, seed: int = 0):
        self.lock = threading.Lock()
        self.seed(seed)

    def seed(self, seed: int):
        self.base = int(seed)
        self.counter = itertools.count()

    def next(self) -> int:
        with self.lock:
            n = next(self.counter)
        return int(np.random.SeedSequence([self.base & (2**63 - 1), n]).generate_state(
            1, np.uint64)[0] >> 1)


SEEDS = _SeedState(0)


def manual_seed(seed: int):
    """Seed Kiln's random numbers (eager and jitted code draw from the same state)."""
    SEEDS.seed(seed)


def seed_tensor() -> Tensor:
    """A fresh seed: an i64[] tensor, or a per-call graph input while tracing."""
    trace = current_trace()
    if trace is not None:
        return Tensor._wrap(trace.new_seed(), trace)
    return Tensor._wrap(np.array(SEEDS.next(), dtype=np.int64))


def _random(op: str, size, dtype, requires_grad, device=None) -> Tensor:
    dt = dtypes.as_dtype(dtype or dtypes.DEFAULT_FLOAT)
    t = apply(op, [seed_tensor()], {"shape": _shape_arg(size), "dtype": dt})
    return _finish(t, requires_grad, device)


def randn(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal numbers; `kiln.manual_seed` makes them reproducible."""
    return _random("random_normal", size, dtype, requires_grad, device)


def rand(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform numbers in [0, 1)."""
    return _random("random_uniform", size, dtype, requires_grad, device)


def randn_like(x: Tensor, dtype=None, device=None) -> Tensor:
    return randn(tuple(x.shape), dtype=dtype or x.dtype, device=_device_of(x, device))


def rand_like(x: Tensor, dtype=None, device=None) -> Tensor:
    return rand(tuple(x.shape), dtype=dtype or x.dtype, device=_device_of(x, device))
