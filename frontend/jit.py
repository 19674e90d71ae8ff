"""`@kiln.jit`: trace a function into an ir.Graph, optimize, compile, cache per guard set.

Guards: tensor shapes, dtypes and requires_grad, static argument values and grad mode (the
cache key), plus the types of captured outside tensors (checked per call). A failed guard
retraces; past `recompile_limit` traces Kiln warns, naming the guard, and runs eagerly.
Where tracing cannot proceed (`.item()`, `bool(t)`) or compilation fails, Kiln warns and runs
the function eagerly: slower, never wrong.
"""
from __future__ import annotations

import functools
import inspect
import warnings

import numpy as np

from kiln.ir.errors import KilnError

from . import autograd
from .bytecode import is_scalar, module_state, scalar_reads
from .creation import SEEDS
from .jit_grad import JitBackward, differentiable_inputs
from .tensor import Tensor
from .trace import GraphBreak, Trace, current_trace, tracing


class KilnJitWarning(UserWarning):
    """Kiln ran a jitted function eagerly instead (with the reason)."""


# ---- argument trees -------------------------------------------------------------------------
def _flatten(obj, leaves: list):
    """(structure spec, appending Tensors to `leaves`); non-tensors are static."""
    if isinstance(obj, Tensor):
        leaves.append(obj)
        return ("T",)
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(_flatten(o, leaves) for o in obj))
    if isinstance(obj, dict):
        return ("dict", tuple((k, _flatten(v, leaves)) for k, v in sorted(obj.items())))
    try:
        hash(obj)
    except TypeError:
        raise KilnError(f"@kiln.jit: argument of type {type(obj).__name__} is neither a "
                        "tensor nor a hashable static value") from None
    return ("S", type(obj).__name__, obj)


def _unflatten(spec, leaves):
    return _build(spec, iter(leaves))


def _build(s, it):
    # NOTE: a module-level recursion, not a nested closure: a recursive closure is a reference
    # cycle that would keep every output array alive until the next garbage collection.
    if s[0] == "T":
        return next(it)
    if s[0] in ("list", "tuple"):
        items = [_build(x, it) for x in s[1]]
        return items if s[0] == "list" else tuple(items)
    if s[0] == "dict":
        return {k: _build(v, it) for k, v in s[1]}
    return s[2]


def _tensor_guard(t: Tensor):
    # NOTE: the NumPy dtype and shape directly: this runs for every argument of every call.
    return (t._data.dtype, t._data.shape, t._requires_grad)


_GUARD_NAMES = ("argument structure or static values", "tensor (dtype, shape, requires_grad)",
                "grad mode", "global or closure value")


def _describe_guard(old, new) -> str:
    """Which part of the cache key changed since the last trace."""
    for name, a, b in zip(_GUARD_NAMES, old, new):
        if a != b:
            return f"the {name} guard failed: {a!r} -> {b!r}"
    return "a captured tensor's shape, dtype or requires_grad, or a module's attributes, changed"


# ---- cache entries --------------------------------------------------------------------------
class _Compiled:
    """A traced and compiled function: binds inputs, runs the executable, rebuilds outputs."""

    def __init__(self, trace: Trace, out_spec, graph, executable, stages):
        self.sources = _input_sources(trace)
        self.out_spec = out_spec
        self.graph = graph
        self.executable = executable
        self.stages = stages
        self.backward = None        # a JitBackward when some input requires grad
        self.module_guards = list(trace.modules.values())
        self.capture_guards = [(t, g) for kind, t, g in self.sources if kind == "capture"]

    def guards_hold(self) -> bool:
        """Captured outside tensors still have the shape, dtype and requires_grad they were
        traced with, and every nn.Module the trace called still has the same plain attributes,
        train/eval mode included (Module calls are recorded, so a global model is guarded)."""
        for t, guard in self.capture_guards:
            if _capture_guard(t) != guard:
                return False
        return all(module_state(m) == state for m, state in self.module_guards)

    def __call__(self, leaves):
        arrays = []
        for kind, ref, _ in self.sources:
            if kind == "arg":
                arrays.append(leaves[ref]._data)
            elif kind == "capture":
                arrays.append(ref._data)
            else:
                arrays.append(np.array(SEEDS.next(), dtype=np.int64))
        outs = [Tensor._wrap(a) for a in self.executable(arrays)]
        if self.backward is not None and autograd.is_grad_enabled():
            self.backward.record(arrays, outs, leaves)
        return _unflatten(self.out_spec, outs)


def _capture_guard(t: Tensor) -> tuple:
    return (t._data.shape, t._data.dtype, t._requires_grad)


def _input_sources(trace: Trace):
    """Where each graph input comes from at call time: ("arg", leaf index, None),
    ("capture", tensor, guard) or ("seed", None, None)."""
    arg_index = {v: i for i, v in enumerate(trace.arg_values)}
    captured = {v: t for t, v in trace.captured.values()}
    out = []
    for v in trace.input_order():
        if v in arg_index:
            out.append(("arg", arg_index[v], None))
        elif v in captured:
            t = captured[v]
            out.append(("capture", t, _capture_guard(t)))
        else:
            out.append(("seed", None, None))
    return out


class _Eager:
    """Run the Python function eagerly (after a graph break or a compile failure)."""

    def __init__(self, fn, reason: str):
        self.fn = fn
        self.reason = reason

    def guards_hold(self) -> bool:
        return True


# ---- tracing and compiling ------------------------------------------------------------------
def trace_function(fn, args, kwargs) -> tuple[Trace, object]:
    """Run `fn` on traced stand-ins for its tensor arguments; returns (trace, output spec)."""
    leaves: list = []
    spec = _flatten((args, kwargs), leaves)
    trace = Trace(getattr(fn, "__name__", "f"))
    names = _leaf_names(fn, args, len(leaves))
    stand_ins = [Tensor._wrap(trace.add_arg(t._type(), names[i]), trace)
                 for i, t in enumerate(leaves)]
    a, kw = _unflatten(spec, stand_ins)
    with tracing(trace), autograd.no_grad():
        result = fn(*a, **kw)
    out_leaves: list = []
    out_spec = _flatten(result, out_leaves)
    values = [trace.value_of(t) for t in out_leaves]
    trace.builder.finish(values)
    return trace, out_spec


def _leaf_names(fn, args, n: int) -> list:
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    names = [p for p, a in zip(params, args) if isinstance(a, Tensor)]
    return names + [None] * (n - len(names)) if len(names) == n else [None] * n


def compile_trace(trace: Trace, out_spec):
    from kiln.passes.manager import run_passes
    from kiln.runtime.executable import build_executable
    graph = trace.builder.graph
    optimized, stages = run_passes(graph)
    executable = build_executable(optimized)
    # NOTE: the pass manager's "input" stage is the traced graph itself; show it once.
    return _Compiled(trace, out_spec, optimized, executable, [("traced", graph)] + [
        (s.name, s.graph) for s in stages if s.name != "input"])


def compile_stages(fn, args, kwargs=None) -> list[tuple[str, str]]:
    """The IR at every stage for `fn(*args)`: traced graph, after each pass, then each
    kernel's MLIR, LLVM IR and assembly. Used by the CLI.

    >>> import kiln
    >>> def f(x): return kiln.exp(x) + 1
    >>> [name for name, _ in compile_stages(f, [kiln.ones(4)])][:1]
    ['traced']
    """
    fn = getattr(fn, "__wrapped__", fn)
    trace, out_spec = trace_function(fn, list(args), kwargs or {})
    compiled = compile_trace(trace, out_spec)
    out = [(name, str(g)) for name, g in compiled.stages]
    kernels = getattr(compiled.executable, "kernels", [])
    for stage, attr in (("mlir", "mlir"), ("llvm", "llvm_ir"), ("asm", "asm")):
        text = "\n".join(f"// kernel {k.name}\n{getattr(k, attr)}" for k in kernels)
        out.append((stage, text or "(no generated kernels)\n"))
    return out


class JitFunction:
    """A function compiled by Kiln on first call per guard set (see module docstring)."""

    def __init__(self, fn, recompile_limit: int = 8):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self.reads = scalar_reads(fn)
        self.recompile_limit = recompile_limit
        self.cache: dict = {}
        self.traces = 0
        self._last_key = None

    def __call__(self, *args, **kwargs):
        if current_trace() is not None:
            return self.fn(*args, **kwargs)   # NOTE: nested jit traces inline
        key, leaves = self._key(args, kwargs)
        entry = self._lookup(key)
        if entry is None:
            entry = self._compile(key, args, kwargs, leaves, key[2])
        if isinstance(entry, _Eager):
            return self.fn(*args, **kwargs)
        return entry(leaves)

    def _key(self, args, kwargs) -> tuple:
        """(cache key, tensor leaves): argument structure and static values, tensor guards,
        grad mode, and the plain globals/closure values the function reads."""
        leaves: list = []
        spec = _flatten((args, kwargs), leaves)
        key = (spec, tuple(_tensor_guard(t) for t in leaves), autograd.is_grad_enabled(),
               self._read_values())
        return key, leaves

    def _read_values(self) -> tuple:
        """Plain values of the globals and closure variables the function reads: a traced
        graph bakes them in, so they are guarded like static arguments."""
        out = []
        for name, get in self.reads:
            value = get()
            if is_scalar(value):
                out.append((name, value))
        return tuple(out)

    def _lookup(self, key):
        """The first entry for `key` whose per-call guards hold (one per train/eval mode, or
        per captured-tensor shape, that has been traced)."""
        for entry in self.cache.get(key, ()):
            if entry.guards_hold():
                return entry
        return None

    def _compile(self, key, args, kwargs, leaves, grad_on):
        if self.traces >= self.recompile_limit:
            why = _describe_guard(self._last_key, key) if self._last_key else "?"
            return self._eager(key, f"recompile limit ({self.recompile_limit}) reached; {why}")
        self.traces += 1
        self._last_key = key
        try:
            trace, out_spec = trace_function(self.fn, args, kwargs)
        except GraphBreak as e:
            return self._eager(key, str(e))
        try:
            entry = compile_trace(trace, out_spec)
            wrt = differentiable_inputs(entry.sources, leaves) if grad_on else []
            if wrt:
                entry.backward = JitBackward(self.name, trace.builder.graph, entry.sources, wrt)
        except Exception as e:  # NOTE: a compiler failure must never stop the user's program
            return self._eager(key, f"compilation failed ({type(e).__name__}: {e})")
        self.cache.setdefault(key, []).append(entry)
        return entry

    def _eager(self, key, reason: str):
        warnings.warn(f"@kiln.jit({self.name}): running eagerly: {reason}",
                      KilnJitWarning, stacklevel=4)
        entry = _Eager(self.fn, reason)
        self.cache.setdefault(key, []).append(entry)
        return entry

    def graph_for(self, *args, **kwargs):
        """The optimized ir.Graph used for these arguments (compiling if needed)."""
        self(*args, **kwargs)
        entry = self._lookup(self._key(args, kwargs)[0])
        return getattr(entry, "graph", None)


def jit(fn=None, *, recompile_limit: int = 8):
    """Compile `fn` with Kiln's tracing JIT.

    >>> import kiln
    >>> @kiln.jit
    ... def f(x):
    ...     return x * kiln.sigmoid(x) * 0.5 + kiln.tanh(x)
    >>> f(kiln.zeros(4))
    tensor([0., 0., 0., 0.])
    """
    if fn is None:
        return lambda f: JitFunction(f, recompile_limit)
    return JitFunction(fn, recompile_limit)
