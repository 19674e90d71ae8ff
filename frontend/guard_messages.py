"""Why a jitted function traced again, in words: which part of its cache key changed
(frontend/jit.py builds the key), naming the argument and how its tensor changed.

    >>> import numpy as np
    >>> old = (np.dtype("float32"), (3,), (4,), False, np.ndarray)
    >>> tensor_change(old, (np.dtype("float32"), (4,), (4,), False, np.ndarray))
    'shape (3,) -> (4,)'
"""
from __future__ import annotations

import inspect

import numpy as np

from kiln.runtime.cuda.array import DeviceArray

from .entry_guards import GuardFailure
from .guards import describe_reads


GUARD_NAMES = ("argument structure or static values", "tensor (dtype, shape, requires_grad)",
                "grad mode", "global or closure value")


def describe_guard(old, new, fn=None) -> str:
    """Which part of the cache key changed since the last trace (or, when `old` is a
    GuardFailure, the per-entry guard that failed), with the line where a value was read;
    for arguments, which one changed and how ("argument 0 (x): shape (3,) -> (4,)")."""
    if isinstance(old, GuardFailure):
        return old.text
    for name, a, b in zip(GUARD_NAMES, old, new):
        if a == b:
            continue
        if name == GUARD_NAMES[3]:
            return describe_reads(a, b)
        if name == GUARD_NAMES[0]:
            return f"the {name} guard failed: {show_call(a)} -> {show_call(b)}"
        if name == GUARD_NAMES[2]:
            return f"the {name} guard failed: {'on' if a else 'off'} -> {'on' if b else 'off'}"
        if len(a) == len(b):
            labels = leaf_labels(new[0], fn)
            return f"the {name} guard failed: " + "; ".join(
                f"{labels[i]}: {tensor_change(x, y)}" for i, (x, y) in enumerate(zip(a, b))
                if x != y)
        return f"the {name} guard failed: {a!r} -> {b!r}"
    return "a captured tensor's shape, dtype or requires_grad, or a module's attributes, changed"


def leaf_labels(spec, fn) -> list[str]:
    """Per tensor leaf of a call's spec ((args, kwargs)), the argument it is: "argument 0
    (x)", "argument 'w'", with its path inside a list, tuple or dict argument."""
    try:
        params = list(inspect.signature(fn).parameters) if fn is not None else []
    except (TypeError, ValueError):
        params = []
    out: list = []

    def walk(s, where):
        if s[0] == "T":
            out.append(where)
        elif s[0] in ("list", "tuple", "seq", "dict"):
            for i, item in (s[1] if s[0] == "dict" else enumerate(s[-1])):
                walk(item, f"{where}[{i!r}]")
    for i, item in enumerate(spec[1][0][1]):
        walk(item, f"argument {i} ({params[i]})" if i < len(params) else f"argument {i}")
    for k, item in spec[1][1][1]:
        walk(item, f"argument {k!r}")
    return out


def show_call(spec) -> str:
    """A call's spec as its arguments: "(Tensor, [Tensor, 3], w=2.0)"."""
    def show(s):
        if s[0] == "T":
            return "Tensor"
        if s[0] == "S":
            return repr(s[2])
        if s[0] == "dict":
            return "{" + ", ".join(f"{k!r}: {show(v)}" for k, v in s[1]) + "}"
        items = ", ".join(show(v) for v in s[-1])
        return f"[{items}]" if s[0] == "list" else f"({items}{',' if len(s[-1]) == 1 else ''})"
    args = [show(v) for v in spec[1][0][1]] + [f"{k}={show(v)}" for k, v in spec[1][1][1]]
    return "(" + ", ".join(args) + ")"


def tensor_change(old, new) -> str:
    """What changed in one argument's tensor guard (see _tensor_guard)."""
    (dt_a, shape_a, strides_a, grad_a, kind_a), (dt_b, shape_b, strides_b, grad_b, kind_b) = \
        old, new
    out = []
    if dt_a != dt_b:
        out.append(f"dtype {dt_a} -> {dt_b}")
    steps_a = tuple(s // dt_a.itemsize for s in strides_a)
    steps_b = tuple(s // dt_b.itemsize for s in strides_b)
    if shape_a != shape_b:
        out.append(f"shape {shape_a} -> {shape_b}")
    elif steps_a != steps_b:
        out.append(f"strides {steps_a} -> {steps_b} (a transposed or sliced view?)")
    if grad_a != grad_b:
        out.append(f"requires_grad {grad_a} -> {grad_b}")
    if kind_a != kind_b:
        names = {DeviceArray: "cuda", np.ndarray: "cpu", None: "a view of a CUDA tensor"}
        out.append(f"device {names.get(kind_a, kind_a)} -> {names.get(kind_b, kind_b)}")
    return ", ".join(out)
