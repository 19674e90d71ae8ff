"""Timing what runs: the events a profiler (kiln/profiler.py) keeps and `KILN_DEBUG=2` prints.

Nothing here runs unless `STATE.on`: a profiler is recording, or the debug level is 2 or
more. Then an executable's call goes through its timed runner (runtime/runner.py, written
apart from the fast one: the fast runner checks `STATE.on` once per call, never per kernel),
which times each kernel launch, library call and host step; and eager ops go through
`eager_hook` (installed in `EAGER_HOOK`, which frontend/tensor.py's dispatch reads).

An event is (Work, start ns, end ns, thread id): what ran, from `time.perf_counter_ns`. A step
that contains others (an executable's call, an eager CUDA op that launched a kernel) is
recorded after them; the profiler nests them by time. At level 2 each event with nothing
inside it prints one line:

    kiln: kernel @step/fused_0          12.40 us     2.64 GB/s  11%     0.83 GFLOP/s   1%  \
f32[1024] -> f32[1024]  demo.py:29

(kind, name, time, bandwidth and its share of the bandwidth peak, throughput and its share
of the flops peak (runtime/floors.py; `-` where unknown), operand and result types, the user's
line).
"""
from __future__ import annotations

import dataclasses
import threading
import time

from kiln import debug
from kiln.ir.types import user_loc

from .costs import op_cost, signature_text
from .floors import peaks

clock = time.perf_counter_ns


@dataclasses.dataclass(frozen=True)
class Work:
    """What one event ran. `kind`: `kernel` (a compiled kernel), `call` (a library
    routine), `host` (an op's NumPy reference between compiled steps), `segment` (a compiled
    segment's steps together, where they cannot be timed apart), `eager` (an eager op),
    `graph` (one call of a compiled executable), `compile`, `user` (a block labelled with
    kiln.profiler.record_function), `profiler` (the profiler's own bookkeeping) or `python`
    (the profiler's name for the time between top-level events). `device`: the runtime
    Device it ran on (None: the host)."""

    name: str
    kind: str
    nbytes: int = 0
    flops: int = 0
    shapes: str = ""
    loc: str = ""
    device: object = None


OVERHEAD = Work("(profiler)", "profiler")
# NOTE: what KILN_DEBUG=2 prints, where nothing ran inside (a compiled call or a labelled
# block is not a launch)
PRINTED = frozenset({"kernel", "call", "host", "segment", "eager"})


class _State:
    def __init__(self):
        self.on = False             # timed runners and the eager hook are in use
        self.printing = False       # KILN_DEBUG >= 2: a line per event with nothing inside
        self.recording = False      # a profiler keeps events
        self.sinks: list = []       # the event lists of the active profilers
        self.local = threading.local()
        self.lock = threading.Lock()


STATE = _State()
# NOTE: read by frontend/tensor.py's dispatch on every eager op: None, or `eager_hook`
EAGER_HOOK: list = [None]


def refresh() -> None:
    """Follow the debug level and the active profilers (called when either changes)."""
    STATE.printing = debug.LEVEL >= 2
    STATE.recording = bool(STATE.sinks)
    STATE.on = STATE.printing or STATE.recording
    EAGER_HOOK[0] = eager_hook if STATE.on else None


def add_sink(events: list) -> None:
    with STATE.lock:
        STATE.sinks.append(events)
    refresh()


def remove_sink(events: list) -> None:
    with STATE.lock:
        STATE.sinks = [s for s in STATE.sinks if s is not events]
    refresh()


def _stack() -> list:
    """Per thread, one flag per event begun and not finished: has anything finished inside
    it? (only events with nothing inside print at level 2)."""
    stack = getattr(STATE.local, "stack", None)
    if stack is None:
        stack = STATE.local.stack = []
    return stack


def begin() -> int:
    """Start an event; its start time."""
    _stack().append(False)
    return clock()


def abandon(depth: int) -> None:
    """Forget the events begun past `depth` (a step raised before it finished)."""
    del _stack()[depth:]


def depth() -> int:
    return len(_stack())


def finish(work: Work, start: int, end: int) -> None:
    """End the innermost event begun: record it, print it at level 2 if nothing ran inside."""
    stack = _stack()
    inner = stack.pop() if stack else False
    if stack:
        stack[-1] = True
    if STATE.printing and not inner and work.kind in PRINTED:
        print_line(work, start, end)
    if STATE.recording:
        _record(work, start, end)
        # NOTE: the time since the event ended (building its Work, printing, recording) is
        # the profiler's own: an event of its own, so no op's or Python's time holds it
        _record(OVERHEAD, end, clock())


def _record(work: Work, start: int, end: int) -> None:
    event = (work, start, end, threading.get_ident())
    for sink in STATE.sinks:
        sink.append(event)


def record_compile(name: str, text: str, start: int, end: int) -> None:
    """A compile event (kiln/debug.py), recorded by its times: no begin (a compile that raises
    records nothing and leaves nothing begun)."""
    if STATE.recording:
        _record(Work(name, "compile", shapes=text), start, end)


# ---- eager ops --------------------------------------------------------------------------------
def eager_hook(run, opdef, inputs, attrs, holder):
    """`run(opdef, inputs, attrs, holder)` (frontend/tensor.py's `_eager`), timed."""
    level = depth()
    start = begin()
    try:
        results = run(opdef, inputs, attrs, holder)
    except BaseException:
        abandon(level)
        raise
    device = _sync(results)
    end = clock()
    finish(eager_work(opdef, inputs, results, attrs, device), start, end)
    return results


def _sync(results):
    """The device of results on a GPU (waited for: its work is queued), else None."""
    for r in results:
        device = getattr(r._data, "device", None)
        if device is not None and hasattr(device, "synchronize"):
            device.synchronize()
            return device
    return None


def eager_work(opdef, inputs, results, attrs, device=None) -> "EagerWork":
    """An eager op's Work: what it read and made, kept as (dtype, shape) pairs and costed
    when asked (the profiler asks once its block ends, not while the program runs)."""
    loc = user_loc()
    view = opdef.view is not None and any(r._base is not None for r in results)
    return EagerWork(opdef, attrs, [(t._data.dtype, t._data.shape) for t in inputs],
                     [(r._data.dtype, r._data.shape) for r in results], view,
                     "" if loc is None else str(loc), device)


class EagerWork:
    """Work's fields for an eager op, computed on first read (see `eager_work`)."""

    kind = "eager"

    def __init__(self, opdef, attrs, ins, outs, view, loc, device):
        self.name = opdef.name
        self._opdef, self._attrs, self._ins, self._outs = opdef, attrs, ins, outs
        self._view = view
        self.loc, self.device = loc, device
        self._cost = None

    def _costed(self):
        if self._cost is None:
            from kiln.ir import dtypes
            from kiln.ir.types import TensorType
            ins, outs = ([TensorType(dtypes.from_numpy(d), tuple(s)) for d, s in specs]
                         for specs in (self._ins, self._outs))
            nbytes, flops = op_cost(self.name, self._opdef.make_attrs(self._attrs), ins, outs)
            self._cost = (0 if self._view else nbytes, flops, signature_text(ins, outs))
        return self._cost

    nbytes = property(lambda self: self._costed()[0])
    flops = property(lambda self: self._costed()[1])
    shapes = property(lambda self: self._costed()[2])


# ---- KILN_DEBUG=2 -----------------------------------------------------------------------------
_ANNOUNCED: set = set()


def print_line(work: Work, start: int, end: int) -> None:
    p = _peaks_announced(work.device)
    loc = work.loc or _user_line()  # NOTE: an eager GPU op's kernel: the line is on the stack
    debug.write(format_line(work, (end - start) / 1e3, p.gbps, p.gflops, loc) + "\n")


def _peaks_announced(device):
    p = peaks(device)
    name = getattr(device, "name", "cpu")
    if name not in _ANNOUNCED:
        _ANNOUNCED.add(name)
        bw = "?" if p.gbps is None else f"{p.gbps:.1f}"
        fl = "?" if p.gflops is None else f"{p.gflops:.1f}"
        debug.log(f"peaks of {name}: {bw} GB/s, {fl} GFLOP/s ({p.source}); the % after "
                  "each rate is its share of the peak")
    return p


def _user_line() -> str:
    """The user's line on the stack (user_loc: past Kiln's generated code, the standard
    library and installed packages too)."""
    loc = user_loc()
    return "" if loc is None else str(loc)


def format_line(work: Work, us: float, peak_gbps, peak_gflops, loc: str | None = None) -> str:
    """One level-2 line (see the module docstring).

    >>> w = Work("@f/fused_0", "kernel", 8192, 1024, "f32[1024] -> f32[1024]", "demo.py:29")
    >>> format_line(w, 2.0, 20.0, None).split()  # doctest: +NORMALIZE_WHITESPACE
    ['kiln:', 'kernel', '@f/fused_0', '2.00', 'us', '4.10', 'GB/s', '20%', '0.51', 'GFLOP/s',
     '-', 'f32[1024]', '->', 'f32[1024]', 'demo.py:29']
    """
    seconds = max(us, 1e-3) / 1e6
    gbps = work.nbytes / seconds / 1e9
    gflops = work.flops / seconds / 1e9
    loc = work.loc if loc is None else loc
    where = f"  {loc}" if loc else ""
    return (f"kiln: {work.kind:<6} {work.name:<28} {us:>10.2f} us {gbps:>9.2f} GB/s "
            f"{_share(gbps, peak_gbps):>4} {gflops:>9.2f} GFLOP/s {_share(gflops, peak_gflops):>4}"
            f"  {work.shapes}{where}")


def _share(rate: float, peak) -> str:
    return "-" if not peak else f"{100 * rate / peak:.0f}%"


refresh()
