"""Per-entry guards of `@kiln.jit`: what one compiled trace depends on beyond its cache key.

Helper functions' reads, the nn.Modules the trace called (by identity at the path where they
were found, and their plain attributes) and the captured tensors, re-read at their path at
every call (see frontend/guards.py for the reads that form the cache key).
"""
from __future__ import annotations

import types

import numpy as np

from .bytecode import SCALAR_TYPES, module_state, param_getters
from .guards import _IDENTITY_TYPES, _MAX_DEPTH, _MAX_ITEMS, _module_type, walk
from .tensor import Tensor


class GuardFailure:
    """Why no cache entry matched (for the recompile-limit warning)."""

    def __init__(self, text: str):
        self.text = text


class InputSources(list):
    """Where each graph input comes from, plus the guards under which the graph is valid."""

    guards: "EntryGuards"
    plain = False       # NOTE: True when input k is argument leaf k, for every input


class EntryGuards:
    """What one compiled trace depends on beyond its cache key, checked at every call.

    - helper reads: (Read, frozen value at trace time);
    - modules the trace called: (module, plain attributes, paths where it must still be);
    - captured tensors: re-read from the path where the trace found them (`bindings`), or,
      with no path, the same object with the same (shape, dtype, requires_grad)."""

    def __init__(self, trace, sources: list):
        origin = getattr(trace, "origin", None)
        call = (origin[1], origin[2]) if origin else None
        helpers = getattr(trace, "helpers", None)
        self.checks = list(helpers.reads) if helpers else []
        found = _explore_roots(origin, self.checks, call)
        self.modules = [(m, state, found.get(id(m), [])) for m, state in trace.modules.values()]
        self.bindings, self.fixed = [], []
        for i, (kind, t, guard) in enumerate(sources):
            paths = [p for p in found.get(id(t), ()) if _resolve(p, call) is t]
            if kind == "capture" and paths:
                self.bindings.append((i, paths, guard))
            elif kind == "capture":
                self.fixed.append((t, guard))
        self.sources = sources
        self.current = {i: sources[i][1] for i, _, _ in self.bindings}

    def holds(self, call) -> bool:
        return self._failure(call) is None

    def failure(self, call) -> str:
        """The first guard that fails for this call, in words, with its source line."""
        what = self._failure(call)
        if what is None:
            return "no guard failed"
        kind, obj, detail = what
        if kind == "read":
            return f"the {obj.label} guard failed: now {detail!r}"
        if kind == "module":
            return f"the {type(obj).__name__} module guard failed ({detail})"
        return f"the captured tensor guard failed ({detail})"

    def _failure(self, call):
        for read, want in self.checks:
            now = read.frozen(call)
            if now != want:
                return ("read", read, now)
        for m, state, paths in self.modules:
            if any(_resolve(p, call) is not m for p in paths):
                return ("module", m, f"replaced at {_path_text(paths[0])}")
            if module_state(m) != state:
                return ("module", m, "its plain attributes changed")
        for t, guard in self.fixed:
            if tensor_type(t) != guard:
                return ("tensor", t, "shape, dtype, requires_grad or device changed")
        return self._bind(call)

    def _bind(self, call):
        """Re-read the captured tensors bound to paths; they become this call's inputs."""
        for i, paths, guard in self.bindings:
            t = _resolve(paths[0], call)
            if not isinstance(t, Tensor) or t._trace is not None or tensor_type(t) != guard:
                return ("tensor", t, f"{_path_text(paths[0])}: now {_describe(t)}")
            if any(_resolve(p, call) is not t for p in paths[1:]):
                return ("tensor", t, f"{_path_text(paths[0])} is no longer the same tensor "
                                     f"as {_path_text(paths[1])}")
            if self.current[i] is not t:
                self.bind(i, t)
        return None

    def bind(self, i: int, t: Tensor) -> None:
        """Make `t` graph input i (a captured tensor found at its path for this call)."""
        self.current[i] = t
        # NOTE: the sources list is the entry's: later readers of it (the profile in
        # bench/harness.py) see the tensor bound now, not the one traced.
        self.sources[i] = ("capture", t, self.sources[i][2])

    def tensors(self, leaves) -> list:
        """Per graph input, the Tensor bound to it for the call last checked."""
        out = []
        for i, (kind, ref, _) in enumerate(self.sources):
            if kind == "arg":
                out.append(leaves[ref])
            elif kind == "capture":
                out.append(self.current.get(i, ref))
            elif kind == "grad":
                out.append(out[ref]._grad)      # NOTE: the owner's .grad at this call
            else:
                out.append(None)
        return out


def tensor_type(t) -> tuple:
    """A captured tensor's guard: shape, dtype, requires_grad, storage type (None for a CUDA
    view's copy: never the traced tensor's)."""
    return (t._data.shape, t._data.dtype, t._requires_grad,
            type(t._data) if t._copy_of is None else None)


def _describe(t) -> str:
    if isinstance(t, Tensor) and t._trace is None:
        return f"{t._data.dtype}{list(t._data.shape)}, requires_grad={t._requires_grad}"
    return f"a {type(t).__name__}"


def _resolve(path, call):
    root, steps, _ = path
    return walk(root(call), steps)


def _path_text(path) -> str:
    _, steps, label = path
    return label + "".join(f".{k}" if s == "attr" else f"[{k!r}]" for s, k in steps)


def _explore_roots(origin, checks, call) -> dict:
    """id(tensor or module) -> [paths]: where each outside tensor and module can be read
    again at the next call. A path is (root getter, steps, label)."""
    roots = []
    if origin is not None:
        jitfn = origin[0]
        fn = jitfn.fn
        roots.append((lambda call: fn, "the jitted callable"))
        roots += [(r.get, r.chain.text()) for r in jitfn.reads]
        roots += [(g, f"argument {name}") for name, g in param_getters(fn).items()]
    roots += [(r.get, r.chain.text()) for r, _ in checks]
    found: dict = {}
    seen: set = set()
    for get, label in roots:
        _explore(get(call), get, (), label, found, seen, 0)
    return found


def _explore(v, root, steps, label, found, seen, depth) -> None:
    if isinstance(v, Tensor):
        if v._trace is None:
            found.setdefault(id(v), []).append((root, steps, label))
        return
    is_module = isinstance(v, _module_type())
    if is_module:
        found.setdefault(id(v), []).append((root, steps, label))
    if depth > 2 * _MAX_DEPTH or id(v) in seen or len(seen) > 50 * _MAX_ITEMS:
        return
    if isinstance(v, SCALAR_TYPES + _IDENTITY_TYPES + (np.ndarray, np.generic)) and not is_module:
        return
    seen.add(id(v))
    for step, x in _children(v, is_module):
        _explore(x, root, steps + (step,), label, found, seen, depth + 1)


def _children(v, is_module: bool):
    """(step, value) for the parts of v where a tensor or module may live."""
    if is_module:
        d = v.__dict__
        tables = [d.get(t, {}) for t in ("_parameters", "_buffers", "_modules")]
        return [(("attr", k), x) for table in tables for k, x in table.items()] + [
            (("attr", k), x) for k, x in d.items() if not k.startswith("_")]
    if isinstance(v, (list, tuple)) and len(v) <= _MAX_ITEMS:
        return [(("item", i), x) for i, x in enumerate(v)]
    if isinstance(v, dict) and len(v) <= _MAX_ITEMS:
        return [(("item", k), x) for k, x in v.items() if isinstance(k, (str, int))]
    if isinstance(v, types.MethodType):
        return [(("attr", "__self__"), v.__self__)]
    if isinstance(v, types.FunctionType):
        return [(("attr", "__defaults__"), v.__defaults__),
                (("attr", "__kwdefaults__"), v.__kwdefaults__)]
    attrs = getattr(v, "__dict__", None)
    if not isinstance(attrs, dict):
        return []
    return [(("attr", k), x) for k, x in attrs.items()]


