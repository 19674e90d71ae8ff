"""Small bytecode questions the JIT asks (it never interprets bytecode).

`scalar_reads(fn)`: the globals and closure variables that `fn`'s code (and the code of
functions and comprehensions defined inside it) reads, so that their plain Python values can
be guarded: a traced graph bakes such values in as constants.

    >>> SCALE = 2.0
    >>> def f(x):
    ...     return x * SCALE
    >>> [name for name, _ in scalar_reads(f)]
    ['SCALE']
"""
from __future__ import annotations

import types

_MISSING = object()
SCALAR_TYPES = (bool, int, float, complex, str, bytes, type(None))


def is_scalar(value) -> bool:
    """A plain Python value a graph would bake in (tuples of them too)."""
    if isinstance(value, tuple):
        return all(is_scalar(v) for v in value)
    return isinstance(value, SCALAR_TYPES)


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def scalar_reads(fn) -> list[tuple[str, object]]:
    """(name, getter) for each global or closure variable the code reads; `getter()` returns
    its current value. Only names that hold plain scalars when asked are guarded later."""
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    names = sorted({n for c in _code_objects(code) for n in c.co_names})
    globals_ = getattr(fn, "__globals__", {})
    reads = [(n, (lambda n=n: globals_.get(n, _MISSING))) for n in names if n in globals_]
    cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
    reads += [(n, (lambda c=c: _cell_value(c))) for n, c in sorted(cells.items())]
    return reads


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:          # NOTE: a closure variable not assigned yet
        return _MISSING


def module_state(module) -> tuple:
    """The plain attributes of an nn.Module (training, p, eps, ...), for a guard."""
    return tuple((k, v) for k, v in module.__dict__.items()
                 if not k.startswith("_") and is_scalar(v))
