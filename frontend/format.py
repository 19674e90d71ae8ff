"""Print tensors the way PyTorch does: `tensor([6., 4.])`, `tensor(3)`, `dtype=` when not
the default, `requires_grad=True` / `grad_fn=<MulBackward0>` for autograd tensors."""
from __future__ import annotations

import numpy as np

from kiln.ir import dtypes

_DEFAULT = {dtypes.float32, dtypes.int64, dtypes.bool_}


def _float_formatter(arr: np.ndarray):
    finite = arr[np.isfinite(arr)]
    if finite.size == 0 or np.all(finite == np.round(finite)) and (
            finite.size == 0 or np.abs(finite).max() < 1e8):
        fmt = _fmt_integral
    else:
        nz = np.abs(finite[finite != 0])
        big, small = (nz.max(), nz.min()) if nz.size else (0.0, 1.0)
        sci = big >= 1e8 or small < 1e-4 or (small and big / small > 1000 and big >= 1e3)
        fmt = _fmt_sci if sci else _fmt_fixed
    width = max((len(fmt(v)) for v in arr.flat), default=1)
    return lambda v: fmt(v).rjust(width)


def _fmt_integral(v) -> str:
    if not np.isfinite(v):
        return _special(v)
    return f"{v:.0f}."


def _fmt_fixed(v) -> str:
    return f"{v:.4f}" if np.isfinite(v) else _special(v)


def _fmt_sci(v) -> str:
    return f"{v:.4e}" if np.isfinite(v) else _special(v)


def _special(v) -> str:
    return "nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")


def format_array(arr: np.ndarray, prefix: str = "tensor(") -> str:
    if arr.dtype.kind == "f":
        fmt = {"float_kind": _float_formatter(arr)}
    elif arr.dtype.kind == "b":
        fmt = {"bool": lambda v: str(bool(v)).rjust(5 if not arr.all() else 4)}
    else:
        width = max((len(str(v)) for v in arr.flat), default=1)
        fmt = {"int": lambda v: str(v).rjust(width)}
    if arr.ndim == 0:
        return list(fmt.values())[0](arr.item()).strip()
    return np.array2string(arr, separator=", ", prefix=prefix, formatter=fmt,
                           threshold=1000, edgeitems=3, max_line_width=80)


def format_tensor(t) -> str:
    if t._trace is not None and t._trace.replay is None:
        return f"tensor(<traced {t._data.type}>)"
    # NOTE: while replaying (a jitted function that prints), reading the value splits the graph
    cuda = t._trace is None and t.is_cuda
    arr = t._array("printing") if t._trace is not None or cuda else t._data
    body = format_array(arr) if arr.size or arr.ndim == 0 else "[]"
    extras = ["device='cuda:0'"] if cuda else []
    if arr.size == 0 and arr.shape != (0,):
        extras.append(f"size={tuple(arr.shape)}")
    dt = dtypes.from_numpy(arr.dtype)
    if dt not in _DEFAULT or (arr.size == 0 and dt != dtypes.float32):
        extras.append(f"dtype=kiln.{dt.name}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
