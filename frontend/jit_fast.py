"""The fast path of a `@kiln.jit` call: the last cache key that hit, as one Python function.

Building the full cache key costs microseconds per argument and per read (`_flatten`, a
frozen value per global, a tuple compare). Most calls repeat the previous call's key, so once
a key hits, `fast_check` writes a function that checks that same key directly (argument
structure, tensor guards, grad mode, each read, the defaults) and then the entry's own guards,
and returns the call's tensor leaves, or None when anything differs. None sends the call down
the ordinary path, which decides; so the fast check only has to be exact when it says yes.

For an entry whose call is only its executable on the argument arrays (one new output,
nothing written, no backward), `fast_direct` writes the same guards followed by the call
itself: the arrays go to the executable's runner without its input checks, which the guards
have just made (W6: 5.6 -> 4.1 µs per call on a slow host, one Python frame and one list
fewer, the input checks once instead of twice).

A read's value is compared by identity to the object read when the check was written where
that implies the same frozen value (immutable scalars, modules, classes, nn.Modules, a plain
function whose defaults tuple is the same immutable one), and frozen again otherwise.

    >>> import kiln
    >>> f = kiln.jit(lambda x: x + 1)
    >>> x = kiln.ones(2)
    >>> _ = f(x); _ = f(x)              # the second call wrote the check
    >>> f._fast[0]((x,), {}) == [x], f._fast[0]((kiln.ones(3),), {})
    (True, None)
"""
from __future__ import annotations

import functools
import keyword
import types

import numpy as np

from . import autograd
from .bytecode import MISSING, SCALAR_TYPES, cell_value, is_scalar, param_getters
from .guards import (_IDENTITY_TYPES, _freeze_object, _module_type, defaults_key, freeze,
                     static_spec)
from .tensor import Tensor


class _Unsupported(Exception):
    """A key shape the fast check does not write code for (the ordinary path runs)."""


class _Writer:
    def __init__(self, fail: str = "None"):
        self.lines: list[str] = []
        self.consts: dict = {}
        self.leaves: list[str] = []
        self.names: dict = {}       # (root kind, root name, steps...) -> variable
        self.fail = fail            # what the function returns when a guard fails
        self.flags: set = set()     # variables already written (see _prefix)

    def const(self, value) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def line(self, text: str, depth: int = 1) -> None:
        self.lines.append("    " * depth + text)

    def fail_unless(self, cond: str) -> None:
        self.line(f"if not ({cond}): return {self.fail}")


def fast_check(jitfn, key, call, entry):
    """A function `(args, kwargs) -> tensor leaves | None` that says yes only for calls with
    this `key` whose `entry` guards hold; None when the key has a shape it does not handle."""
    w = _Writer()
    try:
        _write(w, jitfn, key, call, entry)
    except Exception:   # NOTE: _Unsupported, or a callable without code: the ordinary path
        return None
    source = "def check(args, kwargs):\n" + "\n".join(w.lines) + "\n"
    scope = dict(w.consts, MISSING=MISSING, Tensor=Tensor, freeze=freeze)
    exec(compile(source, f"<kiln fast check of {jitfn.name}>", "exec"), scope)
    check = scope["check"]
    check.source = source
    return check


# NOTE: what a direct call returns when the call is not the one it was written for
MISS = object()


def fast_direct(jitfn, key, call, entry):
    """A function `(args, kwargs) -> result | MISS`: `fast_check`'s guards, then, when they
    hold, the call itself, for an entry whose call is only its executable on the argument
    tensors' arrays (`_Compiled._simple`: one new output, nothing written, no backward): the
    arrays go straight to the executable's runner without its input checks (the guards made
    them: each array's type, shape, strides and dtype), and its output is wrapped. None where
    that does not apply (the check and the entry's own call then run)."""
    run = entry._run if entry._run is not None else entry._bind_run()
    exe = entry.executable
    unchecked = getattr(exe, "unchecked_runner", None)
    if not entry._simple or run is not getattr(exe, "runner", None) or unchecked is None or \
            any(g[4] is not np.ndarray for g in key[1]):
        return None
    specs = getattr(exe, "_input_specs", None)
    if specs is None or len(specs) != len(key[1]) or exe._xp.ndarray is not np.ndarray or \
            not all(_takes_as_is(g, spec) for g, spec in zip(key[1], specs)):
        return None
    unchecked = unchecked()
    if unchecked is None or len(exe.input_slots) != len(key[1]):
        return None
    w = _Writer(fail="MISS")
    try:
        _write(w, jitfn, key, call, entry, direct=True)
    except Exception:
        return None
    datas = ", ".join(f"d_{t}" for t in w.leaves)
    w.line(f"return WRAP(RUN({datas})[0])")
    source = "def direct(args, kwargs):\n" + "\n".join(w.lines) + "\n"
    scope = dict(w.consts, MISSING=MISSING, MISS=MISS, Tensor=Tensor, freeze=freeze,
                 RUN=unchecked, WRAP=Tensor._wrap)
    exec(compile(source, f"<kiln direct call of {jitfn.name}>", "exec"), scope)
    direct = scope["direct"]
    direct.source = source
    return direct


def _takes_as_is(guard, spec) -> bool:
    """Does an array the tensor guard accepts pass the executable's input check unchanged?
    (its shape, dtype and C-contiguous strides: a view's array, say a transpose or an
    expand, is made contiguous by that check, which the direct call skips)"""
    dtype, shape, strides, _, kind = guard
    want_shape, want_dtype, _, want_strides = spec
    return kind is np.ndarray and tuple(shape) == tuple(want_shape) and \
        tuple(strides) == tuple(want_strides) and np.dtype(dtype) == np.dtype(want_dtype)


def _write(w: _Writer, jitfn, key, call, entry, direct: bool = False) -> None:
    _structure(w, key[0], "args", "kwargs")
    for name, guard in zip(w.leaves, key[1]):
        _tensor(w, name, guard)
    # NOTE: autograd.is_grad_enabled() without its call (the state is per thread)
    w.fail_unless(f"{w.const(autograd._state)}.enabled is {key[2]!r}")
    roots = _roots(jitfn.fn)
    if len(key[3]) < len(jitfn.reads):
        raise _Unsupported
    for r, (label, frozen) in zip(jitfn.reads, key[3]):
        if label != r.label:
            raise _Unsupported
        _read(w, r, call, frozen, roots)
    defaults = key[3][len(jitfn.reads):]
    _defaults(w, jitfn.fn, defaults[0][1] if defaults else None)
    leaves = "[" + ", ".join(w.leaves) + "]"
    _entry_guards(w, entry, leaves, call)
    if not direct:
        w.line(f"return {leaves}")


def _structure(w: _Writer, spec, args: str, kwargs: str) -> None:
    if spec[0] != "tuple" or len(spec[1]) != 2:
        raise _Unsupported
    _node(w, spec[1][0], args)
    _node(w, spec[1][1], kwargs)


def _node(w: _Writer, spec, expr: str) -> None:
    kind = spec[0]
    if kind == "T":
        name = f"t{len(w.leaves)}"
        w.line(f"{name} = {expr}")
        w.fail_unless(f"isinstance({name}, Tensor)")
        w.leaves.append(name)
    elif kind in ("tuple", "list"):
        w.fail_unless(f"type({expr}) is {kind} and len({expr}) == {len(spec[1])}")
        for i, sub in enumerate(spec[1]):
            _node(w, sub, f"{expr}[{i}]")
    elif kind == "dict":
        w.fail_unless(f"type({expr}) is dict and len({expr}) == {len(spec[1])}")
        for k, sub in spec[1]:
            if not isinstance(k, str):
                raise _Unsupported
            _node(w, sub, f"{expr}.get({k!r}, MISSING)")
    elif kind == "S":
        value = spec[2]
        if type(value) in (int, str, bool, type(None)):
            w.fail_unless(f"type({expr}) is {w.const(type(value))} and {expr} == "
                          f"{w.const(value)}")
        else:
            w.fail_unless(f"{w.const(static_spec)}({expr}) == {w.const(spec)}")
    else:
        raise _Unsupported


def _tensor(w: _Writer, name: str, guard) -> None:
    dtype, shape, strides, requires_grad, kind = guard
    d = f"d_{name}"
    w.line(f"{d} = {name}._data")
    # NOTE: the array's type too: a CUDA tensor's DeviceArray has NumPy's shape and strides
    w.fail_unless(f"type({d}) is {w.const(kind)} and {d}.shape == {shape!r} and {d}.strides "
                  f"== {strides!r} and {d}.dtype == {w.const(dtype)} and {name}._requires_grad "
                  f"== {requires_grad!r}" + _NOT_A_VIEW_COPY.format(name) * (kind is not np.ndarray))


# NOTE: a CUDA view's copy (frontend/cuda_eager.py) runs eagerly, where its use is checked
_NOT_A_VIEW_COPY = " and {}._copy_of is None"


def _read(w: _Writer, read, call, frozen, roots: dict) -> None:
    """The read's value now (roots and shared prefixes computed once per check), compared
    with what was read for the key."""
    chain = read.chain
    if chain.kind == "global":      # NOTE: the dict's get itself, not a partial of it
        root = f"{w.const(roots['globals dict'])}.get({chain.name!r}, MISSING)"
    else:
        root = f"{w.const(roots[chain.kind][chain.name])}({_ROOT_ARG[chain.kind]})"
    v = _prefix(w, (chain.kind, chain.name), root, chain.steps)
    value = read.get(call)
    if freeze(value) != frozen:     # NOTE: changed since the key was made: no shortcut
        raise _Unsupported
    same = _same_value(w, v, value, frozen)
    if same is None:
        w.fail_unless(f"freeze({v}) == {w.const(frozen)}")
    else:
        w.fail_unless(f"({same}) or freeze({v}) == {w.const(frozen)}")


def _same_value(w: _Writer, v: str, value, frozen, depth: int = 0) -> str | None:
    """A condition on the expression `v` that implies freeze(v) == frozen, made of identity
    tests (the value read when the check was written is `value`); None where identity says
    nothing (containers, objects holding tensors: their contents are frozen)."""
    if _identity_decides(value, frozen):
        return f"{v} is {w.const(value)}"
    t = type(value)
    if t is types.FunctionType and _plain_defaults(value):
        return (f"{v} is {w.const(value)} and {v}.__defaults__ is "
                f"{w.const(value.__defaults__)} and {v}.__kwdefaults__ is None")
    if t is types.MethodType and depth == 0:
        func = _same_value(w, f"{v}.__func__", value.__func__, freeze(value.__func__), 1)
        owner = _same_value(w, f"{v}.__self__", value.__self__, freeze(value.__self__), 1)
        if func is not None and owner is not None:
            return f"type({v}) is {w.const(t)} and {func} and {owner}"
        return None
    attrs = getattr(value, "__dict__", None)
    if type(attrs) is dict and not isinstance(value, (list, tuple, dict)) and \
            not any(isinstance(x, Tensor) for x in attrs.values()) and \
            _freeze_object_key(value) == frozen:
        # NOTE: freeze keeps an object by identity plus its scalar attributes: the same
        # object whose attributes are all the same objects freezes the same
        d = f"{v}.__dict__"
        items = "".join(f" and {d}.get({k!r}, MISSING) is {w.const(x)}" for k, x in attrs.items()
                        if isinstance(k, str))
        return f"{v} is {w.const(value)} and len({d}) == {len(attrs)}{items}"
    return None


def _freeze_object_key(value):
    """What freeze gives when it keeps `value` as an object (identity plus scalar
    attributes); compared with the key's frozen value, it tells that freeze took that path."""
    try:
        return _freeze_object(value, 0)
    except Exception:
        return None


def _prefix(w: _Writer, root_key, root_code: str, steps: tuple) -> str:
    """The variable holding the root walked through `steps` (each prefix computed once per
    check)."""
    key = (root_key,) + steps
    name = w.names.get(key)
    if name is not None:
        return name
    if not steps:
        name = w.names[key] = f"v{len(w.names)}"
        w.line(f"{name} = {root_code}")
        return name
    prev = _prefix(w, root_key, root_code, steps[:-1])
    name = w.names[key] = f"v{len(w.names)}"
    kind, k = steps[-1]
    if kind == "attr":
        step = f"{prev}.{k}" if k.isidentifier() and not keyword.iskeyword(k) else \
            f"getattr({prev}, {k!r})"
    else:
        step = f"{prev}[{w.const(k)}]"
    # NOTE: guards.walk exactly: a tensor or a missing value ends the walk, a failing step
    # gives the missing value (whether `prev` ends it is found once, for all its steps)
    ends = f"e_{prev}"
    if ends not in w.flags:
        w.flags.add(ends)
        w.line(f"{ends} = {prev} is MISSING or isinstance({prev}, Tensor)")
    w.line(f"if {ends}: {name} = {prev}")
    w.line("else:")
    w.line("try:", 2)
    w.line(f"{name} = {step}", 3)
    w.line("except Exception:", 2)
    w.line(f"{name} = MISSING", 3)
    return name


_ROOT_ARG = {"global": "", "cell": "", "arg": "(args, kwargs)"}


def _roots(fn) -> dict:
    """kind -> name -> a function giving that root's value now (the call, for parameters)."""
    func = getattr(fn, "__func__", fn)
    fn_globals = func.__globals__
    cells = dict(zip(func.__code__.co_freevars, func.__closure__ or ()))

    class _Globals(dict):
        def __missing__(self, name):
            return functools.partial(fn_globals.get, name, MISSING)

    class _Cells(dict):
        def __missing__(self, name):
            return functools.partial(cell_value, cells[name])
    return {"global": _Globals(), "cell": _Cells(), "arg": param_getters(fn),
            "globals dict": fn_globals}


def _identity_decides(value, frozen) -> bool:
    """Does `v is value` imply freeze(v) == frozen? (immutable values, and those freeze keeps
    by identity)."""
    if value is MISSING or type(value) in SCALAR_TYPES:
        return True
    return isinstance(value, _IDENTITY_TYPES + (_module_type(),)) and (
        frozen is value or getattr(frozen, "obj", None) is value)


def _plain_defaults(fn) -> bool:
    return fn.__kwdefaults__ is None and (fn.__defaults__ is None or is_scalar(fn.__defaults__))


def _defaults(w: _Writer, fn, frozen) -> None:
    func = getattr(fn, "__func__", fn)
    if frozen is None:
        w.fail_unless(f"{w.const(func)}.__defaults__ is None and "
                      f"{w.const(func)}.__kwdefaults__ is None")
    else:
        w.fail_unless(f"{w.const(defaults_key)}({w.const(fn)}) == {w.const(frozen)}")


def _entry_guards(w: _Writer, entry, leaves: str, call) -> None:
    """The entry's own guards (frontend/entry_guards.py): written out for the modules it
    called, the captured tensors it re-reads at their paths and its extra checks; helper
    reads and `.grad` guards take the entry's own check."""
    g = entry.sources.guards
    if entry.effects.grad_guards:
        w.fail_unless(f"{w.const(entry)}.guards_hold((args, kwargs), {leaves})")
        return
    for read, want in g.checks:
        _helper_read(w, read, want, call)
    for m, _, paths in g.modules:
        for path in paths:
            w.fail_unless(f"{_path(w, path)} is {w.const(m)}")
        _same_attributes(w, m)
    for t, (shape, dtype, requires_grad, kind) in g.fixed:
        t = w.const(t)
        w.fail_unless(f"type({t}._data) is {w.const(kind)} and {t}._data.shape == {shape!r} "
                      f"and {t}._data.dtype == {w.const(dtype)} and {t}._requires_grad == "
                      f"{requires_grad!r}")
    for check, _ in entry.extra_guards:
        w.fail_unless(f"{w.const(check)}()")
    for i, paths, guard in g.bindings:
        _binding(w, g, i, paths, guard)


def _helper_read(w: _Writer, read, want, call) -> None:
    """A read of a helper function the trace ran (its getter resolves the whole chain)."""
    v = f"h{len(w.names)}"
    w.names[("helper", id(read))] = v
    w.line(f"{v} = {w.const(read.get)}((args, kwargs))")
    value = read.get(call)
    if freeze(value) != want:
        raise _Unsupported
    same = _same_value(w, v, value, want)
    w.fail_unless(f"freeze({v}) == {w.const(want)}" if same is None else
                  f"({same}) or freeze({v}) == {w.const(want)}")


def _path(w: _Writer, path) -> str:
    root, steps, _ = path
    return _prefix(w, ("path", id(root)), f"{w.const(root)}((args, kwargs))", steps)


def _same_attributes(w: _Writer, m) -> None:
    """Every attribute of module `m` is the object it is now: then its plain attributes (the
    module guard, bytecode.module_state) are what the ordinary path just checked."""
    d = m.__dict__
    items = " and ".join(f"d.get({k!r}, MISSING) is {w.const(v)}" for k, v in d.items())
    w.line(f"d = {w.const(m)}.__dict__")
    w.fail_unless(f"len(d) == {len(d)}" + (f" and {items}" if items else ""))


def _binding(w: _Writer, g, i: int, paths, guard) -> None:
    """A captured tensor re-read at its path: the same type of tensor as traced, and the
    same object at every other path where the trace found it; bound as input i."""
    shape, dtype, requires_grad, kind = guard
    t = _path(w, paths[0])
    w.fail_unless(f"isinstance({t}, Tensor) and {t}._trace is None and type({t}._data) is "
                  f"{w.const(kind)} and {t}._data.shape == {shape!r} and {t}._data.dtype == "
                  f"{w.const(dtype)} and {t}._requires_grad == {requires_grad!r}"
                  + _NOT_A_VIEW_COPY.format(t) * (kind is not np.ndarray))
    for path in paths[1:]:
        w.fail_unless(f"{_path(w, path)} is {t}")
    w.line(f"if {w.const(g.current)}.get({i}) is not {t}: {w.const(g.bind)}({i}, {t})")


