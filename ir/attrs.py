"""Typed op attributes.

Each op declares its attributes as `{name: kind}`; a node's `Attrs` is validated against that
schema, immutable and hashable (CSE compares nodes by op, attrs and inputs).
"""
from __future__ import annotations

import math

from .dtypes import DType, as_dtype
from .errors import KilnError

# kind -> (normalize(value) -> canonical value)
def _ints(v):
    return tuple(int(x) for x in v)


def _scalar(v):
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int) or (hasattr(v, "dtype") and v.dtype.kind in "iu"):
        return int(v)
    return float(v)


def _data(v):
    """Nested tuples of scalars (small literal tensors)."""
    if isinstance(v, (list, tuple)):
        return tuple(_data(x) for x in v)
    return _scalar(v)


NORMALIZE = {
    "int": int,
    "float": float,
    "bool": bool,
    "scalar": _scalar,
    "dtype": as_dtype,
    "ints": _ints,
    "shape": _ints,
    "str": str,
    "data": _data,
    "graph": lambda g: g,
}


class Attrs:
    """An immutable, hashable set of attributes: `attrs.axes`, `attrs['axes']`."""

    __slots__ = ("_items",)

    def __init__(self, items: tuple = ()):
        object.__setattr__(self, "_items", tuple(items))

    @classmethod
    def build(cls, op_name: str, schema: dict, given: dict) -> "Attrs":
        unknown = set(given) - set(schema)
        if unknown:
            raise KilnError(f"op '{op_name}' has no attribute(s) {sorted(unknown)}; "
                            f"it takes {sorted(schema)}")
        missing = set(schema) - set(given)
        if missing:
            raise KilnError(f"op '{op_name}' needs attribute(s) {sorted(missing)}")
        items = []
        for name, kind in schema.items():
            try:
                items.append((name, NORMALIZE[kind](given[name])))
            except (TypeError, ValueError) as e:
                raise KilnError(f"op '{op_name}': attribute {name}={given[name]!r} is not "
                                f"a valid {kind}: {e}") from None
        return cls(tuple(items))

    def __reduce__(self):
        # NOTE: pickled by its items (a compiled plan on disk); __getattr__ would otherwise
        # run on an instance whose slot is not set yet
        return (Attrs, (self._items,))

    def __getattr__(self, name):
        for k, v in self._items:
            if k == name:
                return v
        raise AttributeError(name)

    def __getitem__(self, name):
        return getattr(self, name)

    def __setattr__(self, name, value):
        raise AttributeError("Attrs are immutable")

    def items(self):
        return self._items

    def as_dict(self) -> dict:
        return dict(self._items)

    def __eq__(self, other):
        return isinstance(other, Attrs) and _key(self._items) == _key(other._items)

    def __hash__(self):
        return hash(_key(self._items))

    def __repr__(self):
        def show(v):
            return f"<graph @{v.name}>" if hasattr(v, "nodes") else format_attr(v)
        return "{" + ", ".join(f"{k}={show(v)}" for k, v in self._items) + "}"


def _key(items):
    # NOTE: 0.0 and -0.0 (and NaNs) must not be merged by CSE, so floats compare by repr.
    def k(v):
        if isinstance(v, float):
            return ("f", repr(v))
        if isinstance(v, tuple):
            return tuple(k(x) for x in v)
        if hasattr(v, "nodes"):   # a Graph
            return ("g", id(v))
        return v
    return tuple((n, k(v)) for n, v in items)


def format_attr(v) -> str:
    """The IR text of one attribute value; the parser reads exactly this back."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, DType):
        return v.value
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ",".join(format_attr(x) for x in v) + "]"
    raise TypeError(f"cannot print attribute value {v!r}")
