"""Guards of `@kiln.jit`: every outside Python value a trace depends on, re-read at each call.

A compiled graph is reused only while these still hold:
- the reads of the jitted function itself (`bytecode.access_chains`): globals, closure
  variables and constant chains such as `cfg["lr"]`, `mod.SCALE`, `self.scale`, resolved at
  call time and frozen into the cache key by `freeze` (scalars by type and value);
- the reads of helper functions that ran during the trace (recorded with `sys.setprofile`);
- the nn.Modules the trace called, by identity at the path where they were found, and their
  plain attributes;
- captured tensors found at a path (`W`, `model.fc.weight`): re-read there at every call (a
  graph input, so manual SGD's `W = W - lr * g` does not retrace); only their dtype, shape
  and requires_grad are guarded.
Values Kiln cannot guard (NumPy arrays, huge containers) are refused with a KilnError that
names the read and its line.
"""
from __future__ import annotations

import builtins
import enum
import functools
import gc
import struct
import sys
import sysconfig
import threading
import types

import numpy as np

from kiln.ir.errors import KilnError
from kiln.ir.types import _INTERNAL_DIRS, Loc

from .bytecode import (MISSING, SCALAR_TYPES, access_chains, cell_value, code_objects,
                       is_scalar, param_getters)
from .tensor import Tensor
from .trace import HelperSideEffects, current_trace

_PACK = struct.Struct("<d").pack
_MAX_ITEMS = 1024       # NOTE: a container is re-read at every call; beyond this, refuse
_MAX_DEPTH = 6
_LIBRARY_DIRS = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib",
                                                           "platlib")})
_IDENTITY_TYPES = (type, types.ModuleType, types.BuiltinFunctionType, types.MethodWrapperType,
                   types.WrapperDescriptorType, types.MethodDescriptorType, enum.Enum)


# ---- scalars by type and value ----------------------------------------------------------------
def scalar_key(v):
    """A key equal only for the same type and value: 2 != 2.0, 0.0 != -0.0, NaN == NaN."""
    t = type(v)
    if isinstance(v, (float, np.floating)):
        return (t, _PACK(float(v)))
    if isinstance(v, (complex, np.complexfloating)):
        return (t, _PACK(v.real), _PACK(v.imag))
    if t is tuple:
        return (t,) + tuple(scalar_key(x) for x in v)
    return (t, v)


def show(frozen) -> str:
    """A frozen value (a cache key made by `freeze`) in words: scalars and containers as
    Python writes them, the rest by what they are (display only; the key is unchanged).

    >>> show(freeze(0.5)), show(freeze((0.5, "a"))), show(freeze(float))
    ('0.5', "(0.5, 'a')", 'the builtin float')
    """
    words = _words(frozen)
    return words if _is_plain(frozen) else "the " + words


def describe(label: str, frozen) -> str:
    """One guard as a line: `global lr == 0.5`, `global opt.zero_grad is the bound method
    SGD.zero_grad`; a label's `(read at file:line)` goes last. Where the name is a builtin
    and not a global (`float`), the guard is that it stays unset: `is the builtin float`.

    >>> describe("global lr (read at f.py:3)", freeze(0.5))
    'global lr == 0.5 (read at f.py:3)'
    >>> describe("global float (read at f.py:3)", freeze(MISSING))
    'global float is the builtin float (read at f.py:3)'
    """
    head, sep, where = label.partition(" (read at ")
    where = f"{sep}{where}" if sep else ""
    if _is_missing(frozen):
        name = head.split(" ", 1)[-1]
        what = (f"is the builtin {name}" if head.startswith("global ") and
                hasattr(builtins, name) else "is not set")
        return f"{head} {what}{where}"
    if _is_plain(frozen):
        return f"{head} == {_words(frozen)}{where}"
    return f"{head} is the {_words(frozen)}{where}"


def _is_missing(frozen) -> bool:
    return (type(frozen) is tuple and len(frozen) == 2 and type(frozen[0]) is _Ident
            and frozen[0].obj is MISSING)


def _is_scalar_key(frozen) -> bool:
    return (type(frozen) is tuple and 2 <= len(frozen) <= 3 and isinstance(frozen[0], type)
            and (frozen[0] in SCALAR_TYPES or issubclass(frozen[0], np.generic))
            and frozen[0] is not tuple)


def _is_container(frozen) -> bool:
    return (type(frozen) is tuple and len(frozen) == 2 and frozen[0] in (list, tuple, dict)
            and type(frozen[1]) is tuple)


def _is_plain(frozen) -> bool:
    """A value `==` describes: a scalar, or a container of plain values."""
    if _is_scalar_key(frozen):
        return True
    if _is_container(frozen):
        items = frozen[1]
        if frozen[0] is dict:
            return all(_is_plain(k) and _is_plain(v) for k, v in items)
        return all(_is_plain(x) for x in items)
    return False


def _words(frozen) -> str:
    if _is_scalar_key(frozen):
        t, v = frozen[0], frozen[1]
        if len(frozen) == 3:
            return repr(complex(struct.unpack("<d", v)[0], struct.unpack("<d", frozen[2])[0]))
        if isinstance(v, bytes) and issubclass(t, (float, np.floating)):
            return repr(float(struct.unpack("<d", v)[0]))
        return repr(v)
    if _is_container(frozen):
        return _container_words(*frozen)
    if isinstance(frozen, _Ident):
        return _object_words(frozen.obj)
    if type(frozen) is not tuple:
        return _object_words(frozen)
    head = frozen[0] if frozen else None
    if head == "tensor":
        dtype, shape, grad = frozen[1:]
        return (f"tensor {np.dtype(dtype).name}{list(shape)}"
                f"{', requires_grad' if grad else ''}")
    if head == "traced":
        return "value of the trace"
    if head is types.MethodType:
        func, owner = _unwrap_key(frozen[1]), _unwrap_key(frozen[2])
        cls = type(owner).__name__ if owner is not None else "?"
        return f"bound method {cls}.{getattr(func, '__name__', '?')}"
    if head is types.BuiltinMethodType:
        return f"builtin method {type(frozen[2].obj).__name__}.{frozen[1]}"
    if head is functools.partial:
        return f"partial of the {_words(frozen[1])}"
    if type(head) is types.FunctionType:     # a function with its default values
        return _object_words(head) + f" (defaults {_words(frozen[1])})"
    if isinstance(head, _Ident):             # an object and its plain attributes
        attrs = ", ".join(f"{k}={_words(v)}" for k, v in frozen[1])
        return _object_words(head.obj) + (f" ({attrs})" if attrs else "")
    if isinstance(head, type) and len(frozen) == 2:
        return f"{head.__name__} object {frozen[1]!r}"
    return repr(frozen)


def _unwrap_key(frozen):
    """The object a `freeze` key stands for (a function, a module), or None."""
    if isinstance(frozen, _Ident):
        return frozen.obj
    if type(frozen) is tuple and frozen and isinstance(frozen[0], _Ident):
        return frozen[0].obj
    if type(frozen) is tuple and frozen and type(frozen[0]) is types.FunctionType:
        return frozen[0]
    return frozen if type(frozen) is not tuple else None


def _container_words(t, items) -> str:
    if t is dict:
        return "{" + ", ".join(f"{_words(k)}: {_words(v)}" for k, v in items) + "}"
    inner = ", ".join(_words(x) for x in items)
    if t is tuple:
        return f"({inner},)" if len(items) == 1 else f"({inner})"
    return f"[{inner}]"


def _object_words(obj) -> str:
    if obj is MISSING:
        return "unset name"
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    if isinstance(obj, type):
        kind = "builtin" if obj.__module__ == "builtins" else "class"
        return f"{kind} {obj.__qualname__}"
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        kind = "builtin" if isinstance(obj, types.BuiltinFunctionType) else "function"
        return f"{kind} {getattr(obj, '__qualname__', obj.__name__)}"
    if isinstance(obj, enum.Enum):
        return f"{type(obj).__name__}.{obj.name}"
    if isinstance(obj, _module_type()):
        return f"module {type(obj).__name__}"
    return f"{type(obj).__name__} object"


class Shown:
    """A frozen value that prints in words (for reports such as kiln.explain)."""

    __slots__ = ("frozen",)

    def __init__(self, frozen):
        self.frozen = frozen

    def __eq__(self, other):
        return type(other) is Shown and other.frozen == self.frozen

    def __hash__(self):
        return hash(self.frozen)

    def __repr__(self):
        return show(self.frozen)

    def describe(self, label: str) -> str:
        return describe(label, self.frozen)


def frozen_reads(reads, call) -> list:
    """[(label, frozen value)] of `reads` now; a KilnError names a read that cannot be
    guarded. NOTE: one comprehension on the hot path; the slow path finds the culprit."""
    try:
        return [(r.label, freeze(r.get(call))) for r in reads]
    except Unguardable:
        for r in reads:
            r.frozen(call)
        raise


class Typed:
    """A scalar compared by `scalar_key`; prints as the value."""

    __slots__ = ("key", "value")

    def __init__(self, value):
        self.value = value
        self.key = scalar_key(value)

    def __eq__(self, other):
        return type(other) is Typed and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return repr(self.value)


_CANONICAL: dict = {}


def static_spec(obj) -> tuple:
    """The cache-key spec of a static argument: ("S", type-and-value key, value). A NaN is
    replaced by one canonical object per bit pattern, so tuple comparison (identity first)
    finds it equal to itself on the next call."""
    if isinstance(obj, SCALAR_TYPES + (np.generic,)):
        key = scalar_key(obj)
        if obj != obj:
            obj = _CANONICAL.setdefault(key, obj)
        return ("S", key, obj)
    return ("S", type(obj), obj)


# ---- freezing a value into a cache key --------------------------------------------------------
class Unguardable(Exception):
    """`freeze` met a value it cannot compare cheaply at every call."""


class _Ident:
    """Compares by identity (and keeps the object alive while a cache key holds it)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return type(other) is _Ident and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)

    def __repr__(self):
        return f"<{type(self.obj).__name__} object at {id(self.obj):#x}>"


@functools.cache
def _module_type():
    from kiln.nn.module import Module
    return Module


def freeze(v, depth: int = 0):
    """A hashable key of everything about `v` a trace can depend on: scalars by type and
    value, tensors by (dtype, shape, requires_grad) (their data is a graph input), modules and
    functions by identity, containers item by item, other objects by identity plus their
    plain attributes. Raises Unguardable for NumPy arrays and huge or deep structures."""
    t = type(v)
    if t is types.FunctionType:
        if v.__defaults__ is None and v.__kwdefaults__ is None:
            return v
        return (v, _freeze_defaults(v.__defaults__), freeze(v.__kwdefaults__, depth + 1))
    if t in SCALAR_TYPES or isinstance(v, np.generic):
        return scalar_key(v)
    if isinstance(v, Tensor):
        if v._trace is not None:
            return ("traced",)   # NOTE: a value of the trace itself (a stale closure cell)
        return ("tensor", v._data.dtype, v._data.shape, v._requires_grad)
    if depth > _MAX_DEPTH:
        raise Unguardable("a structure nested too deeply to guard")
    if isinstance(v, (list, tuple, dict)):
        return _freeze_container(v, depth)
    if t is types.MethodType:
        return (t, freeze(v.__func__, depth + 1), freeze(v.__self__, depth + 1))
    if t is types.BuiltinMethodType and not isinstance(v.__self__, types.ModuleType):
        # NOTE: `d.get` is a new object at every read: the method is its name on its object
        return (t, v.__name__, _Ident(v.__self__))
    if isinstance(v, _IDENTITY_TYPES + (_module_type(),)):
        return v if t.__eq__ is object.__eq__ else _Ident(v)
    if isinstance(v, functools.partial):
        return (t, freeze(v.func, depth + 1), freeze(v.args, depth + 1),
                freeze(v.keywords, depth + 1))
    if isinstance(v, np.ndarray):
        raise Unguardable("a NumPy array")
    return _freeze_object(v, depth)


_FROZEN_DEFAULTS: dict = {}     # id(defaults) -> (defaults, key), for tuples of plain scalars


def _freeze_defaults(d):
    """`freeze(d)` for a function's `__defaults__`, cached per tuple when it holds only
    immutable scalars (assigning new defaults makes a new tuple)."""
    hit = _FROZEN_DEFAULTS.get(id(d))
    if hit is not None and hit[0] is d:
        return hit[1]
    key = freeze(d, 1)
    if is_scalar(d):
        _FROZEN_DEFAULTS[id(d)] = (d, key)      # NOTE: holds d, so its id stays unique
    return key


def _freeze_container(v, depth: int):
    if len(v) > _MAX_ITEMS:
        raise Unguardable(f"a {type(v).__name__} of {len(v)} items (more than {_MAX_ITEMS} "
                          "is too large to compare at every call)")
    if isinstance(v, dict):
        return (type(v), tuple((freeze(k, depth + 1), freeze(x, depth + 1))
                               for k, x in v.items()))
    return (type(v), tuple(freeze(x, depth + 1) for x in v))


def _freeze_object(v, depth: int):
    """An object: by identity, plus its plain attributes (scalars, tensors), so that a helper
    reading `cfg.scale` through an argument still sees a change."""
    attrs = getattr(v, "__dict__", None)
    if attrs is None:
        try:
            hash(v)
        except TypeError:
            raise Unguardable(f"a {type(v).__name__} (unhashable, without attributes)") from None
        return (type(v), v)
    plain = tuple((k, freeze(x, depth + 1)) for k, x in attrs.items()
                  if isinstance(x, SCALAR_TYPES + (Tensor, np.generic)))
    return (_Ident(v), plain)


# ---- reads: a chain resolved at call time -----------------------------------------------------
def walk(value, steps):
    """Apply attribute/item steps; MISSING where one fails. A tensor ends the walk: its own
    attributes (shape, dtype, methods) are covered by the tensor guard."""
    for kind, k in steps:
        if value is MISSING or isinstance(value, Tensor):
            return value
        try:
            value = getattr(value, k) if kind == "attr" else value[k]
        except Exception:   # NOTE: an unset name or key is a value too (it may appear later)
            return MISSING
    return value


def root_getter(chain, fn_globals: dict, cells: dict, params: dict):
    """A function of the call `(args, kwargs)` returning the chain's root value now."""
    if chain.kind == "global":
        name = chain.name
        return lambda call: fn_globals.get(name, MISSING)
    if chain.kind == "cell":
        cell = cells[chain.name]
        return lambda call: cell_value(cell)
    return params[chain.name]


def chain_getter(chain, fn_globals: dict, cells: dict, params: dict):
    root = root_getter(chain, fn_globals, cells, params)
    steps = chain.steps
    if not steps:
        return root
    return lambda call: walk(root(call), steps)


class Read:
    """One guarded read: a label for messages, a getter of the call, and its source line."""

    __slots__ = ("label", "get", "chain")

    def __init__(self, chain, get):
        self.chain = chain
        self.get = get
        self.label = f"{_KINDS[chain.kind]} {chain.text()} (read at {self.loc()})"

    def loc(self) -> Loc:
        return Loc(self.chain.file, self.chain.line)

    def frozen(self, call):
        """The read's current value as a cache key (KilnError where it cannot be guarded)."""
        value = self.get(call)
        try:
            return freeze(value)
        except Unguardable as e:
            raise KilnError(
                f"@kiln.jit: {_KINDS[self.chain.kind]} `{self.chain.text()}` is {e}; a "
                "compiled graph would bake its value in, and Kiln cannot guard it at every "
                "call", loc=self.loc(),
                hint="pass it to the jitted function as an argument instead (a NumPy array "
                     "as a tensor: kiln.from_numpy(arr)), or read it outside") from None


_KINDS = {"global": "global", "cell": "closure variable", "arg": "argument"}


def function_reads(fn) -> list[Read]:
    """The guarded reads of a jitted function's own code (and its nested code)."""
    func = getattr(fn, "__func__", fn)
    code = getattr(func, "__code__", None)
    if code is None:
        return []
    params = param_getters(fn)
    cells = dict(zip(code.co_freevars, func.__closure__ or ()))
    chains = access_chains(code, tuple(params))
    return [Read(c, chain_getter(c, func.__globals__, cells, params)) for c in chains]


def defaults_key(fn):
    """The jitted function's own default values: calls that omit them bake them in."""
    func = getattr(fn, "__func__", fn)
    d, kw = getattr(func, "__defaults__", None), getattr(func, "__kwdefaults__", None)
    if d is None and kw is None:
        return None
    try:
        return (freeze(d), freeze(kw))
    except Unguardable as e:
        raise KilnError(f"@kiln.jit: a default value of {func.__name__} is {e}; Kiln cannot "
                        "guard it at every call", hint="pass it as an argument") from None


# ---- which jit call a trace belongs to --------------------------------------------------------
_PENDING = threading.local()


def set_origin(origin) -> None:
    """(JitFunction, args, kwargs) of the call about to trace, or None."""
    _PENDING.origin = origin


def take_origin():
    origin = getattr(_PENDING, "origin", None)
    _PENDING.origin = None
    return origin


def is_user_code(code: types.CodeType) -> bool:
    name = code.co_filename
    return not (name.startswith(_INTERNAL_DIRS) or name.startswith(_LIBRARY_DIRS)
                or name.startswith("<frozen"))


def _is_user_frame(frame) -> bool:
    """User code: outside Kiln, the standard library and installed packages, and neither
    module-level code (an import) nor code Kiln generated (dataclass methods of its IR)."""
    code = frame.f_code
    module = str(frame.f_globals.get("__name__", ""))
    if not is_user_code(code) or code.co_name == "<module>" or module.split(".")[0] == "kiln":
        return False
    while frame is not None:        # NOTE: an import hook run by a lazy import is not user code
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return False
        frame = frame.f_back
    return True


class HelperRecorder:
    """Guards the reads of the user functions that run while `trace` is active.

    NOTE: a profile hook sees every Python call, so helpers reached in any way (methods,
    functions passed around, a user nn.Module's forward) are found; it removes itself when
    the frame that created the trace returns."""

    def __init__(self, trace, creator, skip: set):
        self.trace = trace
        self.creator = creator
        self.skip = skip
        self.reads: list[tuple[Read, object]] = []    # (read, frozen value at trace time)
        active = sys.getprofile()
        self.complete = active is None
        if self.complete:
            sys.setprofile(self._event)
        elif not isinstance(getattr(active, "__self__", None), HelperRecorder):
            _warn_unrecorded()      # NOTE: a trace inside a trace is guarded by the outer one

    def _event(self, frame, event, arg):
        if event == "return" and frame is self.creator:
            sys.setprofile(None)
            self.creator = None
        elif event == "call" and frame.f_code not in self.skip:
            self.skip.add(frame.f_code)
            if current_trace() is self.trace and _is_user_frame(frame):
                self._guard(frame)
                self._stop_at_side_effects(frame)

    def _stop_at_side_effects(self, frame) -> None:
        """A helper with Python side effects is about to run: stop the trace before its body
        runs (a cached graph would not repeat them), so the function is replayed instead."""
        if self.trace.replay is not None:
            return          # NOTE: replay mode runs the Python at every call anyway
        from .side_effects import frame_side_effects
        effects = frame_side_effects(frame)
        if effects:
            sys.setprofile(None)
            self.creator = None
            where = ", ".join(e.describe() for e in effects)
            raise HelperSideEffects(f"Python side effects in {frame.f_code.co_name}(): {where}",
                                    effects)

    def _guard(self, frame):
        code = frame.f_code
        chains = access_chains(code, nested=False)
        cells = _closure_cells(frame) if any(c.kind == "cell" for c in chains) else {}
        for c in chains:
            if c.kind == "cell" and c.name not in cells:
                continue    # NOTE: a closure over the trace's own locals, not an outside value
            read = Read(c, chain_getter(c, frame.f_globals, cells, {}))
            self.reads.append((read, read.frozen(None)))


@functools.cache
def _warn_unrecorded() -> None:
    import warnings
    from .jit import KilnJitWarning
    warnings.warn("@kiln.jit: another profiler or tracer is active (sys.setprofile), so the "
                  "values read by helper functions called inside jitted functions are not "
                  "guarded while it runs: a change to them is not seen until a retrace",
                  KilnJitWarning, stacklevel=4)


def _closure_cells(frame) -> dict:
    """The closure cells of the function running in `frame`, found through the garbage
    collector (a frame does not point at its function); {} when ambiguous."""
    code = frame.f_code
    values = frame.f_locals
    for f in gc.get_referrers(code):
        if isinstance(f, types.FunctionType) and f.__code__ is code and f.__closure__:
            cells = dict(zip(code.co_freevars, f.__closure__))
            if all(cell_value(c) is values.get(n, MISSING) for n, c in cells.items()):
                return cells
    return {}


def skip_codes(origin) -> set:
    """Code whose reads the cache key already guards (the jitted function's own)."""
    if origin is None:
        return set()
    func = getattr(origin[0].fn, "__func__", origin[0].fn)
    code = getattr(func, "__code__", None)
    return set(code_objects(code)) if code is not None else set()


def describe_reads(old: tuple, new: tuple) -> str:
    """The first read whose value differs between two cache keys, with its source line."""
    for (label, was), (label2, now) in zip(old, new):
        if label != label2:
            break
        if was != now:
            return f"the {label} guard failed: {show(was)} -> {show(now)}"
    return f"the reads guard failed: {[x for x, _ in old]} -> {[x for x, _ in new]}"
