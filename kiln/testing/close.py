"""`assert_close`: PyTorch's `torch.testing.assert_close` for Kiln tensors, with the worst
element, its index and both values in the message.

Defaults per dtype are PyTorch's: float32 rtol 1.3e-6, atol 1e-5; float64 rtol 1e-7,
atol 1e-7; float16 rtol 1e-3, atol 1e-5; integers and bools compare exactly. An element is
close when `|actual - expected| <= atol + rtol * |expected|` (or both are the same infinity).
"""
from __future__ import annotations

import numpy as np

from kiln.frontend.tensor import Tensor

# NOTE: PyTorch's table (torch/testing/_comparison.py), keyed by NumPy's dtype names
_TOLERANCES = {"float16": (1e-3, 1e-5), "float32": (1.3e-6, 1e-5), "float64": (1e-7, 1e-7),
               "complex64": (1.3e-6, 1e-5), "complex128": (1e-7, 1e-7)}
_SCALARS = (bool, int, float, complex, np.generic)


def default_tolerances(*dtypes) -> tuple[float, float]:
    """(rtol, atol) PyTorch uses for these NumPy dtypes: the loosest of them; exact (0, 0)
    for integers and bools.

    >>> default_tolerances(np.dtype("float32"))
    (1.3e-06, 1e-05)
    """
    pairs = [_TOLERANCES.get(np.dtype(d).name, (0.0, 0.0)) for d in dtypes]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def assert_close(actual, expected, *, rtol: float | None = None, atol: float | None = None,
                 equal_nan: bool = False, check_dtype: bool = True, msg=None) -> None:
    """Raise AssertionError unless `actual` and `expected` are close, element by element.

    Tensors (Kiln tensors or NumPy arrays) must have the same shape and device (`cuda:0` and
    `cuda:1` differ), and the same dtype unless `check_dtype=False`; Python and NumPy
    numbers compare with numbers (a NumPy scalar as the Python number it holds, as in
    PyTorch: `np.float32(1.0)` and `1.0` are close, `1` and `1.0` differ in type); None
    equals only None; lists, tuples and dicts compare item by item. `rtol` and `atol` are
    given together or not at all (then PyTorch's defaults for the dtype apply). The message
    gives the number of mismatched elements, the worst one (furthest beyond its tolerance)
    with its index and both values, and the item of a nested structure where it failed. A
    string `msg` is put before it; a callable `msg` is called with it and returns the
    message to raise (PyTorch's callable form).

    >>> import kiln
    >>> assert_close(kiln.tensor([1.0, 2.0]), kiln.tensor([1.0, 2.0 + 1e-7]))
    >>> assert_close(kiln.tensor([1.0, 2.0, 3.0]), kiln.tensor([1.0, 2.5, 3.0]))
    Traceback (most recent call last):
    ...
    AssertionError: Tensors are not close!
    <BLANKLINE>
    Mismatched elements: 1 / 3 (33.3%)
    Worst element: index (1,): actual 2.0, expected 2.5 (|difference| 0.5, allowed 1.33e-05)
    Greatest absolute difference: 0.5 at index (1,) (up to 1e-05 allowed)
    Greatest relative difference: 0.2 at index (1,) (up to 1.3e-06 allowed)
    """
    if (rtol is None) != (atol is None):
        missing = "atol" if atol is None else "rtol"
        raise ValueError(f"Both 'rtol' and 'atol' must be either specified or omitted, but "
                         f"got no value for {missing}")
    problem = compare(actual, expected, rtol=rtol, atol=atol, equal_nan=equal_nan,
                      check_dtype=check_dtype)
    if problem is None:
        return
    if callable(msg):
        raise AssertionError(msg(problem))
    raise AssertionError(problem if msg is None else f"{msg}\n\n{problem}")


def compare(actual, expected, *, rtol=None, atol=None, equal_nan=False, check_dtype=True,
            path: tuple = ()) -> str | None:
    """What `assert_close` would say, or None when the two are close."""
    if isinstance(actual, (list, tuple)) and isinstance(expected, (list, tuple)):
        return _compare_sequences(actual, expected, path, rtol, atol, equal_nan, check_dtype)
    if isinstance(actual, dict) and isinstance(expected, dict):
        return _compare_mappings(actual, expected, path, rtol, atol, equal_nan, check_dtype)
    if actual is None or expected is None:
        if actual is expected:
            return None
        return _at_item(f"None mismatch: {actual!r} is not {expected!r}", path)
    a, a_device = _as_array(actual, expected)
    e, e_device = _as_array(expected, actual)
    problem = _attributes(a, e, a_device, e_device, check_dtype)
    if problem is None:
        if rtol is None:
            rtol, atol = default_tolerances(a.dtype, e.dtype)
        problem = _values(a, e, rtol, atol, equal_nan, scalar=a.ndim == 0 and e.ndim == 0)
    return problem if problem is None else _at_item(problem, path)


def _at_item(problem: str, path: tuple) -> str:
    if not path:
        return problem
    return problem + f"\n\nThe failure occurred for item {''.join(f'[{k!r}]' for k in path)}"


def _compare_sequences(actual, expected, path, *options) -> str | None:
    if len(actual) != len(expected):
        where = f" at item {''.join(f'[{k!r}]' for k in path)}" if path else ""
        return (f"The length of the sequences mismatch{where}: {len(actual)} != "
                f"{len(expected)}")
    for i, (a, e) in enumerate(zip(actual, expected)):
        problem = compare(a, e, rtol=options[0], atol=options[1], equal_nan=options[2],
                          check_dtype=options[3], path=path + (i,))
        if problem is not None:
            return problem
    return None


def _compare_mappings(actual, expected, path, *options) -> str | None:
    if actual.keys() != expected.keys():
        only_a = sorted(map(repr, actual.keys() - expected.keys()))
        only_e = sorted(map(repr, expected.keys() - actual.keys()))
        return (f"The keys of the mappings do not match: only in actual: {only_a}; only in "
                f"expected: {only_e}")
    for k in expected:
        problem = compare(actual[k], expected[k], rtol=options[0], atol=options[1],
                          equal_nan=options[2], check_dtype=options[3], path=path + (k,))
        if problem is not None:
            return problem
    return None


def _as_array(value, other) -> tuple[np.ndarray, str]:
    """(NumPy array of `value`, its device); a tensor compared with a number (or anything
    else that is not alike) is a TypeError, as in PyTorch."""
    tensor_like = (Tensor, np.ndarray)
    if isinstance(value, tensor_like) and isinstance(other, tensor_like):
        if isinstance(value, np.ndarray):
            return value, "cpu"
        return to_numpy(value), str(value.device)
    if isinstance(value, _SCALARS) and isinstance(other, _SCALARS):
        # NOTE: a NumPy scalar is the Python number it holds (PyTorch's NumberPair), so
        # np.float32(1.0) and 1.0 are both float64 here
        return np.asarray(value.item() if isinstance(value, np.generic) else value), "cpu"
    raise TypeError(f"No comparison pair was able to handle inputs of type "
                    f"{type(value).__name__} and {type(other).__name__} (compare tensors or "
                    "NumPy arrays with each other, and numbers with numbers)")


def to_numpy(t: Tensor) -> np.ndarray:
    """The values of a Kiln tensor as a NumPy array (copied from the GPU when there)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    return np.asarray(t.numpy())


def _attributes(a, e, a_device, e_device, check_dtype) -> str | None:
    if a.shape != e.shape:
        return f"The values for attribute 'shape' do not match: {a.shape} != {e.shape}."
    if a_device != e_device:
        return f"The values for attribute 'device' do not match: {a_device} != {e_device}."
    if check_dtype and a.dtype != e.dtype:
        return f"The values for attribute 'dtype' do not match: {a.dtype} != {e.dtype}."
    return None


def _values(a, e, rtol, atol, equal_nan, scalar: bool) -> str | None:
    exact = rtol == 0 and atol == 0
    wide = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(e) else np.float64
    if exact and a.dtype.kind in "biu" and e.dtype.kind in "biu":
        close = a == e      # NOTE: integers exactly, not through float64 (int64 > 2**53)
    else:
        close = np.isclose(a.astype(wide), e.astype(wide), rtol=rtol, atol=atol,
                           equal_nan=equal_nan)
    close = np.asarray(close)
    if close.all():
        return None
    return _report(a, e, ~close, rtol, atol, scalar)


def _report(a, e, bad, rtol, atol, scalar: bool) -> str:
    kind = "Scalars" if scalar else "Tensors"
    verb = "equal" if rtol == 0 and atol == 0 else "close"
    af, ef = a.astype(np.complex128 if np.iscomplexobj(a) else np.float64), \
        e.astype(np.complex128 if np.iscomplexobj(e) else np.float64)
    with np.errstate(all="ignore"):
        diff = np.abs(af - ef)
        rel = diff / np.abs(ef)
        allowed = atol + rtol * np.abs(ef)
        excess = np.where(allowed > 0, diff / allowed, diff)
    excess = np.where(np.isnan(excess), np.inf, excess)     # NOTE: a NaN is the worst
    worst = _index(np.where(bad, excess, -1.0))
    lines = [f"{kind} are not {verb}!", ""]
    if not scalar:
        n, total = int(bad.sum()), bad.size
        lines.append(f"Mismatched elements: {n} / {total} ({100 * n / total:.1f}%)")
    where = "Values: " if scalar else f"Worst element: index {worst}: "
    limit = "" if verb == "equal" else f", allowed {allowed[worst]:.3g}"
    lines.append(f"{where}actual {_item(a[worst])}, expected "
                 f"{_item(e[worst])} (|difference| {_item(diff[worst])}{limit})")
    lines += _greatest(diff, rel, bad, rtol, atol, scalar)
    return "\n".join(lines)


def _greatest(diff, rel, bad, rtol, atol, scalar: bool) -> list[str]:
    """PyTorch's two lines: the greatest absolute and relative differences."""
    out = []
    for name, values, tol in (("absolute", diff, atol), ("relative", rel, rtol)):
        values = np.where(bad, values, -np.inf)
        if np.isnan(values).any():
            i = _index(np.isnan(values))
        else:
            i = _index(values)
        where = "" if scalar else f" at index {i}"
        limit = "" if rtol == 0 and atol == 0 else f" (up to {tol} allowed)"
        out.append(f"Greatest {name} difference: {_item(values[i])}{where}{limit}")
    return out


def _index(values: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(values)), values.shape))


def _item(x):
    return np.asarray(x).item()
