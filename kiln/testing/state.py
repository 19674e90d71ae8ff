"""The state a call can change, found by walking from the function's arguments (and a
`functools.partial`'s, and its default values) and the globals and closure variables its
code (and the plain functions it refers to) reads: tensors (values, `.grad`), containers
(dicts, lists) and plain objects (nn.Modules, optimizers, a namespace, `__slots__` objects,
a user class's tensor attributes). A global that is a user module or class is followed along
the attributes the code reads through it (`ns.buf`, `Cfg.buf`), not walked as a whole.
`assert_matches_eager` snapshots it, runs the jitted function, restores it, runs the function
eagerly, and compares what each run left behind, tensor by tensor, by path
(`model.fc1.weight.grad`, `optimizer.state[<model.fc1.weight>]['momentum_buffer']`).
"""
from __future__ import annotations

import functools
import sys
import types

import numpy as np

from kiln.frontend.autograd import no_grad
from kiln.frontend.bytecode import access_chains, cell_value
from kiln.frontend.guards import is_user_code
from kiln.frontend.tensor import Tensor

from .close import to_numpy

_MAX_DEPTH = 12
_SKIP = (type, types.ModuleType, types.BuiltinFunctionType, types.BuiltinMethodType,
         types.CodeType, types.FrameType, types.GeneratorType, str, bytes, int, float, bool,
         complex, type(None), np.ndarray, np.generic)
# NOTE: an nn.Module keeps its parameters, buffers and submodules in these dicts; a path shows
# them as attributes (`model.fc1.weight`), as PyTorch's state_dict keys do.
_MODULE_DICTS = ("_parameters", "_buffers", "_modules")
_SLOTS = tuple(s for s in Tensor.__slots__ if s != "__weakref__")


def roots_of(fn, args, kwargs) -> list[tuple[str, object]]:
    """(name, value) to walk from: the arguments, a partial's arguments, the default values,
    then what the function's code reads."""
    roots = [(f"argument {i}", a) for i, a in enumerate(args)]
    roots += [(f"argument {k!r}", v) for k, v in kwargs.items()]
    inner = fn
    while isinstance(inner, functools.partial):
        roots += [(f"partial argument {i}", a) for i, a in enumerate(inner.args)]
        roots += [(f"partial argument {k!r}", v) for k, v in inner.keywords.items()]
        inner = inner.func
    owner = getattr(inner, "__self__", None)
    if owner is not None and not isinstance(owner, types.ModuleType):
        roots.append(("self", owner))
    if not isinstance(inner, (types.FunctionType, types.MethodType)):
        # NOTE: a callable object: an nn.Module's parameters read `model.0.weight`
        roots.append(("model" if hasattr(inner, "named_parameters") else "callable", inner))
    roots += [(f"default of argument {k!r}", v) for k, v in _defaults(inner)]
    for name, get, _ in bindings_of(fn, set()):
        value = get()
        roots.append((name, value))
        if isinstance(value, types.FunctionType):
            roots += [(f"{name}(default of {k!r})", v) for k, v in _defaults(value)]
    return roots


def _defaults(fn) -> list:
    """(parameter name, default value) of a plain function or method (`__defaults__` and
    `__kwdefaults__`): a default tensor is state every call shares."""
    func = getattr(fn, "__func__", fn)
    if not isinstance(func, types.FunctionType):
        return []
    positional = func.__code__.co_varnames[:func.__code__.co_argcount]
    defaults = func.__defaults__ or ()
    out = list(zip(positional[len(positional) - len(defaults):], defaults))
    return out + list((func.__kwdefaults__ or {}).items())


def bindings_of(fn, seen: set) -> list:
    """(name, getter, setter) of each global and closure variable `fn` reads (of each
    attribute it reads through a user module or class: `ns.buf`), and recursively of those
    the plain user functions among them read (a training step calling a helper that reads
    `model`)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    func = getattr(fn, "__func__", fn)
    code = getattr(func, "__code__", None)
    if code is None and callable(getattr(fn, "forward", None)):
        return bindings_of(fn.forward, seen)      # NOTE: an nn.Module: what forward reads
    if code is None or code in seen or not is_user_code(code):
        return []
    seen.add(code)
    cells = dict(zip(code.co_freevars, func.__closure__ or ()))
    out = []
    for chain in access_chains(code):
        binding = _binding(chain, func.__globals__, cells)
        if binding is None:
            continue
        binding = _through_namespaces(binding, chain.steps)
        if binding is None or any(binding[0] == b[0] for b in out):
            continue
        value = binding[1]()
        if isinstance(value, types.FunctionType):
            out += bindings_of(value, seen)
        out.append(binding)
    return out


def _through_namespaces(binding, steps):
    """Follow a binding whose value is a user module or class along the attributes read
    through it: (name, getter, setter) of `ns.buf`; None when an attribute is missing."""
    name, get, _ = binding
    for kind, attr in steps:
        space = get()
        if kind != "attr" or not _is_user_namespace(space):
            break
        owner = space
        if isinstance(space, type):     # NOTE: a class attribute lives on one class of the MRO
            owner = next((c for c in space.__mro__ if attr in vars(c)), None)
        if owner is None or attr not in vars(owner):
            return None
        name = f"{name}.{attr}"
        get = functools.partial(_read_attr, owner, attr)
        binding = (name, get, functools.partial(setattr, owner, attr))
    return binding


def _read_attr(owner, attr):
    return vars(owner)[attr]


def _is_user_namespace(value) -> bool:
    """A module of the program (not Kiln's, the standard library's or a package's), or a
    class defined in one."""
    if isinstance(value, types.ModuleType):
        return _is_user_module(value)
    return isinstance(value, type) and _is_user_module(sys.modules.get(value.__module__))


def _is_user_module(module) -> bool:
    if module is None:
        return False
    path = getattr(module, "__file__", None)
    if path is None:        # NOTE: made at run time (types.ModuleType) or a namespace package
        return not hasattr(module, "__path__") and module.__name__ not in sys.builtin_module_names
    return is_user_code(types.SimpleNamespace(co_filename=path))


def _binding(chain, fn_globals: dict, cells: dict):
    name = chain.name
    if chain.kind == "global" and name in fn_globals:
        return (name, lambda: fn_globals[name],
                lambda v: fn_globals.__setitem__(name, v))
    if chain.kind == "cell" and name in cells:
        cell = cells[name]
        return (name, lambda: cell_value(cell), lambda v: setattr(cell, "cell_contents", v))
    return None


class World:
    """The tensors and containers reachable from `roots`, each under its best path."""

    def __init__(self, roots):
        self.paths: dict[int, list] = {}     # id(tensor) -> every path (tuple of steps) to it
        self.tensors: dict[int, Tensor] = {}
        self.containers: list = []          # dicts and lists (an object's __dict__ too)
        self.slotted: list = []             # (object, its __slots__ names)
        self._seen: set = set()
        for name, value in roots:
            self._walk(value, (("root", name),), 0)

    def _walk(self, value, path: tuple, depth: int) -> None:
        if isinstance(value, Tensor):
            self.paths.setdefault(id(value), []).append(path)
            if id(value) not in self.tensors:
                self.tensors[id(value)] = value
                if value._grad is not None:
                    self._walk(value._grad, path + (("attr", "grad"),), depth + 1)
            return
        if depth > _MAX_DEPTH or isinstance(value, _SKIP) or id(value) in self._seen:
            return
        slots = [] if isinstance(value, (dict, list, tuple)) else _slot_names(type(value))
        if slots:
            self._seen.add(id(value))
            self._walk_slots(value, slots, path, depth)
            if not hasattr(value, "__dict__"):
                return
        if callable(value) and not hasattr(value, "__dict__"):
            return
        self._seen.add(id(value))
        if isinstance(value, types.MethodType):
            self._walk(value.__self__, path, depth + 1)
        elif isinstance(value, dict):
            self._walk_dict(value, path, depth)
        elif isinstance(value, (list, tuple)):
            if isinstance(value, list):
                self.containers.append(value)
            for i, item in enumerate(value):
                self._walk(item, path + (("item", i),), depth + 1)
        elif hasattr(value, "__dict__") and not isinstance(value, types.FunctionType):
            self._walk_object(value, path, depth)

    def _walk_dict(self, d: dict, path: tuple, depth: int) -> None:
        self.containers.append(d)
        for k, item in list(d.items()):
            if isinstance(k, Tensor):
                self._walk(k, path + (("key", k),), depth + 1)
            self._walk(item, path + (("item", k),), depth + 1)

    def _walk_object(self, obj, path: tuple, depth: int) -> None:
        if type(obj).__name__ in ("JitFunction", "FullGraphFunction"):
            return      # NOTE: the jit's own cache is not the program's state
        attrs = vars(obj)
        self.containers.append(attrs)
        for k, item in list(attrs.items()):
            if k in _MODULE_DICTS and isinstance(item, dict):
                self.containers.append(item)
                for name, sub in list(item.items()):
                    self._walk(sub, path + (("attr", name),), depth + 1)
            else:
                self._walk(item, path + (("attr", k),), depth + 1)
        if _is_user_namespace(type(obj)):
            # NOTE: a tensor on the user's class, read through the object (`self.buf`)
            for k, item in _class_tensors(type(obj)):
                if k not in attrs:
                    self._walk(item, path + (("attr", k),), depth + 1)

    def _walk_slots(self, obj, names: list, path: tuple, depth: int) -> None:
        self.slotted.append((obj, names))
        for k in names:
            try:
                item = object.__getattribute__(obj, k)
            except AttributeError:      # NOTE: a slot never assigned
                continue
            self._walk(item, path + (("attr", k),), depth + 1)

    # ---- naming ---------------------------------------------------------------------------
    def name(self, t: Tensor) -> str:
        """The tensor's most readable path: fewest item steps, then shortest."""
        paths = [p for p in self.paths.get(id(t), ()) if not _has_key(p)] or \
            self.paths.get(id(t), [])
        if not paths:
            return "<a tensor>"
        return min((self.render(p) for p in paths), key=lambda s: (s.count("["), len(s), s))

    def render(self, path: tuple) -> str:
        out = ""
        for kind, k in path:
            if kind == "root":
                out = k
            elif kind == "attr":
                out += f".{k}"
            elif kind == "key":
                out += ".<key>"
            elif isinstance(k, Tensor):
                out += f"[<{self.name(k)}>]"
            else:
                out += f"[{k!r}]"
        return out

    def named_values(self) -> dict[str, np.ndarray]:
        """Every tensor's values (a NumPy copy) under its name."""
        out = {}
        for t in self.tensors.values():
            out.setdefault(self.name(t), to_numpy(t).copy())
        return out


def _slot_names(cls) -> list:
    """The `__slots__` attributes of a user class (and its bases), or [] (Kiln's tensors and
    library objects are not walked through their slots)."""
    if cls is Tensor or not _is_user_namespace(cls):
        return []
    names = []
    for c in cls.__mro__:
        slots = vars(c).get("__slots__", ())
        for k in ([slots] if isinstance(slots, str) else slots):
            if k not in ("__dict__", "__weakref__") and k not in names:
                names.append(k)
    return names


def _class_tensors(cls) -> list:
    """(name, tensor) of the tensors stored on a class and its bases."""
    out, seen = [], set()
    for c in cls.__mro__:
        for k, v in vars(c).items():
            if k not in seen and isinstance(v, Tensor):
                out.append((k, v))
            seen.add(k)
    return out


_UNSET = object()


def _slot_value(obj, k):
    try:
        return object.__getattribute__(obj, k)
    except AttributeError:
        return _UNSET


def _has_key(path: tuple) -> bool:
    return any(kind == "key" or (kind == "item" and isinstance(k, Tensor)) for kind, k in path)


class Snapshot:
    """Everything `World` reached, saved so that `restore()` puts it back: the globals and
    closure variables (`bindings`: name, getter, setter), container contents, each tensor's
    slots (storage, version, grad, history) and values."""

    def __init__(self, world: World, bindings=()):
        self.bindings = [(get(), put) for _, get, put in bindings]
        self.containers = [(c, c.copy()) for c in world.containers]
        self.slotted = [(obj, {k: _slot_value(obj, k) for k in names})
                        for obj, names in world.slotted]
        self.tensors = [(t, {s: getattr(t, s) for s in _SLOTS}, t.detach().clone())
                        for t in world.tensors.values()]

    def restore(self) -> None:
        for value, put in self.bindings:
            put(value)
        for c, saved in self.containers:
            if isinstance(c, list):
                c[:] = saved
            else:
                c.clear()
                c.update(saved)
        for obj, saved in self.slotted:
            for k, v in saved.items():
                if v is _UNSET:
                    if _slot_value(obj, k) is not _UNSET:
                        object.__delattr__(obj, k)
                else:
                    object.__setattr__(obj, k, v)
        for t, slots, _ in self.tensors:
            for s, v in slots.items():
                object.__setattr__(t, s, v)
        with no_grad():
            for t, _, values in self.tensors:
                if not np.array_equal(to_numpy(t), to_numpy(values), equal_nan=True):
                    t.copy_(values)

    def grads_changed(self, world: World) -> bool:
        """Did a `.grad` of a tensor in `world` appear, vanish, get replaced or change
        value since the snapshot (the function ran backward or zero_grad itself)?"""
        grads = {id(t): slots["_grad"] for t, slots, _ in self.tensors}
        values = {id(t): v for t, _, v in self.tensors}
        for t in world.tensors.values():
            g, was = t._grad, grads.get(id(t))
            if g is not was:
                return True
            if g is not None and not np.array_equal(to_numpy(g), to_numpy(values[id(g)]),
                                                    equal_nan=True):
                return True
        return False
