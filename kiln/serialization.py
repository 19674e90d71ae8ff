"""`kiln.save` and `kiln.load`: tensors, state dicts and checkpoints as safetensors files.

Kiln never pickles: unpickling a file can run any code its author chose. A file holds the
tensors under flat names (nested keys joined with '.', e.g. `state.0.exp_avg`) and, in the
safetensors metadata, a JSON description of the saved object, so `load` rebuilds the same
nesting, key order and key types (optimizer state is keyed by ints), and the numbers, strings
and tuples of e.g. an optimizer's param_groups. Each node of that description is a pair
`[tag, payload]`:

    ["T", "fc.weight"]          a tensor, by its name in the file
    ["D", [[key, node], ...]]   a dict ("O": an OrderedDict); keys are str or int
    ["L", [node, ...]]          a list ("U": a tuple)
    ["V", 0.01]                 a JSON value: number, bool, string or null (NumPy numbers
                                are stored as Python numbers)

A safetensors file written by other tools (no Kiln description) loads as a flat dict of
tensors, sorted by name.
"""
from __future__ import annotations

import collections
import json
import os

import numpy as np
import safetensors
import safetensors.numpy as st

from kiln.frontend.creation import from_numpy
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes
from kiln.ir.errors import KilnError, NotSupportedError

STRUCTURE_KEY = "kiln.structure"
_SCALARS = (bool, int, float, str, type(None))
_TAGS = {"T", "D", "O", "L", "U", "V"}


class SerializationError(KilnError):
    """A file `kiln.load` cannot read, or an object `kiln.save` cannot write."""

    category = "serialization"


class SerializationFileNotFoundError(SerializationError, FileNotFoundError):
    """`kiln.load` of a path that does not exist (also a `FileNotFoundError`)."""


def save(obj, f) -> None:
    """`kiln.save`: write a tensor, a (nested) state dict, or a checkpoint dict to `f` (a path
    or a binary file object) in the safetensors format.

    >>> import io, kiln
    >>> buffer = io.BytesIO()
    >>> save({"w": kiln.ones(2), "epoch": 3}, buffer)
    >>> load(io.BytesIO(buffer.getvalue()))
    {'w': tensor([1., 1.]), 'epoch': 3}
    """
    tensors: dict[str, np.ndarray] = {}
    structure = _encode(obj, "", tensors)
    metadata = {"format": "kiln", STRUCTURE_KEY: json.dumps(structure)}
    if hasattr(f, "write"):
        f.write(st.save(tensors, metadata=metadata))
        return
    try:
        st.save_file(tensors, os.fspath(f), metadata=metadata)
    except OSError as e:
        raise SerializationError(f"kiln.save: cannot write '{os.fspath(f)}': "
                                 f"{e.strerror or e}") from None


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None):
    """`kiln.load`: read what `kiln.save` wrote (or any safetensors file) from a path or a
    binary file object.

    `map_location` may be None, "cpu" or "cuda" (where the tensors go); `weights_only` is
    accepted for PyTorch code and always holds: Kiln never unpickles.
    """
    device = _check_map_location(map_location)
    if pickle_module is not None:
        raise NotSupportedError("kiln.load never unpickles, so pickle_module is not accepted")
    name, data = _read_bytes(f)
    arrays, metadata = _parse(name, data)
    text = metadata.get(STRUCTURE_KEY)
    if text is None:
        return _moved({key: _to_tensor(name, key, arrays[key]) for key in sorted(arrays)},
                      device)
    try:
        return _moved(_decode(json.loads(text), arrays, name), device)
    except (TypeError, ValueError) as e:
        raise SerializationError(f"kiln.load: '{name}' has a malformed Kiln structure "
                                 f"description in its metadata ({e})") from None


# ---- save -----------------------------------------------------------------------------------
def _encode(value, path: str, tensors: dict) -> list:
    if isinstance(value, Tensor):
        key = _unique_key(path or "tensor", tensors)
        tensors[key] = np.array(value.detach().cpu().numpy(), order="C")  # NOTE: keeps 0-d
        return ["T", key]
    if isinstance(value, dict):
        tag = "O" if isinstance(value, collections.OrderedDict) else "D"
        return [tag, [[_check_key(k, path), _encode(v, _join(path, k), tensors)]
                      for k, v in value.items()]]
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        tag = "U" if isinstance(value, tuple) else "L"
        return [tag, [_encode(v, _join(path, i), tensors) for i, v in enumerate(value)]]
    if isinstance(value, _SCALARS):
        return ["V", value]
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return ["V", value.item()]     # NOTE: a NumPy number loads back as a Python number
    raise SerializationError(
        f"kiln.save: cannot save a {type(value).__name__} (at '{path or '<root>'}'): Kiln saves "
        "tensors and dicts, lists and tuples of tensors, numbers, strings and None, and never "
        "pickles other objects", hint=_save_hint(value))


def _save_hint(value) -> str | None:
    if isinstance(value, np.ndarray):
        return "wrap NumPy arrays as tensors: kiln.from_numpy(array)"
    if hasattr(value, "state_dict"):
        return "save its state_dict() and load it back with load_state_dict()"
    return None


def _check_key(key, path: str):
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise SerializationError(f"kiln.save: dict keys must be str or int, got "
                                 f"{type(key).__name__} key {key!r} (at '{path or '<root>'}')")
    return key


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _unique_key(key: str, tensors: dict) -> str:
    # NOTE: {"a.b": t, "a": {"b": u}} flatten to the same name; the structure records the
    # name each tensor really got, so a suffix keeps both.
    name, n = key, 1
    while name in tensors:
        name, n = f"{key}#{n}", n + 1
    return name


# ---- load -----------------------------------------------------------------------------------
def _check_map_location(map_location) -> str | None:
    """The device a load puts its tensors on (None: the CPU, where they are read)."""
    if map_location is None:
        return None
    if isinstance(map_location, dict) or callable(map_location):
        raise NotSupportedError("not supported yet: kiln.load(map_location=<dict or "
                                "function>); pass 'cpu' or 'cuda'")
    where = str(getattr(map_location, "type", map_location)).split(":")[0]
    if where not in ("cpu", "cuda"):
        raise NotSupportedError(f"not supported yet: kiln.load(map_location={map_location!r}); "
                                "pass 'cpu' or 'cuda'")
    return None if where == "cpu" else where


def _moved(value, device):
    """`value` (tensors in dicts, lists and tuples) with every tensor on `device`."""
    if device is None:
        return value
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return type(value)((k, _moved(v, device)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(v, device) for v in value)
    return value


def _read_bytes(f) -> tuple[str, bytes]:
    if hasattr(f, "read"):
        return getattr(f, "name", "<file object>"), f.read()
    name = os.fspath(f)
    if not os.path.exists(name):
        raise SerializationFileNotFoundError(f"kiln.load: no such file: '{name}'")
    try:
        with open(name, "rb") as fh:
            return name, fh.read()
    except OSError as e:
        raise SerializationError(f"kiln.load: cannot read '{name}': {e.strerror or e}") from None


def _parse(name: str, data: bytes) -> tuple[dict, dict]:
    """The file's arrays and metadata; a clear error when it is not a whole safetensors file."""
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        raise SerializationError(
            f"kiln.load: '{name}' looks like a PyTorch pickle/zip checkpoint, not a safetensors "
            "file; Kiln never unpickles files (unpickling can run arbitrary code)",
            hint="convert it once where PyTorch is trusted: safetensors.torch.save_file("
                 "torch.load(path), 'model.safetensors')")
    try:
        arrays = st.load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
    except (safetensors.SafetensorError, ValueError) as e:
        raise SerializationError(f"kiln.load: '{name}' is not a valid safetensors file "
                                 f"({len(data)} bytes; it may be truncated or corrupted): "
                                 f"{e}") from None
    return arrays, header.get("__metadata__") or {}


def _to_tensor(name: str, key: str, array: np.ndarray) -> Tensor:
    try:
        dtypes.from_numpy(array.dtype)
    except TypeError:
        raise SerializationError(f"kiln.load: tensor '{key}' in '{name}' has dtype "
                                 f"{array.dtype}, which Kiln does not have (bool, int32, "
                                 "int64, float32, float64)") from None
    return from_numpy(np.array(array, copy=True))


def _decode(node, arrays: dict, name: str):
    if not (isinstance(node, list) and len(node) == 2 and node[0] in _TAGS):
        raise SerializationError(f"kiln.load: '{name}' has a malformed Kiln structure "
                                 f"description (unexpected node {str(node)[:80]})")
    tag, payload = node
    if tag == "T":
        if payload not in arrays:
            raise SerializationError(f"kiln.load: '{name}' describes a tensor '{payload}' that "
                                     "the file does not hold")
        return _to_tensor(name, payload, arrays[payload])
    if tag in ("D", "O"):
        items = [(key, _decode(child, arrays, name)) for key, child in payload]
        return collections.OrderedDict(items) if tag == "O" else dict(items)
    if tag in ("L", "U"):
        items = [_decode(child, arrays, name) for child in payload]
        return tuple(items) if tag == "U" else items
    return payload


__all__ = ["SerializationError", "load", "save"]
