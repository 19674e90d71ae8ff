"""Replay mode: `@kiln.jit` for functions that read tensor values or have Python side effects.

Such a function cannot be run from one cached graph: what it records after `if t.sum() > 0`
depends on the value, and its `print` or `log.append(...)` must run on every call. So each
call re-runs the Python on tracer tensors. At a value read (`Trace.read_value`) the graph
recorded so far becomes a segment: its outputs are the value read and every traced tensor
still alive; it is compiled (once per structure: segments are cached by their printed text
and the tensors they capture), run, and the live tensors are rebound to inputs of the next
segment. The value read is the guard on what follows: the Python, run again, records the next
segment for that value, and its structure picks the compiled code. At the end the last
segment runs and the tensors still alive (returned, or stored outside) become eager tensors.

    >>> import kiln
    >>> @kiln.jit
    ... def f(x):
    ...     if x.sum() > 0:
    ...         return x * 2
    ...     return x * 3
    >>> f(kiln.ones(2)), f(-kiln.ones(2))
    (tensor([2., 2.]), tensor([-3., -3.]))
"""
from __future__ import annotations

import gc
import sys
import warnings

from kiln import debug
from kiln.ir.errors import KilnError, NotSupportedError
from kiln.ir.types import user_loc

from . import autograd
from .jit import (KilnJitWarning, _Eager, _flatten, _leaf_names, _tell_trace_listeners,
                  _unflatten, compile_trace)
from .tensor import Tensor
from .trace import GraphBreak, Trace, tracing, untraced


class _FallBack(KilnError):
    """Replay cannot finish this call; the caller runs the function eagerly instead."""


class ReplayEntry(_Eager):
    """A cache entry whose calls re-run the Python and run compiled segments between reads.
    `segments`: structural key -> compiled segment; `reasons`: why segments recompiled."""

    def __init__(self, fn, name: str, effects, reason: str, limit: int):
        super().__init__(fn, reason)
        self.name = name
        self.effects = effects
        self.limit = limit
        self.segments: dict = {}
        self.keys_at: dict = {}      # segment position -> keys compiled there
        self.reasons: list[str] = []
        self.eager_reason: str | None = None

    def run(self, args, kwargs, leaves):
        if self.eager_reason is not None:
            return self.fn(*args, **kwargs)
        return Session(self).run(args, kwargs, leaves)

    def give_up(self, reason: str) -> None:
        """Run eagerly from the next call on (this call still finishes compiled)."""
        self.eager_reason = reason
        warnings.warn(f"@kiln.jit({self.name}): running eagerly from the next call: {reason}",
                      KilnJitWarning, stacklevel=5)


class Session:
    """One call in replay mode. `record`, when a list, receives one dict per segment run
    (its trace, compiled code and the read that ended it): `kiln.explain` shows them."""

    def __init__(self, entry: ReplayEntry, record: list | None = None):
        self.entry = entry
        self.record = record
        self.leaves: list = []
        self.grad_on = autograd.is_grad_enabled()
        self.position = 0
        self.last_read = None
        self.stop = None
        self.arguments = None       # the stand-ins' (args, kwargs) while the function runs

    def run(self, args, kwargs, leaves):
        """fn(*args, **kwargs) with its tensor work compiled, side effects run once."""
        try:
            return self._run(args, kwargs, leaves)
        except (_FallBack, GraphBreak) as e:
            # NOTE: the Python already ran up to this point; it runs again, eagerly.
            warnings.warn(f"@kiln.jit({self.entry.name}): running eagerly: {e}",
                          KilnJitWarning, stacklevel=4)
            self.entry.eager_reason = str(e)
            return self.entry.fn(*args, **kwargs)

    def _run(self, args, kwargs, leaves):
        spec = _flatten((args, kwargs), [])
        trace = Trace(self.entry.name)
        trace.replay = self
        names = _leaf_names(self.entry.fn, args, len(leaves))
        stand_ins = [Tensor._wrap(trace.add_arg(t._type(), names[i]), trace)
                     for i, t in enumerate(leaves)]
        self.leaves = list(leaves)
        self.arguments = _unflatten(spec, stand_ins)
        del stand_ins
        self.stop = sys._getframe()
        with tracing(trace), autograd.no_grad():
            result = self.entry.fn(*self.arguments[0], **self.arguments[1])
        self.arguments = None
        self._finish(trace, result)
        return result

    # ---- value reads ------------------------------------------------------------------------
    def read(self, trace: Trace, t: Tensor, why: str):
        """Trace.read_value in replay mode: the value, computed by the segment so far."""
        loc = user_loc()
        index = _arg_index(trace, t._data)
        if index is not None:       # NOTE: an input of this segment: its value is at hand
            value = self.leaves[index]._data
            self._note_read(why, loc, value, split=False)
            return value
        roots = _frame_roots(sys._getframe(1), self.stop) + [self.arguments]
        live = _live_tensors(trace, roots)
        if all(v is not t._data for v, _ in live):
            raise _stale(loc)
        arrays = self._materialize(trace, live, loc)
        value = arrays[t._data]
        for v, tensors in live:
            new = trace.add_arg(v.type, f"b{len(trace.arg_values)}")
            for u in tensors:
                u._data = new
        self.leaves = [Tensor._wrap(arrays[v]) for v, _ in live]
        self._note_read(why, loc, value, split=True)
        if self.record is not None:
            self.record[-1]["break"] = self.last_read
        return value

    def _note_read(self, why, loc, value, split: bool) -> None:
        shown = value.reshape(()).item() if value.size == 1 else f"array{list(value.shape)}"
        self.last_read = (why, loc, shown)
        if self.record is not None and not split:
            self.record.append({"read": self.last_read, "segment": None})

    def _finish(self, trace: Trace, result) -> None:
        roots = [result] + self._effect_roots()
        live = _live_tensors(trace, roots)
        arrays = self._materialize(trace, live, None)
        for v, tensors in live:
            for u in tensors:
                u._data = arrays[v]
                u._trace = None

    def _effect_roots(self) -> list:
        fn = getattr(self.entry.fn, "__func__", self.entry.fn)
        globals_ = getattr(fn, "__globals__", {})
        cells = dict(zip(getattr(getattr(fn, "__code__", None), "co_freevars", ()),
                         getattr(fn, "__closure__", None) or ()))
        out = []
        for e in self.entry.effects:
            if e.scope == "global" and e.root in globals_:
                out.append(globals_[e.root])
            elif e.scope == "closure" and e.root in cells:
                try:
                    out.append(cells[e.root].cell_contents)
                except ValueError:
                    pass
        return out

    # ---- segments ---------------------------------------------------------------------------
    def _materialize(self, trace: Trace, live, loc) -> dict:
        """Cut the trace; {value: array} for every live value (running the segment)."""
        if self.grad_on and any(c._requires_grad for c, _ in trace.captured.values()):
            raise _FallBack("a tensor it uses requires grad and grad mode is on; replay mode "
                            "(graph breaks, side effects) does not compute gradients yet")
        if "_grads" in trace.__dict__ and trace.grads.results():
            raise _FallBack("it assigns `.grad` (zero_grad, backward); replay mode (graph "
                            "breaks, side effects) does not apply .grad changes yet")
        args = {v: i for i, v in enumerate(trace.arg_values)}
        arrays = {v: self.leaves[args[v]]._data for v, _ in live if v in args}
        outs = [v for v, _ in live if v not in args]
        segment = trace.cut()
        # NOTE: a segment with no new values may still write into tensors (x.add_(1))
        writes = any(n.op == "copy_" for n in segment.builder.graph.nodes)
        compiled = self._compiled(segment, outs) if outs or writes else None
        if compiled is not None:
            # NOTE: untraced: an output that is a view of an input is rebuilt by view ops on
            # the caller's tensor, which must run eagerly, not into the trace being recorded
            with untraced():
                results = compiled(self.leaves)
            arrays.update(zip(outs, (r._data for r in results)))
        if self.record is not None:
            self.record.append({"read": self.last_read, "segment": segment,
                                "compiled": compiled, "ends_at": loc})
        self.position += 1
        return arrays

    def _compiled(self, segment: Trace, outs: list):
        graph = segment.builder.finish(outs)
        _check_defined(graph)
        key = (str(graph), tuple(id(c) for c, _ in segment.captured.values()))
        compiled = self.entry.segments.get(key)
        if compiled is None:
            start = debug.compile_started()
            try:
                compiled = compile_trace(segment, ("list", (("T",),) * len(outs)))
            except Exception as e:  # NOTE: a compiler failure must never stop the program
                raise _FallBack(f"compilation failed ({type(e).__name__}: {e})") from e
            self.entry.segments[key] = compiled
            version = self._note_compile(key)
            why = self.entry.reasons[-1] if version > 1 else "first time reached"
            debug.segment_compiled(self.entry.name, self.position, version, why, compiled,
                                   start)
        return compiled

    def _note_compile(self, key) -> int:
        """Count a newly compiled version of this segment; returns its number (1, 2, ...)."""
        seen = self.entry.keys_at.setdefault(self.position, [])
        seen.append(key)
        if len(seen) == 1:
            return 1
        after = ""
        if self.last_read is not None:
            why, loc, value = self.last_read
            after = f" after {why} at {loc} read {value!r}"
        self.entry.reasons.append(f"graph {self.position + 1}{after}: new ops recorded, "
                                  f"compiled version {len(seen)}")
        _tell_trace_listeners(self.entry.fn, self.entry.reasons[-1])
        if len(seen) >= self.entry.limit and self.entry.eager_reason is None:
            self.entry.give_up(f"graph {self.position + 1} was compiled {len(seen)} times "
                               "(the recompile limit): the values read before it change the "
                               "recorded ops (e.g. `.item()` used as a constant)")
        return len(seen)


def _arg_index(trace: Trace, v):
    for i, a in enumerate(trace.arg_values):
        if a is v:
            return i
    return None


def _stale(loc) -> NotSupportedError:
    return NotSupportedError(
        "not supported yet: a tensor traced before a graph break was kept where Kiln could "
        "not rebind it, and used after the break", loc=loc)


def _check_defined(graph) -> None:
    """Every node input is a graph input or an earlier output (a stale tensor is not)."""
    defined = set(graph.inputs)
    for node in graph.nodes:
        for v in node.inputs:
            if v not in defined:
                raise _stale(node.loc)
        defined.update(node.outputs)


# ---- finding the traced tensors still alive -------------------------------------------------
def _frame_roots(frame, stop) -> list:
    """The local variables of every frame between a value read and the replay driver."""
    # NOTE: not the driver's frame: reading f_locals keeps a snapshot of them on the frame,
    # which would keep the arguments' stand-ins alive after the call (see Session.arguments).
    roots = []
    while frame is not None and frame is not stop:
        roots.append(list(frame.f_locals.values()))
        frame = frame.f_back
    return roots


def _live_tensors(trace: Trace, roots) -> list:
    """[(value, [tensors holding it])] for the values of the current segment that a tensor
    still holds, in graph order. Tensors are looked for in `roots` (and containers inside
    them); a value whose reference count says more holders exist is searched for with the
    garbage collector, which is slower but sees every object."""
    info = _segment_values(trace)
    for v in info:
        # NOTE: getrefcount counts its argument, the loop variable and the `info` key too.
        info[v].append(sys.getrefcount(v) - 3 - info[v][1])
    found: dict = {}
    _scan(roots, trace, info, found, set(), 0)
    missing = [v for v in info if info[v][2] > len(found.get(v, ()))]
    if missing:
        _scan_referrers(missing, trace, found)
    order = sorted(found, key=lambda v: info[v][0])
    return [(v, found[v]) for v in order]


def _segment_values(trace: Trace) -> dict:
    """{value: [position, references from the trace itself]} for the segment's args and node
    outputs: the producer's output tuple (or the graph's and the trace's input lists) plus
    one per use as a node input."""
    info: dict = {}
    graph = trace.builder.graph
    for i, v in enumerate(trace.arg_values):
        info[v] = [(-1, i), 2]
    for n, node in enumerate(graph.nodes):
        for j, v in enumerate(node.outputs):
            info[v] = [(n, j), 1]
    for node in graph.nodes:
        for v in node.inputs:
            if v in info:
                info[v][1] += 1
    return info


def _scan(obj, trace, info, found, seen, depth) -> None:
    if depth > 6 or id(obj) in seen:
        return
    if isinstance(obj, Tensor):
        if obj._trace is trace and obj._data in info:
            holders = found.setdefault(obj._data, [])
            if all(h is not obj for h in holders):
                holders.append(obj)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        seen.add(id(obj))
        for item in obj:
            _scan(item, trace, info, found, seen, depth + 1)
    elif isinstance(obj, dict):
        seen.add(id(obj))
        for item in obj.values():
            _scan(item, trace, info, found, seen, depth + 1)


def _scan_referrers(values, trace, found) -> None:
    wanted = {id(v) for v in values}
    for obj in gc.get_referrers(*values):
        if isinstance(obj, Tensor) and obj._trace is trace and id(obj._data) in wanted:
            holders = found.setdefault(obj._data, [])
            if all(h is not obj for h in holders):
                holders.append(obj)
