"""`@kiln.jit`: trace a function into an ir.Graph, optimize, compile, cache per guard set.

Guards: tensor shapes, dtypes, strides and requires_grad, static argument values (by type and
value), grad mode and the outside values the function reads (the cache key, frontend/guards.py),
plus per entry the modules it called, the captured tensors re-read at their path, `.grad`s and
optimizer structure. A failed guard retraces; past `recompile_limit` traces Kiln warns once,
naming the guard, and runs eagerly. The trace runs in the caller's grad mode, so the autograd
tape records as it would eagerly (frontend/jit_grad.py); in-place writes become `copy_` nodes
that the functionalize pass turns into write-backs (frontend/jit_effects.py applies them). A
value read (`.item()`, `bool(t)`) or a Python side effect switches the function to replay mode
(frontend/replay.py); a compile failure runs the function eagerly, with a warning.
"""
from __future__ import annotations

import collections
import functools
import inspect
import operator
import os
import threading
import types
import warnings

import numpy as np

from kiln import debug
from kiln.ir.errors import KilnError
from kiln.ir.types import user_loc
from kiln.passes.functionalize import output_view_roots
from kiln.runtime.cuda.array import DeviceArray

from . import autograd
from .entry_guards import EntryGuards, GuardFailure, InputSources, tensor_type
from .guard_messages import describe_guard
from .guards import (Shown, defaults_key, frozen_reads, function_reads,
                     set_origin, static_spec)
from .jit_effects import CallEffects
from .jit_fast import MISS, fast_check, fast_direct
from .jit_grad import TapeBackward
from .tensor import Tensor
from .trace import DeviceBreak, GraphBreak, Trace, ValueBreak, tracing
from .trace import _local as _TRACE_STATE


class KilnJitWarning(UserWarning):
    """Kiln ran a jitted function eagerly instead (with the reason)."""


# ---- argument trees -------------------------------------------------------------------------
def _flatten(obj, leaves: list):
    """(structure spec, appending Tensors to `leaves`); non-tensors are static."""
    if isinstance(obj, Tensor):
        leaves.append(obj)
        return ("T",)
    if type(obj) in (list, tuple):
        return (type(obj).__name__, tuple(_flatten(o, leaves) for o in obj))
    if isinstance(obj, (list, tuple)):     # NOTE: kiln.Size, a named tuple (x.max(dim))
        return ("seq", type(obj), tuple(_flatten(o, leaves) for o in obj))
    if isinstance(obj, dict):
        return ("dict", tuple((k, _flatten(v, leaves)) for k, v in sorted(obj.items())))
    try:
        hash(obj)
    except TypeError:
        raise KilnError(f"@kiln.jit: argument of type {type(obj).__name__} is neither a "
                        "tensor nor a hashable static value") from None
    return static_spec(obj)     # NOTE: keyed by type and value: 2 != 2.0, 0.0 != -0.0


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
    if s[0] == "seq":
        items = [_build(x, it) for x in s[2]]
        return s[1](*items) if hasattr(s[1], "_fields") else s[1](items)
    return s[2]


def _tensor_guard(t: Tensor):
    # NOTE: the NumPy dtype and shape directly: this runs for every argument of every call.
    # Strides too: the trace decided from them which reshapes view and which copy.
    # The storage's type: a CUDA tensor's DeviceArray has NumPy's dtype, shape and strides;
    # None for a CUDA view's copy (such a call runs eagerly, where its use is checked).
    return (t._data.dtype, t._data.shape, t._data.strides, t._requires_grad,
            type(t._data) if t._copy_of is None else None)


# ---- cache entries --------------------------------------------------------------------------
class _Compiled:
    """A traced and compiled function: binds inputs, runs the executable, rebuilds outputs."""

    def __init__(self, trace: Trace, out_spec, graph, executable, stages):
        self.sources = _input_sources(trace)
        self.out_spec = out_spec
        self.graph = graph
        self.executable = executable
        self.traced = trace.builder.graph
        self._stages = None if stages is None else _stage_list(self.traced, stages)
        self.backward = None        # a TapeBackward when outputs require grad
        self.effects = CallEffects(trace, executable)
        self.extra_guards = list(trace.__dict__.get("extra_guards", ()))
        self._run = None            # the executable's call (its generated runner), once bound

    @property
    def stages(self) -> list:
        """(name, graph) after each pass; run again when the plan came from the disk cache."""
        if self._stages is None:
            from kiln.passes.manager import run_passes
            self._stages = _stage_list(self.traced, run_passes(self.traced)[1])
        return self._stages

    def guards_hold(self, call=None, leaves=None) -> bool:
        """The guards beyond the cache key hold for `call` = (args, kwargs) (its tensor
        `leaves`, when already flattened): helper reads,
        the modules the trace called (identity at their path, plain attributes, train/eval
        mode), captured tensors (re-read at their path: dtype, shape, requires_grad), and
        whether each `.grad` the trace read was None (and its type)."""
        if not self.sources.guards.holds(call):
            return False
        if not all(check() for check, _ in self.extra_guards):
            return False
        return not self.effects.grad_guards or self.effects.grads_hold(
            self.input_tensors(leaves if leaves is not None else _leaves_of(call)))

    def input_tensors(self, leaves) -> list:
        """Per graph input, the Tensor bound to it for this call: the argument leaf or the
        captured tensor re-read at its path; None for random and scalar inputs."""
        return self.sources.guards.tensors(leaves)

    def __call__(self, leaves):
        run = self._run
        if run is None:
            run = self._bind_run()
        if self._simple:
            return _wrap(run(list(map(_DATA, leaves)))[0])
        if self.sources.plain:
            tensors = leaves
            arrays = list(map(_DATA, leaves))
        else:
            tensors, arrays = self._bind_inputs(leaves)
        if self.effects.written:
            self.effects.before(tensors, arrays)
        results = run(arrays)
        outs = self.effects.after(tensors, results)
        if self.backward is not None and autograd.is_grad_enabled():
            self.backward.record(tensors, outs, self.effects.saved(results, outs))
        return outs[0] if self.out_spec == _ONE_TENSOR else _unflatten(self.out_spec, outs)

    def _bind_run(self):
        """The executable's call, bound once; and whether a call is only that: inputs are the
        arguments in order, nothing written, no backward, one new output (`_simple`)."""
        e = self.effects
        self._simple = (self.sources.plain and not e.written and self.backward is None
                        and e.plain and e.contiguous and e.n_outputs == 1
                        and self.out_spec == _ONE_TENSOR)
        self._run = getattr(self.executable, "runner", self.executable)
        return self._run

    def _bind_inputs(self, leaves):
        arrays = []
        tensors = self.input_tensors(leaves)
        for (kind, ref, extra), t in zip(self.sources, tensors):
            if t is not None:
                arrays.append(t._data)
            elif kind == "scalar":
                arrays.append(np.asarray(ref(), dtype=extra))
            elif kind == "random":          # NOTE: drawn now, in the program's order
                arrays.append(ref())
            else:   # NOTE: a "grad" input exists only where its guard saw a .grad
                raise KilnError(f"internal error: no value for graph input {kind!r}")
        return tensors, arrays


_ONE_TENSOR = ("T",)
_DATA = operator.attrgetter("_data")
_wrap = Tensor._wrap


def _stage_list(traced, stages) -> list:
    # NOTE: the pass manager's "input" stage is the traced graph itself; show it once.
    return [("traced", traced)] + [(s.name, s.graph) for s in stages if s.name != "input"]


def _leaves_of(call) -> list:
    leaves: list = []
    if call is not None:
        _flatten(call, leaves)
    return leaves


def _input_sources(trace: Trace) -> InputSources:
    """Where each graph input comes from at call time: ("arg", leaf index, None),
    ("capture", tensor as traced, guard), ("scalar", getter, NumPy dtype), ("random", draw,
    None) or ("grad", owner's input position, None); `.guards` holds the entry's guards and
    re-reads captured tensors at their path."""
    arg_index = {v: i for i, v in enumerate(trace.arg_values)}
    captured = {v: t for t, v in trace.captured.values()}
    scalars = {v: (get, dt.np) for v, get, dt in getattr(trace, "scalar_inputs", ())}
    randoms = dict(getattr(trace, "random_inputs", ()))
    # NOTE: a `.grad` input: the owner's input position (the owner is always an earlier input)
    grads = trace.__dict__["_grads"].inputs if "_grads" in trace.__dict__ else {}
    position = {v: i for i, v in enumerate(trace.input_order())}
    out = InputSources()
    for v in trace.input_order():
        if v in arg_index:
            out.append(("arg", arg_index[v], None))
        elif v in captured:
            t = captured[v]
            out.append(("capture", t, tensor_type(t)))
        elif v in scalars:
            out.append(("scalar",) + scalars[v])
        elif v in randoms:
            out.append(("random", randoms[v], None))
        else:
            out.append(("grad", position[grads[v]], None))
    out.guards = EntryGuards(trace, out)
    # NOTE: graph inputs are the arguments' tensors in order: no binding work per call
    out.plain = [s[:2] for s in out] == [("arg", i) for i in range(len(trace.arg_values))]
    return out


class _Eager:
    """Run the Python function eagerly (after a graph break or a compile failure)."""

    def __init__(self, fn, reason: str):
        self.fn = fn
        self.reason = reason

    def guards_hold(self) -> bool:
        return True

    def run(self, args, kwargs, leaves):
        return self.fn(*args, **kwargs)


# ---- tracing and compiling ------------------------------------------------------------------
def trace_function(fn, args, kwargs, device: str = "cpu") -> tuple[Trace, object]:
    """Run `fn` on traced stand-ins for its tensor arguments; returns (trace, output spec).
    The graph is for `device`; an argument on the other device is a graph break (but CPU 0-d
    tensors join a CUDA graph: frontend/trace.py)."""
    leaves: list = []
    spec = _flatten((args, kwargs), leaves)
    trace = Trace(getattr(fn, "__name__", "f"))
    trace.device = device
    names = _leaf_names(fn, args, len(leaves))
    stand_ins = [_stand_in(trace, t, names[i]) for i, t in enumerate(leaves)]
    trace.arg_leaves = {s._data: t for s, t in zip(stand_ins, leaves)}
    a, kw = _unflatten(spec, stand_ins)
    # NOTE: in the caller's grad mode: ops record on the autograd tape as they would eagerly
    with tracing(trace):
        result = fn(*a, **kw)
        out_leaves: list = []
        out_spec = _flatten(result, out_leaves)
        finish_trace(trace, out_leaves)
    return trace, out_spec


def finish_trace(trace: Trace, out_leaves: list) -> None:
    """The graph's outputs: the function's, then the `.grad`s it assigned, then the values
    its backward graph reads (saved activations), if outputs still require grad."""
    values = [trace.value_of(t) for t in out_leaves]
    trace.n_outputs = len(values)
    if any(v in trace.host for v in values):
        raise GraphBreak("not supported yet: returning a CPU tensor computed inside a function "
                         "compiled for cuda", loc=user_loc())
    trace.grad_effects = []
    for owner, g in trace.grads.results():
        trace.grad_effects.append((owner, None if g is None else len(values)))
        if g is not None:
            if owner in trace.host or trace.value_of(g) in trace.host:
                raise GraphBreak("not supported yet: the gradient of a CPU tensor computed "
                                 "inside a function compiled for cuda", loc=user_loc())
            values.append(trace.value_of(g))
    trace.builder.graph.outputs = values[:trace.n_outputs]
    trace.view_roots = []
    owners: dict = {}
    for k, root in enumerate(output_view_roots(trace.builder.graph, trace.n_outputs)):
        if root is not None:
            position = owners.setdefault(root[0], len(values) + len(owners))
            trace.view_roots.append((k, position, root[1]))
    values += list(owners)
    diff = [k for k, t in enumerate(out_leaves) if t._requires_grad and t.grad_fn is not None]
    trace.backward = None
    if diff:
        trace.backward = TapeBackward(trace, [out_leaves[k] for k in diff], diff)
        inputs = set(trace.builder.graph.inputs)
        trace.saved_start = len(values)
        values += [v for v in trace.backward.saved if v not in inputs]
    trace.builder.finish(values)


def _stand_in(trace: Trace, t: Tensor, name) -> Tensor:
    """The traced tensor for argument t: same type and strides (so a reshape views or copies
    exactly as it would eagerly, and a write into an expanded argument is refused)."""
    s = Tensor._wrap(trace.add_arg(t._type(), name), trace)
    if trace.require_device(t.device.type, "an argument", scalar=t.ndim == 0):
        trace.host.add(s._data)
    s._strides = t._elem_strides()
    s._requires_grad = t._requires_grad
    return s


def _leaf_names(fn, args, n: int) -> list:
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    names = [p for p, a in zip(params, args) if isinstance(a, Tensor)]
    return names + [None] * (n - len(names)) if len(names) == n else [None] * n


def compile_trace(trace: Trace, out_spec):
    from .compile import compile_traced
    graph = trace.builder.graph
    optimized, stages, executable = compile_traced(graph, device=trace.device)
    entry = _Compiled(trace, out_spec, optimized, executable, stages)
    backward = getattr(trace, "backward", None)
    if backward is not None:
        backward.compile(graph.inputs, trace.device)
        entry.backward = backward
    return entry


def compile_stages(fn, args, kwargs=None, device: str = "cpu",
                   backward: bool = False) -> list[tuple[str, str]]:
    """The IR at every stage for `fn(*args, **kwargs)`, as `kiln ir` prints it (both come
    from kiln/cli_stages.py): traced graph, after each pass, the schedule before and after
    memory planning, then the kernels' MLIR (with `loc(...)` and float values as comments),
    LLVM IR and assembly (PTX for `device="cuda"`, made without a GPU). Forward stages
    only, unless `backward=True` adds the backward graph's stages (`backward`,
    `backward.fusion`, ...) when an output requires grad.

    >>> import kiln
    >>> def f(x): return kiln.exp(x) + 1
    >>> [name for name, _ in compile_stages(f, [kiln.ones(4)])][:1]
    ['traced']
    >>> [name for name, _ in compile_stages(f, [kiln.ones(4)], device="cuda")][-3:]
    ['mlir', 'llvm', 'ptx']
    """
    from kiln.cli_stages import collect     # NOTE: lazy: kiln.cli_stages imports this module

    fn = getattr(fn, "__wrapped__", fn)
    listing = collect(fn, list(args), device, kwargs=kwargs)
    return [(s.name, s.text) for s in listing.stages if backward or s.part == "forward"]


def _jit_cache_size() -> int:
    """Cache keys (guard sets) kept per jitted function: KILN_JIT_CACHE_SIZE, default 64."""
    return max(1, int(os.environ.get("KILN_JIT_CACHE_SIZE", "64")))


class JitFunction:
    """A function compiled by Kiln on first call per guard set (see module docstring)."""

    def __init__(self, fn, recompile_limit: int = 8):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self.reads = function_reads(fn)     # NOTE: names are resolved at call time
        self._plain_reads = [r for r in self.reads if r.chain.kind != "arg"]
        self.recompile_limit = recompile_limit
        # NOTE: bounded, least recently used guard set first out (`_insert`): an entry holds
        # its compiled kernels, so an unbounded cache grows by every new shape. An evicted
        # guard set traces again when it comes back (and counts toward recompile_limit).
        self.cache: dict = collections.OrderedDict()
        self.cache_size = _jit_cache_size()
        self.traces = 0
        self._last_key = None
        self._call = None           # (args, kwargs) between _key and _lookup
        self._call_leaves = None    # their tensor leaves
        self._past_limit = None     # the silent eager entry once the limit warning was given
        self._fast = None           # (check, entry, direct) of the last key that hit (jit_fast.py)
        self._fast_enabled = os.environ.get("KILN_JIT_FAST", "1") != "0"

    def __call__(self, *args, **kwargs):
        # NOTE: current_trace() is not None, inlined: a nested jit traces inline; in a thread
        # of PLAIN_THREADS the plain Python runs (kiln.testing's eager reference run)
        if _TRACE_STATE.stack or (PLAIN_THREADS and threading.get_ident() in PLAIN_THREADS):
            return self.fn(*args, **kwargs)
        fast = self._fast
        if fast is not None:
            direct = fast[2]
            if direct is not None:
                # NOTE: the guards and the whole call (a simple entry: nothing written, no
                # backward, so the ordinary path may run it again after an exception)
                try:
                    out = direct(args, kwargs)
                except Exception:
                    out = MISS
                if out is not MISS:
                    return out
            else:
                try:
                    leaves = fast[0](args, kwargs)
                except Exception:   # NOTE: a value it cannot freeze: the ordinary path says why
                    leaves = None
                if leaves is not None:
                    return fast[1](leaves)
        key, leaves = self._key(args, kwargs)
        call = self._call
        entry = self._lookup(key)
        if entry is None:
            start = debug.compile_started()
            entry = self._compile(key, args, kwargs, leaves, key[2])
            debug.compile_done(self, entry, start)     # NOTE: KILN_DEBUG=1, the profiler
            # NOTE: only when the new entry's guards hold for this very call (the trace ran
            # the user's code, which may have changed what the key read before it)
            if isinstance(entry, _Compiled) and self._fast_enabled and \
                    entry.guards_hold(call, leaves):
                self._fast = _fast_for(self, key, call, entry)
        elif isinstance(entry, _Compiled) and self._fast_enabled:
            self._fast = _fast_for(self, key, call, entry)
        elif TRACE_LISTENERS and isinstance(entry, _Eager) and \
                entry.reason.startswith("recompile limit"):     # NOTE: no_recompiles hears it
            _tell_trace_listeners(self.fn, f"runs eagerly: {entry.reason}" + (
                " reached before; this call matches no compiled guard set"
                if entry is self._past_limit else ""))
        if isinstance(entry, _Eager):       # NOTE: eager, or replay (frontend/replay.py)
            return entry.run(args, kwargs, leaves)
        return entry(leaves)

    def _key(self, args, kwargs) -> tuple:
        """(cache key, tensor leaves): argument structure and static values, tensor guards,
        grad mode, and the plain globals/closure values the function reads."""
        leaves: list = []
        spec = _flatten((args, kwargs), leaves)
        self._call = (args, kwargs)
        self._call_leaves = leaves
        key = (spec, tuple(_tensor_guard(t) for t in leaves), autograd.is_grad_enabled(),
               self._read_values(args, kwargs))
        return key, leaves

    def _read_values(self, args=None, kwargs=None) -> tuple:
        """(label, frozen value) of every outside value the function's own code reads
        (globals, closure variables, constant attribute/item chains, parameters' attributes
        when the call is given), resolved now, plus its default values: a traced graph bakes
        them in, so they are guarded like static arguments (see frontend/guards.py)."""
        if args is None:    # NOTE: for a report (kiln.explain): values print as values
            out = [(k, Shown(v)) for k, v in frozen_reads(self._plain_reads, None)]
        else:
            out = frozen_reads(self.reads, (args, kwargs))
        defaults = defaults_key(self.fn)
        if defaults is not None:
            out.append(("default values", defaults))
        return tuple(out)

    def _lookup(self, key):
        """The first entry for `key` whose per-call guards hold (one per train/eval mode,
        module identity, captured-tensor shape or helper value that has been traced). On a
        miss: the failing guard is kept for the warning; past the recompile limit, after
        the one warning, an eager entry is returned silently."""
        call, self._call = self._call, None
        entries = self.cache.get(key, ())
        for entry in entries:
            if (entry.guards_hold(call, self._call_leaves) if isinstance(entry, _Compiled)
                    else entry.guards_hold()):
                self.cache.move_to_end(key)     # NOTE: most recently used (see _insert)
                return entry
        compiled = [e for e in entries if isinstance(e, _Compiled)]
        if compiled:
            self._last_key = GuardFailure(_entry_failure(compiled[-1], call))
        if self.traces < self.recompile_limit:
            set_origin((self,) + call if call is not None else None)
            return None
        if self._past_limit is None:
            self._past_limit = _Eager(self.fn, "recompile limit")
            return None         # NOTE: _compile warns, this once
        return self._past_limit

    def __get__(self, obj, objtype=None):
        """`@kiln.jit` on a method: `obj.f(x)` calls the JitFunction with `obj` first (a
        static argument; its attributes the method reads are guarded)."""
        if obj is None:
            return self
        return types.MethodType(self, obj)

    def _compile(self, key, args, kwargs, leaves, grad_on):
        replay = self._replay_for(key)
        if replay is not None:
            return replay
        if self.traces >= self.recompile_limit:
            why = describe_guard(self._last_key, key, self.fn) if self._last_key else "?"
            why = f"recompile limit ({self.recompile_limit}) reached; {why}"
            _tell_trace_listeners(self.fn, why)
            return self._eager(key, why)
        self.traces += 1
        reason = None
        if self._last_key is not None:
            reason = describe_guard(self._last_key, key, self.fn)
            recompile_reasons(self).append(reason)
        _tell_trace_listeners(self.fn, reason)
        self._last_key = key
        device = "cuda" if any(type(t._data) is DeviceArray for t in leaves) else "cpu"
        if any(t._copy_of is not None for t in leaves):
            return self._eager(key, "not supported yet: an argument is a view of a CUDA "
                               "tensor (a copy standing for the view)")
        effects = _call_side_effects(self.fn, args, kwargs)
        if effects:
            where = ", ".join(e.describe() for e in effects)
            if device == "cuda":
                return self._eager(key, f"Python side effects: {where}; replay mode is not "
                                   "supported yet on CUDA")
            return self._replay(key, effects, f"Python side effects: {where}", leaves, grad_on,
                                (args, kwargs))
        try:
            try:
                trace, out_spec = trace_function(self.fn, args, kwargs, device)
            except DeviceBreak:     # NOTE: a captured CUDA tensor (a model on the GPU)
                device = "cuda"
                trace, out_spec = trace_function(self.fn, args, kwargs, device)
        except ValueBreak as e:
            if device == "cuda":
                return self._eager(key, f"{e}; replay mode is not supported yet on CUDA")
            return self._replay(key, getattr(e, "effects", []), str(e), leaves, grad_on,
                                (args, kwargs))
        except GraphBreak as e:
            return self._eager(key, str(e))
        try:
            entry = compile_trace(trace, out_spec)
        except Exception as e:  # NOTE: a compiler failure must never stop the user's program
            return self._eager(key, f"compilation failed ({type(e).__name__}: {e})")
        self._insert(key, entry)
        return entry

    def _replay_for(self, key):
        """A replay entry traced for the same arguments when only global or closure values
        changed: it re-runs the Python, which reads them anew, so it needs no retrace."""
        for old in [k for k in self.cache if k[:3] == key[:3]]:
            entries = self.cache[old]
            for entry in entries:
                if getattr(entry, "segments", None) is not None:
                    # NOTE: moved, not copied: a counter global would grow the cache per call
                    entries.remove(entry)
                    if not entries:
                        del self.cache[old]
                    self._insert(key, entry)
                    return entry
        return None

    def _replay(self, key, effects, reason: str, leaves, grad_on, call):
        """A replay entry (frontend/replay.py): the Python runs on every call."""
        from .replay import ReplayEntry
        if grad_on and any(t._requires_grad for t in leaves):
            return self._eager(key, f"{reason}; an argument requires grad and replay mode "
                               "does not compute gradients yet")
        if grad_on and effects and self._reads_trainable(call):
            # NOTE: decided before the Python runs: a replay that met a parameter mid-call
            # would fall back then and run the side effects before it a second time
            return self._eager(key, f"{reason}; it uses parameters that require grad and "
                               "replay mode does not compute gradients yet")
        entry = ReplayEntry(self.fn, self.name, effects, reason, self.recompile_limit)
        self._insert(key, entry)
        return entry

    def _reads_trainable(self, call) -> bool:
        """Does a value the function reads hold a tensor that requires grad (a model, an
        optimizer, a parameter)?"""
        from kiln.nn.module import Module
        for read in self.reads:
            try:
                value = read.get(call)
            except Exception:   # NOTE: a read that fails now (unset global) holds nothing
                continue
            if isinstance(value, Tensor) and value._requires_grad:
                return True
            if isinstance(value, Module) and any(p.requires_grad for p in value.parameters()):
                return True
            groups = getattr(value, "param_groups", None)
            if isinstance(groups, list) and any(p.requires_grad for g in groups
                                                for p in g.get("params", ())):
                return True
        return False

    def _eager(self, key, reason: str):
        warnings.warn(f"@kiln.jit({self.name}): running eagerly: {reason}",
                      KilnJitWarning, stacklevel=4)
        entry = _Eager(self.fn, reason)
        self._insert(key, entry)
        return entry

    def _insert(self, key, entry):
        """Add `entry` under `key` (now the most recently used), evicting the least recently
        used keys beyond `cache_size`."""
        self.cache.setdefault(key, []).append(entry)
        self.cache.move_to_end(key)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def graph_for(self, *args, **kwargs):
        """The optimized ir.Graph used for these arguments (compiling if needed)."""
        self(*args, **kwargs)
        entry = self._lookup(self._key(args, kwargs)[0])
        return getattr(entry, "graph", None)


def _entry_failure(entry: _Compiled, call) -> str:
    """Why `entry`'s per-call guards fail for `call`, in words (a guard added with
    `Trace.add_guard`, such as an optimizer's structure, by the name it was given)."""
    text = entry.sources.guards.failure(call)
    failed = [what for check, what in entry.extra_guards if not check()]
    return f"{failed[0]} guard failed" if text == "no guard failed" and failed else text


def _fast_for(jf: JitFunction, key, call, entry):
    """(fast check, entry) for calls repeating `key`. A check is written once per entry and
    key (a program alternating between two shapes must not write one per call), and again
    when it said no to a call the ordinary path then matched (a read that is now an equal
    but new object), at most `_REWRITES` times per entry."""
    checks = entry.__dict__.setdefault("fast_checks", {})
    check, direct = checks.get(key, (None, None))
    if check is None or (jf._fast is not None and jf._fast[0] is check):
        rewrites = entry.__dict__.get("fast_rewrites", 0)
        if rewrites >= _REWRITES:
            return None
        entry.fast_rewrites = rewrites + 1
        if len(checks) >= 8:
            checks.clear()
        check = fast_check(jf, key, call, entry) or _NO_CHECK
        direct = fast_direct(jf, key, call, entry) if check is not _NO_CHECK else None
        checks[key] = (check, direct)
    return None if check is _NO_CHECK else (check, entry, direct)


_REWRITES = 16


def _NO_CHECK(args, kwargs):
    return None


# NOTE: callables told of every trace of a jitted function, (the Python function, why it
# traced again; None for its first trace): kiln.testing.no_recompiles listens here.
TRACE_LISTENERS: list = []


# NOTE: threads in which JitFunction.__call__ runs the plain Python function (kiln.testing's
# eager reference run: nested helpers and kiln.compile'd modules too); almost always empty.
PLAIN_THREADS: set = set()


def _tell_trace_listeners(fn, reason: str | None) -> None:
    for listener in tuple(TRACE_LISTENERS):
        listener(fn, reason)


def recompile_reasons(jf: JitFunction) -> list[str]:
    """Why `jf` traced again after its first trace (one line per retrace)."""
    # NOTE: kept on the instance but created on first use, outside JitFunction.__init__.
    return vars(jf).setdefault("recompile_reasons", [])


def _call_side_effects(fn, args, kwargs) -> list:
    """The Python side effects of `fn` for these arguments (asked only on a cache miss)."""
    from .side_effects import effects_for_call, find_side_effects
    return effects_for_call(find_side_effects(fn), fn, args, kwargs)


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
