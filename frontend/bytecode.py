"""Small bytecode questions the JIT asks (it never interprets bytecode).

`access_chains(code)`: where a code object reads an outside value, as a root (a global, a
closure variable or a parameter) plus the constant attribute and item steps applied to it,
with the source line. A traced graph bakes such values in, so each becomes a guard.

    >>> def make(cfg):
    ...     return lambda x: x * cfg["lr"] + SCALE
    >>> [(c.kind, c.name, c.steps) for c in access_chains(make({}).__code__)]
    [('cell', 'cfg', (('item', 'lr'),)), ('global', 'SCALE', ())]
"""
from __future__ import annotations

import dis
import functools
import types
from typing import NamedTuple

SCALAR_TYPES = (bool, int, float, complex, str, bytes, type(None))
MISSING = type("Missing", (), {"__repr__": lambda self: "<unset>"})()

_ROOTS = {"LOAD_GLOBAL": "global", "LOAD_DEREF": "cell", "LOAD_FAST": "arg",
          "LOAD_FAST_CHECK": "arg", "LOAD_CLASSDEREF": "cell"}
_ATTRS = ("LOAD_ATTR", "LOAD_METHOD")


class Chain(NamedTuple):
    """A read of `root.step.step...`: kind is 'global', 'cell' or 'arg'; each step is
    ('attr', name) or ('item', constant key)."""

    kind: str
    name: str
    steps: tuple
    file: str
    line: int

    def text(self) -> str:
        return self.name + "".join(f".{k}" if s == "attr" else f"[{k!r}]" for s, k in self.steps)


def is_scalar(value) -> bool:
    """A plain Python value a graph would bake in (tuples of them too)."""
    if isinstance(value, tuple):
        return all(is_scalar(v) for v in value)
    return isinstance(value, SCALAR_TYPES)


def code_objects(code: types.CodeType):
    """`code` and every code object nested in it (inner functions, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from code_objects(const)


def access_chains(code: types.CodeType, params: tuple = (), nested: bool = True) -> list[Chain]:
    """The outside reads of `code` (and of its nested code objects when `nested`), in order
    and without repeats. Closure roots are `code`'s free variables; parameters in `params`
    are roots only in `code` itself (nested code has its own locals)."""
    out: dict = {}
    for c in (code_objects(code) if nested else (code,)):
        roots = {"global": None, "cell": set(code.co_freevars),
                 "arg": set(params) if c is code else set()}
        for chain in _chains(c, roots):
            out.setdefault(chain[:3], chain)
    return list(out.values())


def _chains(code: types.CodeType, roots: dict):
    insts = [i for i in dis.get_instructions(code) if i.opname not in ("CACHE", "PRECALL")]
    for n, inst in enumerate(insts):
        kind = _ROOTS.get(inst.opname)
        allowed = roots.get(kind, ())
        if kind is None or (allowed is not None and inst.argval not in allowed):
            continue
        steps = _steps(insts, n + 1)
        if kind == "arg" and not steps:
            continue   # NOTE: a parameter as a whole is the argument itself, guarded already
        line = inst.positions.lineno if inst.positions else None
        yield Chain(kind, inst.argval, steps, code.co_filename, line or code.co_firstlineno)


def _steps(insts: list, n: int) -> tuple:
    """The constant attribute and item accesses that directly follow a root load."""
    steps = []
    while n < len(insts):
        inst = insts[n]
        if inst.opname in _ATTRS and isinstance(inst.argval, str):
            steps.append(("attr", inst.argval))
            n += 1
        elif (inst.opname == "LOAD_CONST" and n + 1 < len(insts)
              and insts[n + 1].opname == "BINARY_SUBSCR" and _hashable(inst.argval)):
            steps.append(("item", inst.argval))
            n += 2
        else:
            break
    return tuple(steps)


def _hashable(value) -> bool:
    return isinstance(value, (int, str, bytes, bool, type(None))) or (
        isinstance(value, tuple) and all(_hashable(v) for v in value))


# ---- reading a root again at call time ---------------------------------------------------
def cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:          # NOTE: a closure variable not assigned yet
        return MISSING


def param_getters(fn) -> dict:
    """name -> function of the call returning that parameter's value (given or default)."""
    func = getattr(fn, "__func__", fn)
    code = getattr(func, "__code__", None)
    if code is None:
        return {}
    names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    out = {}
    bound = getattr(fn, "__self__", MISSING) if isinstance(fn, types.MethodType) else MISSING
    shift = 1 if bound is not MISSING else 0
    if shift:
        out[names[0]] = lambda call: bound
    for i, name in enumerate(names[shift:code.co_argcount]):
        out[name] = functools.partial(_positional, func, i, i + shift, name)
    for name in names[code.co_argcount:]:
        out[name] = functools.partial(_keyword_only, func, name)
    return out


def _positional(func, i: int, slot: int, name: str, call):
    if call is None:
        return MISSING
    args, kwargs = call
    if i < len(args):
        return args[i]
    if name in kwargs:
        return kwargs[name]
    defaults = func.__defaults__ or ()
    j = slot - (func.__code__.co_argcount - len(defaults))
    return defaults[j] if j >= 0 else MISSING


def _keyword_only(func, name: str, call):
    if call is None:
        return MISSING
    if name in call[1]:
        return call[1][name]
    return (func.__kwdefaults__ or {}).get(name, MISSING)


def module_state(module) -> tuple:
    """The plain attributes of an nn.Module (training, p, eps, ...), keyed by type and value
    for a guard (so `p=0` and `p=0.0`, or `0.0` and `-0.0`, differ)."""
    from .guards import Typed
    return tuple((k, Typed(v)) for k, v in module.__dict__.items()
                 if not k.startswith("_") and is_scalar(v))
