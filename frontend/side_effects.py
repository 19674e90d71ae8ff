"""Which Python side effects a function's bytecode shows (a question `@kiln.jit` asks).

A traced graph replays tensor work only; `print`, logging, writes to globals, closure cells
or attributes, mutation of containers from outside the function, and draws from Python's
random generators (`np.random.*`, the `random` module, a NumPy Generator or RandomState: a
value drawn while tracing would be baked into the graph, and the generator's state would
advance only then) would run only while tracing. `find_side_effects(fn)` lists them with
their source lines, so the JIT re-runs the Python on every call instead (see
frontend/replay.py). It reads instructions; it never interprets them.

    >>> LOG = []
    >>> def f(x):
    ...     print("step")
    ...     LOG.append(x)
    ...     return x
    >>> [e.describe() for e in find_side_effects(f)]  # doctest: +ELLIPSIS
    ['print() at <doctest ...>:2', 'LOG.append() at <doctest ...>:3']
"""
from __future__ import annotations

import builtins
import dataclasses
import dis
import functools
import inspect
import logging
import os
import types

# NOTE: method names that mutate the builtin containers (and deque, queue, file objects).
MUTATORS = frozenset({
    "append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "add",
    "discard", "setdefault", "sort", "reverse", "appendleft", "extendleft", "popleft",
    "put", "put_nowait", "write", "writelines", "__setitem__", "__delitem__",
})
# NOTE: `log` is left out: on a tensor or the kiln module it is the logarithm.
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception",
                         "critical", "fatal"})
_NAME_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_GLOBAL", "LOAD_NAME",
                         "LOAD_DEREF", "LOAD_CLASSDEREF"})
_SIMPLE_LOADS = _NAME_LOADS | {"LOAD_CONST"}


@dataclasses.dataclass(frozen=True)
class SideEffect:
    """One side effect: `kind` (print, logging, global write, closure write, attribute
    write, item write, mutation), the `target` as written, its `root` name and where that
    name lives (`scope`: global, closure, param, or None when unresolved), and the line."""

    kind: str
    target: str
    root: str | None
    scope: str | None
    file: str
    line: int | None

    def describe(self) -> str:
        where = f"{os.path.basename(self.file)}:{self.line}"
        if self.kind == "random draw":
            return f"{self.target}() (a draw from a Python random generator) at {where}"
        if self.kind in ("print", "logging", "mutation"):
            return f"{self.target}() at {where}"
        return f"{self.kind} {self.target} at {where}"


def find_side_effects(fn) -> list[SideEffect]:
    """The side effects in `fn`'s code and the functions and comprehensions defined in it."""
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    scope = _Scope(code, getattr(fn, "__globals__", {}), getattr(fn, "__closure__", None))
    out: list[SideEffect] = []
    for c in _code_objects(code):
        out += _scan(c, scope)
    return out


def frame_side_effects(frame) -> list[SideEffect]:
    """The side effects of the function about to run in `frame` (a helper called while a
    function is traced), less the ones on tensors (`x.add(y)`, `p.grad = None`: graph work)."""
    from .tensor import Tensor
    code = frame.f_code
    scope = _Scope(code, frame.f_globals)
    scope.frame = frame     # NOTE: its closure variables, read only where a draw may be
    out = []
    for e in _scan(code, scope):
        if e.kind in ("mutation", "item write", "attribute write") and e.scope is not None:
            space = frame.f_globals if e.scope == "global" else frame.f_locals
            if isinstance(space.get(e.root), Tensor):
                continue
        out.append(e)
    return out


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


class _Scope:
    """Where a name read in the function lives: its parameters, its closure, globals."""

    def __init__(self, code: types.CodeType, globals_: dict, closure=None):
        n = code.co_argcount + code.co_kwonlyargcount
        n += bool(code.co_flags & inspect.CO_VARARGS) + bool(code.co_flags & inspect.CO_VARKEYWORDS)
        self.params = set(code.co_varnames[:n])
        self.closure = set(code.co_freevars)
        self.globals = globals_
        self.cells = {}     # NOTE: closure name -> value, where known (for random draws)
        self.frame = None
        for name, cell in zip(code.co_freevars, closure or ()):
            try:
                self.cells[name] = cell.cell_contents
            except ValueError:
                pass

    def value(self, ins):
        """The value a global or closure load reads now, or _UNKNOWN."""
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            if ins.argval in self.globals:
                return self.globals[ins.argval]
            return getattr(builtins, ins.argval, _UNKNOWN)
        if ins.opname in ("LOAD_DEREF", "LOAD_CLASSDEREF") and ins.argval in self.closure:
            if self.frame is not None:
                return self.frame.f_locals.get(ins.argval, _UNKNOWN)
            return self.cells.get(ins.argval, _UNKNOWN)
        return _UNKNOWN

    def of(self, op: str, name: str) -> str | None:
        """global, closure or param; None for the function's own locals."""
        if op in ("LOAD_GLOBAL", "LOAD_NAME"):
            return "global"
        if name in self.params:
            return "param"
        if op in ("LOAD_DEREF", "LOAD_CLASSDEREF") and name in self.closure:
            return "closure"
        return None


def _scan(code: types.CodeType, scope: _Scope) -> list[SideEffect]:
    instrs = [i for i in dis.get_instructions(code) if i.opname not in ("CACHE", "EXTENDED_ARG")]
    out = []
    line = code.co_firstlineno
    for k, ins in enumerate(instrs):
        line = _line_of(ins) or line
        found = _effect_at(instrs, k, scope)
        if found is not None:
            kind, target, root, where = found
            out.append(SideEffect(kind, target, root, where, code.co_filename, line))
    return out


def _line_of(ins) -> int | None:
    pos = getattr(ins, "positions", None)
    return pos.lineno if pos is not None and pos.lineno else ins.starts_line


def _effect_at(instrs, k: int, scope: _Scope):
    """(kind, target, root, scope of root) when instruction k is a side effect."""
    ins = instrs[k]
    op, name = ins.opname, ins.argval
    if op in ("LOAD_GLOBAL", "LOAD_NAME") and name == "print":
        return ("print", "print", "print", "global")
    if op in ("STORE_GLOBAL", "DELETE_GLOBAL"):
        return ("global write", name, name, "global")
    if op in ("STORE_DEREF", "DELETE_DEREF") and name in scope.closure:
        return ("closure write", name, name, "closure")
    if op in ("STORE_ATTR", "DELETE_ATTR"):
        return _receiver_effect("attribute write", instrs, k - 1, scope, "." + name, True)
    if op in ("STORE_SUBSCR", "DELETE_SUBSCR"):
        return _item_write(instrs, k, scope, op == "STORE_SUBSCR")
    if op in ("LOAD_ATTR", "LOAD_METHOD") and isinstance(name, str):
        found = _method_effect(instrs, k, scope, name)
        if found is not None:
            return found
    return _random_draw(instrs, k, scope)


def _random_draw(instrs, k: int, scope: _Scope):
    """A call of a random generator's function found at the end of a chain of loads
    (`np.random.rand`, `random.random`, `rng.normal` for a global Generator, `rand` imported
    from numpy.random), its value resolved from the function's globals and closure."""
    if k + 1 < len(instrs) and instrs[k + 1].opname in ("LOAD_ATTR", "LOAD_METHOD"):
        return None     # NOTE: the chain goes on; it is looked at where it ends
    ins = instrs[k]
    if ins.opname not in _NAME_LOADS and not (ins.opname in ("LOAD_ATTR", "LOAD_METHOD")
                                              and isinstance(ins.argval, str)):
        return None
    method = ins.opname == "LOAD_METHOD" or (ins.opname == "LOAD_ATTR" and _is_method_load(ins))
    end = k - 1 if method else k        # NOTE: a method load ends the chain it is called on
    root = _chain_root(instrs, end)
    if root is None:
        return None
    value = scope.value(root)
    text = _chain_text(instrs, end) + (f".{ins.argval}" if method else "")
    if ins is not root:
        for name in text.split(".")[1:]:
            if value is _UNKNOWN or not isinstance(value, (types.ModuleType, _RNG_TYPES())):
                return None     # NOTE: only modules and generators are followed statically
            value = getattr(value, name, _UNKNOWN)
    if not _is_random_draw(value):
        return None
    return ("random draw", text, root.argval, scope.of(root.opname, root.argval))


_UNKNOWN = object()


@functools.cache
def _RNG_TYPES() -> tuple:
    import random

    import numpy as np
    return (random.Random, np.random.RandomState, np.random.Generator)


def _is_random_draw(value) -> bool:
    """A function of numpy.random or of the random module, or a method of a generator
    object (random.Random, NumPy's RandomState or Generator)."""
    if value is _UNKNOWN or isinstance(value, (types.ModuleType, type)) or not callable(value):
        return False
    if isinstance(getattr(value, "__self__", None), _RNG_TYPES()):
        return True
    module = getattr(value, "__module__", None) or ""
    return module == "random" or module == "numpy.random" or module.startswith("numpy.random.")


def _method_effect(instrs, k: int, scope: _Scope, name: str):
    # NOTE: tensors have no method with these names, so any receiver counts (a local
    # `logger = logging.getLogger()` too); `log` only on a logger, see LOG_METHODS.
    if name in LOG_METHODS or (name == "log" and _is_logger(instrs, k - 1, scope)):
        root = _chain_root(instrs, k - 1)
        where = None if root is None else scope.of(root.opname, root.argval)
        return ("logging", _chain_text(instrs, k - 1) + "." + name,
                None if root is None else root.argval, where)
    if name in MUTATORS:
        return _receiver_effect("mutation", instrs, k - 1, scope, "." + name, False)
    return None


def _item_write(instrs, k: int, scope: _Scope, store: bool):
    # NOTE: the stack holds (container, key) below the store; a key of one instruction (a
    # constant or a name) puts the container's chain right before it. A longer key hides the
    # container, so the write is reported unresolved (the JIT then re-runs the Python).
    key = instrs[k - 1]
    if key.opname not in _SIMPLE_LOADS:
        return ("item write", "[...] (target not resolved)", None, None)
    return _receiver_effect("item write", instrs, k - 2, scope, f"[{key.argrepr}]", True)


def _receiver_effect(kind, instrs, j: int, scope: _Scope, suffix: str, unresolved_counts):
    """The effect when the object ending at instruction j lives outside the function."""
    root = _chain_root(instrs, j)
    text = _chain_text(instrs, j) + suffix
    if root is None:
        return (kind, text, None, None) if unresolved_counts else None
    where = scope.of(root.opname, root.argval)
    return None if where is None else (kind, text, root.argval, where)


def _augmented(instrs, j: int) -> int:
    """`a.b += 1` stores through SWAP after `a` COPY 1 LOAD_ATTR b ...: the chain ends
    right before that COPY."""
    if j < 0 or instrs[j].opname != "SWAP":
        return j
    while j >= 0 and not (instrs[j].opname == "COPY" and instrs[j].arg == 1):
        j -= 1
    return j - 1


def _chain_root(instrs, j: int):
    """The name load that starts `a.b.c` ending at instruction j, or None."""
    j = _augmented(instrs, j)
    while j >= 0 and instrs[j].opname == "LOAD_ATTR" and not _is_method_load(instrs[j]):
        j -= 1
    if j >= 0 and instrs[j].opname in _NAME_LOADS:
        return instrs[j]
    return None


def _is_method_load(ins) -> bool:
    return "NULL|self" in ins.argrepr


def _chain_text(instrs, j: int) -> str:
    parts = []
    j = _augmented(instrs, j)
    while j >= 0 and instrs[j].opname == "LOAD_ATTR" and not _is_method_load(instrs[j]):
        parts.append(instrs[j].argval)
        j -= 1
    if j >= 0 and instrs[j].opname in _NAME_LOADS:
        parts.append(instrs[j].argval)
    else:
        parts.append("<expr>")
    return ".".join(reversed(parts))


def _is_logger(instrs, j: int, scope: _Scope) -> bool:
    """The receiver is a global holding the logging module or a Logger."""
    if j < 0 or instrs[j].opname not in ("LOAD_GLOBAL", "LOAD_NAME"):
        return False
    value = scope.globals.get(instrs[j].argval)
    return value is logging or isinstance(value, (logging.Logger, logging.LoggerAdapter)) or (
        isinstance(value, types.ModuleType) and value.__name__ == "warnings")


def effects_for_call(effects, fn, args, kwargs) -> list[SideEffect]:
    """The effects that apply to this call: a mutating method or item write on a tensor
    (`x.add(y)`, `x[0] = 1`) is tensor work the graph records, not a Python side effect."""
    from .tensor import Tensor
    out = []
    for e in effects:
        if e.kind in ("mutation", "item write") and e.scope is not None:
            receiver = _receiver_value(e, _root_value(e, fn, args, kwargs))
            # NOTE: `kiln.sort(x)`, `kiln.add(a, b)`: a module's function, not list.sort
            if isinstance(receiver, Tensor) or (
                    e.kind == "mutation" and isinstance(receiver, types.ModuleType)):
                continue
        out.append(e)
    return out


def _receiver_value(e: SideEffect, root):
    """The object the method is called on (or the item written into): `root` followed along
    the target's attribute chain (`self.buf.append` -> self.buf); None when not readable."""
    parts = e.target.split("[")[0].split(".")
    chain = parts[1:-1] if e.kind == "mutation" else parts[1:]
    for name in chain:
        try:
            root = inspect.getattr_static(root, name)
        except AttributeError:
            return None
        if isinstance(root, (property, types.MemberDescriptorType, types.GetSetDescriptorType)):
            return None
    return root


def _root_value(e: SideEffect, fn, args, kwargs):
    if e.scope == "global":
        return getattr(getattr(fn, "__func__", fn), "__globals__", {}).get(e.root)
    if e.scope == "closure":
        inner = getattr(fn, "__func__", fn)
        cells = dict(zip(inner.__code__.co_freevars, inner.__closure__ or ()))
        try:
            return cells[e.root].cell_contents
        except (KeyError, ValueError):
            return None
    try:
        return inspect.signature(fn).bind_partial(*args, **kwargs).arguments.get(e.root,
                                                                              None)
    except (TypeError, ValueError):
        return getattr(fn, "__self__", None)
