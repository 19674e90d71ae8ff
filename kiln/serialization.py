"""`kiln.save` and `kiln.load`: tensors, state dicts and checkpoints as safetensors files.

Kiln never pickles: unpickling a file can run any code its author chose. A file holds the
tensors under flat names (nested keys joined with '.', e.g. `state.0.exp_avg`) and, in the
safetensors metadata under "kiln.nodes", a JSON description of the saved object, so `load`
rebuilds the same nesting, key order and key types (optimizer state is keyed by ints), and the
numbers, strings and tuples of e.g. an optimizer's param_groups. The description is a flat
list of nodes, each child before its parent and the saved object last, so any depth of
nesting is written and read without recursion. A node is `[tag, payload]`:

    ["T", "fc.weight"]          a tensor, by its name in the file
    ["D", [[key, i], ...]]      a dict whose values are nodes i ("O": an OrderedDict, which
                                may carry a third item, its `_metadata`, as state_dict() has)
    ["L", [i, ...]]             a list ("U": a tuple)
    ["V", 0.01]                 a JSON value: number, bool, string or null (NumPy numbers
                                are stored as Python numbers)

Files of Kiln 0.1 (a nested description under "kiln.structure") still load. A safetensors
file written by other tools (no Kiln description) loads as a flat dict of tensors, sorted by
name. Kiln holds bool, int32, int64, float32 and float64; other safetensors dtypes load
widened, with every value kept exactly: F16 and BF16 as float32; I8, U8, I16 and U16 as
int32; U32 as int64. Other dtypes (U64, F8_*, complex) raise SerializationError.
"""
from __future__ import annotations

import collections
import json
import os

import numpy as np
import safetensors.numpy as st

from kiln.frontend.creation import from_numpy
from kiln.frontend.tensor import Tensor
from kiln.ir.errors import KilnError, NotSupportedError

NODES_KEY = "kiln.nodes"
STRUCTURE_KEY = "kiln.structure"     # NOTE: Kiln 0.1's nested description, read only
_SCALARS = (bool, int, float, str, type(None))
_CONTAINER_TAGS = {"D", "O", "L", "U"}
_TAGS = _CONTAINER_TAGS | {"T", "V"}


class SerializationError(KilnError):
    """A file `kiln.load` cannot read, or an object `kiln.save` cannot write."""

    category = "serialization"


class SerializationFileNotFoundError(SerializationError, FileNotFoundError):
    """`kiln.load` of a path that does not exist (also a `FileNotFoundError`)."""


class SerializationIsADirectoryError(SerializationError, IsADirectoryError):
    """`kiln.load` or `kiln.save` of a path that is a directory (also an `IsADirectoryError`)."""


class SerializationPermissionError(SerializationError, PermissionError):
    """A path `kiln.load` may not read or `kiln.save` may not write (also a `PermissionError`)."""


_OS_ERRORS = [(FileNotFoundError, SerializationFileNotFoundError),
              (IsADirectoryError, SerializationIsADirectoryError),
              (PermissionError, SerializationPermissionError)]


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
    nodes = _encode(obj, tensors)
    metadata = {"format": "kiln", NODES_KEY: json.dumps(nodes)}
    data = st.save(tensors, metadata=metadata)
    if hasattr(f, "write"):
        f.write(data)
        return
    name = os.fspath(f)
    try:
        with open(name, "wb") as fh:
            fh.write(data)
    except OSError as e:
        raise _os_error(e, f"kiln.save: cannot write '{name}'") from None


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None):
    """`kiln.load`: read what `kiln.save` wrote (or any safetensors file) from a path or a
    binary file object.

    `map_location` may be None, "cpu" or "cuda" (where the tensors go); `weights_only` is
    accepted for PyTorch code and always holds: Kiln never unpickles. A bad file raises
    SerializationError naming the file and what is wrong with it.
    """
    device = _check_map_location(map_location)
    if pickle_module is not None:
        raise NotSupportedError("kiln.load never unpickles, so pickle_module is not accepted")
    name, data = _read_bytes(f)
    entries, metadata = _parse(name, data)
    reader = _TensorReader(name, data, entries, device)
    if NODES_KEY in metadata:
        return _decode_nodes(_description(name, metadata[NODES_KEY]), reader)
    if STRUCTURE_KEY in metadata:
        return _decode_nested(name, _description(name, metadata[STRUCTURE_KEY]), reader)
    return {key: reader.tensor(key) for key in sorted(entries)}


def _os_error(error: OSError, message: str) -> SerializationError:
    """A SerializationError that is also the OSError subclass PyTorch would raise."""
    kind = next((ours for theirs, ours in _OS_ERRORS if isinstance(error, theirs)),
                SerializationError)
    return kind(f"{message}: {error.strerror or error}")


# ---- save -----------------------------------------------------------------------------------
class _Container:
    """A dict, list or tuple being encoded: where it is (its path and its key in its parent),
    the (key, child) pairs still to encode, and the (key, node index) pairs encoded."""

    __slots__ = ("value", "path", "key", "pending", "done")

    def __init__(self, value, path: str, key):
        self.value, self.path, self.key = value, path, key
        items = value.items() if isinstance(value, dict) else enumerate(value)
        self.pending = iter(items)
        self.done: list = []

    def node(self) -> list:
        value = self.value
        if isinstance(value, dict):
            node = ["O" if isinstance(value, collections.OrderedDict) else "D",
                    [[key, index] for key, index in self.done]]
            metadata = getattr(value, "_metadata", None)
            if node[0] == "O" and metadata is not None:
                node.append(_json_metadata(metadata, self.path))
            return node
        return ["U" if isinstance(value, tuple) else "L", [index for _, index in self.done]]


def _encode(obj, tensors: dict) -> list:
    """The flat node list describing `obj` (its root last); fills `tensors` by name.
    NOTE: an explicit stack, not recursion, so nesting of any depth saves."""
    if not _is_container(obj):
        return [_encode_leaf(obj, "", tensors)]
    nodes: list = []
    stack = [_Container(obj, "", None)]
    open_ids = {id(obj)}
    while stack:
        top = stack[-1]
        item = next(top.pending, None)
        if item is None:
            stack.pop()
            open_ids.discard(id(top.value))
            nodes.append(top.node())
            if stack:
                stack[-1].done.append((top.key, len(nodes) - 1))
            continue
        key, child = item
        if isinstance(top.value, dict):
            _check_key(key, top.path)
        path = _join(top.path, key)
        if not _is_container(child):
            nodes.append(_encode_leaf(child, path, tensors))
            top.done.append((key, len(nodes) - 1))
        elif id(child) in open_ids:
            raise SerializationError(f"kiln.save: the object contains itself (at '{path}'); "
                                     "Kiln cannot save a cycle")
        else:
            open_ids.add(id(child))
            stack.append(_Container(child, path, key))
    return nodes


def _is_container(value) -> bool:
    # NOTE: a namedtuple is not saved as a tuple: it would load back as a plain tuple
    return isinstance(value, dict) or (isinstance(value, (list, tuple))
                                       and not hasattr(value, "_fields"))


def _encode_leaf(value, path: str, tensors: dict) -> list:
    if isinstance(value, Tensor):
        key = _unique_key(path or "tensor", tensors)
        tensors[key] = np.array(value.detach().cpu().numpy(), order="C")  # NOTE: keeps 0-d
        return ["T", key]
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


def _json_metadata(metadata, path: str) -> dict:
    """A state dict's `_metadata` ({module prefix: {"version": 1}}) as JSON."""
    try:
        return json.loads(json.dumps(metadata))
    except (TypeError, ValueError, RecursionError) as e:
        raise SerializationError(f"kiln.save: the _metadata of the dict at "
                                 f"'{path or '<root>'}' is not plain data ({e})") from None


def _check_key(key, path: str):
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise SerializationError(f"kiln.save: dict keys must be str or int, got "
                                 f"{type(key).__name__} key {key!r} (at '{path or '<root>'}')")
    return key


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _unique_key(key: str, tensors: dict) -> str:
    # NOTE: {"a.b": t, "a": {"b": u}} flatten to the same name; the description records the
    # name each tensor really got, so a suffix keeps both.
    name, n = key, 1
    while name in tensors:
        name, n = f"{key}#{n}", n + 1
    return name


# ---- load: the file -------------------------------------------------------------------------
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


def _read_bytes(f) -> tuple[str, bytes]:
    if hasattr(f, "read"):
        name = str(getattr(f, "name", "<file object>"))
        data = f.read()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise SerializationError(f"kiln.load: '{name}' is open in text mode; open it with "
                                     "open(path, 'rb')")
        return name, bytes(data)
    name = os.fspath(f)
    try:
        with open(name, "rb") as fh:
            return name, fh.read()
    except FileNotFoundError:
        raise SerializationFileNotFoundError(f"kiln.load: no such file: '{name}'") from None
    except OSError as e:
        raise _os_error(e, f"kiln.load: cannot read '{name}'") from None


def _parse(name: str, data: bytes) -> tuple[dict, dict]:
    """The file's tensor entries {key: (dtype, shape, begin, end)} (offsets into `data`) and
    metadata; a clear error when it is not a whole safetensors file."""
    # NOTE: a safetensors file is an 8-byte little-endian header length, then a JSON header
    # that starts with '{'. The first byte alone says nothing (a header length of 0x280 starts
    # with the pickle opcode 0x80), but no pickle or zip has '{' at byte 8: the check is exact.
    if len(data) >= 9 and data[8:9] != b"{" and _is_pickle_or_zip(data):
        raise SerializationError(
            f"kiln.load: '{name}' looks like a PyTorch pickle/zip checkpoint, not a safetensors "
            "file; Kiln never unpickles files (unpickling can run arbitrary code)",
            hint="convert it once where PyTorch is trusted: safetensors.torch.save_file("
                 "torch.load(path), 'model.safetensors')")
    header = _header(name, data)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise _invalid(name, data, f"__metadata__ is a {type(metadata).__name__}, not an object")
    body = 8 + int.from_bytes(data[:8], "little")
    entries = {key: _entry(name, data, key, info, body) for key, info in header.items()}
    return entries, metadata


def _is_pickle_or_zip(data: bytes) -> bool:
    is_pickle = data[0] == 0x80 and 2 <= data[1] <= 5    # NOTE: PROTO opcode, protocol 2-5
    return is_pickle or data[:4] == b"PK\x03\x04"


def _invalid(name: str, data: bytes, what: str) -> SerializationError:
    return SerializationError(f"kiln.load: '{name}' is not a valid safetensors file "
                              f"({len(data)} bytes; it may be truncated or corrupted): {what}")


def _header(name: str, data: bytes) -> dict:
    if len(data) < 8:
        raise _invalid(name, data, "shorter than the 8-byte header length")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise _invalid(name, data, f"the header length says {size} bytes, but only "
                                   f"{len(data) - 8} follow")
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except RecursionError:
        raise _invalid(name, data, "the header is JSON nested too deeply to read") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise _invalid(name, data, f"the header is not JSON ({type(e).__name__}: "
                                   f"{str(e)[:200]})") from None
    if not isinstance(header, dict):
        raise _invalid(name, data, f"the header is a JSON {type(header).__name__}, not an "
                                   "object")
    return header


def _entry(name: str, data: bytes, key: str, info, body: int) -> tuple:
    """(dtype, shape, begin, end) of one tensor, its bytes `data[begin:end]`, all checked."""
    where = f"tensor '{key}'"
    if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= set(info)):
        raise _invalid(name, data, f"{where} is not an object with dtype, shape and "
                                   "data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not (isinstance(shape, list) and all(_is_count(n) for n in shape)):
        raise _invalid(name, data, f"{where} has shape {shape!r}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[0] <= offsets[1]):
        raise _invalid(name, data, f"{where} has data_offsets {offsets!r}, not [begin, end]")
    if dtype not in _READERS:
        raise SerializationError(f"kiln.load: {where} in '{name}' has dtype {dtype!r}, which "
                                 f"Kiln cannot load (it loads {', '.join(_READERS)})")
    begin, end = body + offsets[0], body + offsets[1]
    if end > len(data):
        raise _invalid(name, data, f"{where} has data_offsets {offsets} past the end of the "
                                   f"data ({len(data) - body} bytes)")
    want = int(np.prod(shape, dtype=object)) * _READERS[dtype][0].itemsize
    if end - begin != want:
        raise _invalid(name, data, f"{where} of dtype {dtype} and shape {shape} needs {want} "
                                   f"bytes, but its data_offsets {offsets} hold {end - begin}")
    return dtype, tuple(shape), begin, end


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    # NOTE: a bfloat16 is the high half of the float32 with the same value
    return (raw.astype(np.uint32) << 16).view(np.float32)


# NOTE: safetensors dtype -> (its little-endian bytes as NumPy reads them, the array Kiln holds)
_READERS = {
    "BOOL": (np.dtype("u1"), lambda raw: raw != 0),
    "F64": (np.dtype("<f8"), lambda raw: raw.astype(np.float64)),
    "F32": (np.dtype("<f4"), lambda raw: raw.astype(np.float32)),
    "F16": (np.dtype("<f2"), lambda raw: raw.astype(np.float32)),
    "BF16": (np.dtype("<u2"), _bfloat16_to_float32),
    "I64": (np.dtype("<i8"), lambda raw: raw.astype(np.int64)),
    "I32": (np.dtype("<i4"), lambda raw: raw.astype(np.int32)),
    "U32": (np.dtype("<u4"), lambda raw: raw.astype(np.int64)),
    "I16": (np.dtype("<i2"), lambda raw: raw.astype(np.int32)),
    "U16": (np.dtype("<u2"), lambda raw: raw.astype(np.int32)),
    "I8": (np.dtype("i1"), lambda raw: raw.astype(np.int32)),
    "U8": (np.dtype("u1"), lambda raw: raw.astype(np.int32)),
}


class _TensorReader:
    """Makes the file's tensors by name (each a fresh copy, on the load's device)."""

    def __init__(self, name: str, data: bytes, entries: dict, device: str | None):
        self.name, self.data, self.entries, self.device = name, data, entries, device

    def tensor(self, key) -> Tensor:
        if not isinstance(key, str) or key not in self.entries:
            raise SerializationError(f"kiln.load: '{self.name}' describes a tensor {key!r} that "
                                     "the file does not hold")
        dtype, shape, begin, end = self.entries[key]
        stored, convert = _READERS[dtype]
        raw = np.frombuffer(self.data, dtype=stored, count=(end - begin) // stored.itemsize,
                            offset=begin)
        tensor = from_numpy(np.ascontiguousarray(convert(raw)).reshape(shape))
        return tensor if self.device is None else tensor.to(self.device)


# ---- load: the description ------------------------------------------------------------------
def _description(name: str, text):
    try:
        return json.loads(text)
    except RecursionError:
        raise _malformed(name, "nested too deeply to read") from None
    except (TypeError, ValueError) as e:
        raise _malformed(name, f"not JSON: {type(e).__name__}: {str(e)[:200]}") from None


def _malformed(name: str, what: str) -> SerializationError:
    return SerializationError(f"kiln.load: '{name}' has a malformed Kiln structure "
                              f"description in its metadata ({what})")


def _decode_nodes(nodes, reader: _TensorReader):
    """The saved object from the flat node list: each node made from nodes made before it."""
    if not (isinstance(nodes, list) and nodes):
        raise _malformed(reader.name, "not a non-empty list of nodes")
    built: list = []
    for node in nodes:
        built.append(_build(node, built, reader))
    return built[-1]


def _build(node, built: list, reader: _TensorReader):
    tag, payload, extra = _split_node(node, reader.name)
    if tag == "T":
        return reader.tensor(payload)
    if tag == "V":
        return _scalar(payload, reader.name)
    if tag in ("L", "U"):
        items = [_child(index, built, reader.name) for index in _as_list(payload, reader.name)]
        return tuple(items) if tag == "U" else items
    pairs = [_pair(item, reader.name) for item in _as_list(payload, reader.name)]
    items = [(key, _child(index, built, reader.name)) for key, index in pairs]
    if tag == "D":
        return dict(items)
    result = collections.OrderedDict(items)
    if extra is not None:
        result._metadata = collections.OrderedDict(extra)
    return result


def _split_node(node, name: str) -> tuple:
    if not (isinstance(node, list) and len(node) in (2, 3) and node[0] in _TAGS
            and (len(node) == 2 or (node[0] == "O" and isinstance(node[2], dict)))):
        raise _malformed(name, f"unexpected node {str(node)[:80]}")
    return node[0], node[1], node[2] if len(node) == 3 else None


def _scalar(payload, name: str):
    if not isinstance(payload, _SCALARS):
        raise _malformed(name, f"a value node holds {str(payload)[:80]}, not a number, bool, "
                               "string or null")
    return payload


def _as_list(payload, name: str) -> list:
    if not isinstance(payload, list):
        raise _malformed(name, f"expected a list of children, got {str(payload)[:80]}")
    return payload


def _pair(item, name: str) -> tuple:
    if not (isinstance(item, list) and len(item) == 2 and _is_key(item[0])):
        raise _malformed(name, f"expected a [key, child] pair with a str or int key, got "
                               f"{str(item)[:80]}")
    return item[0], item[1]


def _is_key(key) -> bool:
    return isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool))


def _child(index, built: list, name: str):
    if not (_is_count(index) and index < len(built)):
        raise _malformed(name, f"child {index!r} is not a node before its parent")
    return built[index]


def _decode_nested(name: str, node, reader: _TensorReader):
    """Kiln 0.1's nested description (children inside their parents)."""
    try:
        return _decode_nested_node(node, reader)
    except RecursionError:
        raise _malformed(name, "nested too deeply to read") from None


def _decode_nested_node(node, reader: _TensorReader):
    tag, payload, _ = _split_node(node, reader.name)
    if tag == "T":
        return reader.tensor(payload)
    if tag == "V":
        return _scalar(payload, reader.name)
    if tag in ("L", "U"):
        items = [_decode_nested_node(child, reader) for child in _as_list(payload, reader.name)]
        return tuple(items) if tag == "U" else items
    pairs = [_pair(item, reader.name) for item in _as_list(payload, reader.name)]
    items = [(key, _decode_nested_node(child, reader)) for key, child in pairs]
    return collections.OrderedDict(items) if tag == "O" else dict(items)


__all__ = ["SerializationError", "load", "save"]
