"""`kiln.profiler`: what ran inside a block of code, for how long, moving how many bytes.

    with kiln.profiler.profile() as prof:
        train_step(x, y)
    print(prof.table(sort_by="self_time", row_limit=10))
    prof.export_chrome_trace("trace.json")     # open in https://ui.perfetto.dev

It records every eager op, every call of a compiled (`@kiln.jit`) function with each of its
kernel launches, library calls (matmul) and host steps (ops run by their NumPy reference),
and each compile, with its time, bytes and flops (the cost model of runtime/costs.py), its
operand and result types and the user's line. Events nest by time: a compiled call holds its
kernels; `record_function("name")` labels a block of the user's own. The time on the
profiling thread between top-level events (the user's Python, and
Kiln's own outside ops: argument binding, guards) is a `python` row, and the profiler's own
bookkeeping a `profiler` row, so the profiling thread's top-level rows add up to the block's
wall time; the table also says how much of it the recorded ops cover. Events of other
threads are recorded too (each thread's events nest on their own): the table's totals are
given per thread, and its `Self %` is a share of the self time summed over all threads.

While a profiler records, compiled calls take the timed runner (runtime/runner.py), which
times each step alone: a compiled segment's kernels run one by one, GPU work is waited for
after each step. The numbers are those of that run, a little slower than the untimed one.

    >>> import kiln
    >>> f = kiln.jit(lambda x: kiln.exp(x) * 2)
    >>> x = kiln.ones(256)
    >>> _ = f(x)
    >>> with kiln.profiler.profile() as prof:
    ...     y = f(x) + 1
    >>> sorted({e.kind for e in prof.events} - {"python", "profiler"})
    ['eager', 'graph', 'kernel']
    >>> print(prof.table(row_limit=1).splitlines()[0].split())
    ['Name', 'Kind', 'Calls', 'Self', 'ms', 'Self', '%', 'Total', 'ms', 'Avg', 'us', 'GB/s', \
'GFLOP/s', 'Location']
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading

from kiln.runtime import profiling

PYTHON = "(python)"


@dataclasses.dataclass
class Event:
    """One recorded event. Times in microseconds from the start of the profiled block;
    `self_us`: its time less the time of the events inside it; `depth`: how many events
    hold it; `thread`: 0 for the thread that profiles, then 1, 2, ... in order of first
    event."""

    name: str
    kind: str
    start_us: float
    duration_us: float
    self_us: float
    depth: int
    thread: int
    nbytes: int
    flops: int
    shapes: str
    location: str
    device: str


@dataclasses.dataclass
class Row:
    """The events of one name and kind (and shapes, when grouped by them) together."""

    name: str
    kind: str
    calls: int = 0
    self_us: float = 0.0
    total_us: float = 0.0
    nbytes: int = 0
    flops: int = 0
    shapes: str = ""
    location: str = ""

    @property
    def avg_us(self) -> float:
        return self.total_us / self.calls if self.calls else 0.0

    @property
    def gbps(self) -> float:
        return self.nbytes / self.total_us / 1e3 if self.total_us > 0 else 0.0

    @property
    def gflops(self) -> float:
        return self.flops / self.total_us / 1e3 if self.total_us > 0 else 0.0


class profile:
    """Record what runs inside the `with` block (see the module docstring)."""

    def __init__(self):
        self._raw: list = []
        self._events: list[Event] | None = None
        self._start = self._end = None
        self._thread = None

    def __enter__(self) -> "profile":
        if self._start is not None:
            raise RuntimeError("a kiln.profiler.profile records one block; make a new one")
        self._thread = threading.get_ident()
        profiling.add_sink(self._raw)
        self._start = profiling.clock()
        return self

    def __exit__(self, *exc) -> None:
        self._end = profiling.clock()
        profiling.remove_sink(self._raw)

    # ---- results ------------------------------------------------------------------------------
    def _done(self) -> None:
        if self._start is None or self._end is None:
            raise RuntimeError("the profile has no results until its `with` block ends")

    @property
    def wall_us(self) -> float:
        """The profiled block's wall time, in microseconds."""
        self._done()
        return (self._end - self._start) / 1e3

    @property
    def events(self) -> list[Event]:
        """Every event, in order of start, `python` gaps on the profiling thread included."""
        self._done()
        if self._events is None:
            self._events = _analyse(self._raw, self._start, self._end, self._thread)
        return self._events

    @property
    def self_time_total_us(self) -> float:
        """The self times of the profiling thread's events (ops, compiles, python, the
        profiler's own), which add up to the block's wall time."""
        return sum(e.self_us for e in self.events if e.thread == 0)

    @property
    def all_threads_self_us(self) -> float:
        """The self times of every thread's events: the profiling thread's add up to the
        wall time, each other thread adds the time of its own recorded events. The table's
        `Self %` is a share of this, so that its column sums to 100% with threads too."""
        return sum(e.self_us for e in self.events)

    def thread_self_us(self) -> dict:
        """Thread number -> the self time of its events, by kind: {thread: {kind: us}}."""
        out: dict = {}
        for e in self.events:
            kinds = out.setdefault(e.thread, {})
            kinds[e.kind] = kinds.get(e.kind, 0.0) + e.self_us
        return out

    @property
    def recorded_us(self) -> float:
        """The time the profiling thread spent in recorded work (ops, kernels, compiled
        calls, compiles, `record_function` blocks): its self times less the `python` gaps
        and the profiler's own bookkeeping. `recorded_us / wall_us` is how much of the block
        the rows explain."""
        return sum(e.self_us for e in self.events
                   if e.thread == 0 and e.kind not in ("python", "profiler"))

    def key_averages(self, group_by_shape: bool = False) -> list[Row]:
        """One Row per (name, kind), or per (name, kind, shapes), in order of first event."""
        rows: dict = {}
        for e in self.events:
            key = (e.name, e.kind, e.shapes) if group_by_shape else (e.name, e.kind)
            row = rows.get(key)
            if row is None:
                row = rows[key] = Row(e.name, e.kind, shapes=e.shapes, location=e.location)
            row.calls += 1
            row.self_us += e.self_us
            row.total_us += e.duration_us
            row.nbytes += e.nbytes
            row.flops += e.flops
            if row.shapes != e.shapes:
                row.shapes = "(various)"
        return list(rows.values())

    def table(self, sort_by: str = "self_time", row_limit: int = 20,
              group_by_shape: bool = False) -> str:
        """The rows with the most `sort_by` first (`self_time`, `total_time`, `calls`,
        `avg_time`, `gbps`, `gflops`, `name`; torch's `self_cpu_time_total`,
        `cpu_time_total` and `count` too), at most `row_limit` of them (all: -1), then the
        totals. Shapes are a column when `group_by_shape`."""
        from .profiler_table import format_table
        return format_table(self, sort_by, row_limit, group_by_shape)

    def export_chrome_trace(self, path) -> None:
        """Write the events as Chrome trace-event JSON (`traceEvents` of complete events,
        `ph: "X"`, microseconds), which Perfetto and chrome://tracing open. The `python` gaps
        and the profiler's own events are left out: they show as the space between."""
        with open(path, "w") as f:
            json.dump(chrome_trace(self), f)


class record_function:
    """Label a block of code: while a profiler records, its time is one `user` event named
    `name`, holding the events inside it (as torch.profiler.record_function).

    >>> import kiln
    >>> with kiln.profiler.profile() as prof:
    ...     with kiln.profiler.record_function("forward"):
    ...         y = kiln.ones(4) * 3
    >>> [(e.name, e.depth) for e in prof.events if e.kind in ("user", "eager")]
    [('forward', 0), ('full', 1), ('full', 1), ('mul', 1)]
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise ValueError(f"record_function needs a non-empty name, got {name!r}")
        self.work = profiling.Work(name, "user")
        self._start = None

    def __enter__(self) -> "record_function":
        if profiling.STATE.recording:
            self._depth = profiling.depth()
            self._start = profiling.begin()
        return self

    def __exit__(self, *exc) -> None:
        if self._start is None:
            return
        end = profiling.clock()
        profiling.abandon(self._depth + 1)  # NOTE: what an exception left begun inside
        profiling.finish(self.work, self._start, end)
        self._start = None


def chrome_trace(prof: profile) -> dict:
    """The trace-event object of `export_chrome_trace`."""
    pid = os.getpid()
    out = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "args": {"name": "kiln"}}]
    threads = sorted({e.thread for e in prof.events})
    for t in threads:
        out.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": t,
                    "args": {"name": "profiled thread" if t == 0 else f"thread {t}"}})
    out.append({"name": "kiln.profiler.profile", "cat": "region", "ph": "X", "ts": 0.0,
                "dur": round(prof.wall_us, 3), "pid": pid, "tid": 0, "args": {}})
    for e in prof.events:
        if e.kind in ("python", "profiler"):
            continue
        args = {"kind": e.kind, "bytes": e.nbytes, "flops": e.flops, "shapes": e.shapes,
                "location": e.location, "device": e.device}
        if e.duration_us > 0:
            args["GB/s"] = round(e.nbytes / e.duration_us / 1e3, 3)
            args["GFLOP/s"] = round(e.flops / e.duration_us / 1e3, 3)
        out.append({"name": e.name, "cat": e.kind, "ph": "X", "ts": round(e.start_us, 3),
                    "dur": round(e.duration_us, 3), "pid": pid, "tid": e.thread,
                    "args": args})
    return {"traceEvents": out, "displayTimeUnit": "ms"}


# ---- nesting ----------------------------------------------------------------------------------
def _analyse(raw: list, start: int, end: int, main: int) -> list[Event]:
    """Raw (Work, start ns, end ns, thread) events -> Events nested by time per thread, with
    self times, and the profiling thread's gaps between top-level events as `python`."""
    numbers = {main: 0}
    by_thread: dict = {}
    for work, s, e, tid in raw:
        s, e = max(s, start), min(e, end)
        if e >= s:
            numbers.setdefault(tid, len(numbers))
            by_thread.setdefault(numbers[tid], []).append((s, e, work))
    events: list[Event] = []
    for thread, items in by_thread.items():
        events += _nest(items, thread, start)
    events += _gaps([e for e in events if e.thread == 0 and e.depth == 0], start, end)
    events.sort(key=lambda e: (e.start_us, -e.duration_us))
    return events


def _nest(items: list, thread: int, origin: int) -> list[Event]:
    """One thread's events: an event holds those that start and end within it."""
    items.sort(key=lambda i: (i[0], -i[1]))
    stack: list = []    # (end ns, Event)
    out = []
    for s, e, work in items:
        while stack and not (s >= stack[-1][0][0] and e <= stack[-1][0][1]):
            stack.pop()
        ev = Event(work.name, work.kind, (s - origin) / 1e3, (e - s) / 1e3, (e - s) / 1e3,
                   len(stack), thread, work.nbytes, work.flops, work.shapes, work.loc,
                   getattr(work.device, "name", "cpu"))
        if stack:
            stack[-1][1].self_us -= ev.duration_us
        stack.append(((s, e), ev))
        out.append(ev)
    return out


def _gaps(top: list[Event], start: int, end: int) -> list[Event]:
    """`python` events for the time no top-level event covers, from `start` to `end`."""
    out = []
    at = 0.0
    for e in sorted(top, key=lambda e: e.start_us) + [None]:
        until = (end - start) / 1e3 if e is None else e.start_us
        if until > at:
            out.append(Event(PYTHON, "python", at, until - at, until - at, 0, 0, 0, 0, "", "",
                             "cpu"))
        if e is not None:
            at = max(at, e.start_us + e.duration_us)
    return out
