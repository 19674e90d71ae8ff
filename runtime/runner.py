"""An executable's call as one generated Python function: its steps in straight-line code.

The step objects in runtime/executable.py run a call by looping over steps and slot lists;
for a small call (W6: one kernel on 16 elements) those loops cost more than the kernel. This
writes the same work as one function with a local variable per buffer slot: the input checks,
the arena's temps, each step's fresh outputs and its device call, the in-place copy-backs, the
outputs. `Executable.run_steps` remains the reference: both run the same step objects' data
and `tests/runtime/test_executable.py` runs every schedule both ways.

The timed runner (`timed=True`, used while a profiler records or at `KILN_DEBUG=2`; see
runtime/profiling.py) is the same code with each step between a clock read and a `FINISH`
that records it, and a compiled segment taken apart into its kernels and library calls, so
each is timed on its own. The fast runner pays one check per call for it, never one per step.

    >>> import numpy as np
    >>> from kiln.ir.schedule_text import parse_schedule
    >>> from kiln.runtime.executable import build_executable
    >>> from kiln.runtime.null import NullDevice
    >>> exe = build_executable(parse_schedule('''
    ... schedule @f(%x: f32[2,2]) {
    ...   buffer %0: f32[2,2] output
    ...   call matmul (%x, %x) -> (%0)
    ...   return %0
    ... }'''), NullDevice(compute=True))
    >>> print(exe.runner.source)
    def run(inputs):
        if PROFILING.on: return EXE.run_timed(inputs)
        if len(inputs) != 1: EXE.wrong_input_count(inputs)
        b0 = inputs[0]
        if not (type(b0) is ndarray and b0.shape == (2, 2) and b0.strides == (8, 4) and b0.dtype == DT0):
            b0 = EXE.check_input(0, b0)
        b1 = EMPTY1((2, 2), FT1)
        DEVICE.call('matmul', ATTRS0, [b0, b0], [b1], ())
        outs = [b1]
        return outs
    <BLANKLINE>
"""
from __future__ import annotations

import ctypes
import math

import numpy as np

from kiln.ir.errors import KilnError
from kiln.ir.schedule import Call, Launch

from . import profiling
from .costs import signature_text, step_cost
from .profiling import Work


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.scope: dict = {}
        self.timed = False
        self.sync = False

    def const(self, name: str, value) -> str:
        self.scope[name] = value
        return name

    def line(self, text: str, depth: int = 0) -> None:
        self.lines.append("    " * (depth or self.depth) + text)

    def step(self, text: str, work_name: str, work_fn) -> None:
        """One step's code; timed, between a clock read and the FINISH that records it."""
        if not self.timed:
            self.line(text)
            return
        self.line("t = BEGIN()")
        self.line(text)
        if self.sync:
            self.line("SYNC()")
        self.line(f"FINISH({self.const(work_name, work_fn())}, t, CLOCK())")


def write_runner(exe, timed: bool = False, checked: bool = True):
    """`run(inputs) -> outputs` for Executable `exe` (see module docstring); `timed`: the
    timed runner's body (`timed_runner` wraps it). Not `checked`: `run(b0, b1, ...)`, the
    input arrays as arguments, taken as they are: for a caller that has checked each one's
    type, shape, strides and dtype against the executable's inputs (frontend/jit_fast.py)."""
    from .executable import _CallStep, _LaunchStep, _RunStep, _SegmentStep
    w = _Writer()
    w.device = exe.device
    w.timed = timed
    w.checked = checked
    # NOTE: a device that queues work (CUDA) is waited for, so the time is the step's own
    w.sync = timed and type(exe.device).synchronize is not _base_synchronize()
    # NOTE: without temps or outputs that may view them, a call needs no arena
    w.arena = bool(exe.temp_slots or exe._copy_outputs)
    w.depth = 2 if w.arena else 1
    # NOTE: NumPy's functions, or a device's stand-ins for its own arrays (Device.xp)
    xp = exe._xp
    w.scope.update(ndarray=xp.ndarray, DEVICE=exe.device, EXE=exe, copyto=xp.copyto,
                   contiguous=xp.ascontiguousarray, may_share=xp.may_share_memory,
                   array=xp.array, PROFILING=profiling.STATE)
    if timed:
        w.scope.update(BEGIN=profiling.begin, FINISH=profiling.finish, CLOCK=profiling.clock,
                       SYNC=exe.device.synchronize)
    _inputs(w, exe)
    name = exe.schedule.name
    for k, step in enumerate(exe.steps):
        _prepare(w, step)
        if isinstance(step, _SegmentStep):
            _segment(w, exe, step, k)
        elif isinstance(step, _LaunchStep):
            if not step.empty:
                w.step(f"DEVICE.launch({w.const(f'H{k}', step.handle)}, {_list(step.order)})",
                       f"W{k}", lambda: step_work(name, step.step, exe.device))
        elif isinstance(step, _CallStep):
            st = step.step
            w.step(f"DEVICE.call({st.op!r}, {w.const(f'ATTRS{k}', st.attrs)}, "
                   f"{_list(step.ins)}, {_list(step.outs)}, {tuple(st.transpose)!r})",
                   f"W{k}", lambda: step_work(name, st, exe.device))
        elif isinstance(step, _RunStep):
            targets = "".join(f"b{s}, " for s in step.outs)
            w.step(f"{targets}= {w.const(f'RUN{k}', step.compute)}({_list(step.ins)})",
                   f"W{k}", lambda: step_work(name, step.step, exe.device))
        else:
            raise KilnError(f"the runner cannot write a {type(step).__name__}")
    _outputs(w, exe)
    params = "inputs" if checked else ", ".join(f"b{s}" for s in exe.input_slots)
    source = f"def run({params}):\n" + "\n".join(w.lines) + "\n"
    kind = "timed runner" if timed else "runner"
    exec(compile(source, f"<kiln {kind} of @{exe.schedule.name}>", "exec"), w.scope)
    run = w.scope["run"]
    run.source = source
    return run


def _base_synchronize():
    from .device import Device
    return Device.synchronize


def step_work(graph: str, step, device) -> Work:
    """The Work of one schedule step of graph `graph` (its cost: runtime/costs.py)."""
    nbytes, flops = step_cost(step)
    if isinstance(step, Launch):
        name, kind = step.kernel.name, "kernel"
    else:
        name, kind = step.op, "call" if isinstance(step, Call) else "host"
    # NOTE: a host step is an op's NumPy reference: it runs on the host whatever the device
    return Work(f"@{graph}/{name}", kind, nbytes, flops,
                signature_text([b.type for b in step.ins], [b.type for b in step.outs]),
                "" if step.loc is None else str(step.loc), None if kind == "host" else device)


def timed_runner(exe):
    """The executable's call with every step timed (runtime/profiling.py), itself recorded as
    one `graph` event."""
    body = write_runner(exe, timed=True)
    work = graph_work(exe)
    sync = exe.device.synchronize

    def run(inputs):
        level = profiling.depth()
        start = profiling.begin()
        try:
            outs = body(inputs)
            sync()
        except BaseException:
            profiling.abandon(level)
            raise
        profiling.finish(work, start, profiling.clock())
        return outs
    run.source = body.source
    return run


def graph_work(exe) -> Work:
    """One call of `exe`: the sum of its steps' costs."""
    s = exe.schedule
    costs = [step_cost(st) for st in s.steps]
    return Work(f"@{s.name}", "graph", sum(c[0] for c in costs), sum(c[1] for c in costs),
                signature_text([b.type for b in s.inputs], [b.type for b in s.outputs]), "",
                exe.device)


def _list(slots) -> str:
    return "[" + ", ".join(f"b{s}" for s in slots) + "]"


def _inputs(w: _Writer, exe) -> None:
    n = len(exe.input_slots)
    if not w.checked:
        w.line(f"if PROFILING.on: return EXE.run_timed({_list(exe.input_slots)})", 1)
        if exe._updated or exe.writebacks:
            # NOTE: the arrays written back into, under the checked runner's name
            w.line(f"inputs = {_list(exe.input_slots)}", 1)
    elif not w.timed:
        w.line("if PROFILING.on: return EXE.run_timed(inputs)", 1)
    if w.checked:
        w.line(f"if len(inputs) != {n}: EXE.wrong_input_count(inputs)", 1)
    if w.arena:
        w.line("arena = ARENAS.pop() if ARENAS else EXE.new_arena()", 1)
        w.scope["ARENAS"] = exe._arenas
        w.line("try:", 1)
    for i, (s, spec) in enumerate(zip(exe.input_slots, exe._input_specs)):
        if not w.checked:
            break
        shape, dtype, _, strides = spec
        w.line(f"b{s} = inputs[{i}]")
        w.line(f"if not (type(b{s}) is ndarray and b{s}.shape == {shape!r} and b{s}.strides == "
               f"{strides!r} and b{s}.dtype == {w.const(f'DT{i}', dtype)}):")
        w.line(f"b{s} = EXE.check_input({i}, b{s})", w.depth + 1)
    temps = sorted(exe.temp_slots)
    if temps:
        w.line("E = arena.env")
        for s in temps:
            w.line(f"b{s} = E[{s}]")


def _prepare(w: _Writer, step) -> None:
    """What `_Step.prepare` does: value operands made contiguous, fresh outputs allocated."""
    for s in step.contiguous:
        w.line(f"if not b{s}.flags.c_contiguous: b{s} = contiguous(b{s})")
    for s, shape, dtype in step.fresh:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        empty = w.const(f"EMPTY{s}", w.device.allocator_for(nbytes))
        w.line(f"b{s} = {empty}({shape!r}, {w.const(f'FT{s}', dtype)})")


def _segment(w: _Writer, exe, step, k: int) -> None:
    parts = _segment_parts(step) if w.timed else None
    if parts is not None:
        _segment_steps(w, exe, step, k, parts)
        return
    caller = getattr(exe.device, "segment_caller", None)
    if caller is not None:
        args = ", ".join(f"b{s}" for s in step.order)
        text = f"{w.const(f'SEG{k}', caller(step.handle))}({args})"
    else:
        text = f"DEVICE.run_segment({w.const(f'H{k}', step.handle)}, {_list(step.order)})"
    w.step(text, f"W{k}", lambda: _segment_work(exe, step))


def _segment_steps(w: _Writer, exe, step, k: int, parts) -> None:
    """A segment's steps one by one (timed): each kernel through the whole-range function
    the segment's entry calls, each matmul through the device's library call (NumPy's BLAS:
    the OpenBLAS the entry calls)."""
    slots = exe._slot_map
    name = exe.schedule.name
    for j, (st, fn) in enumerate(parts):
        ins = [slots[id(b)] for b in st.ins]
        outs = [slots[id(b)] for b in st.outs]
        if fn is not None:
            text = f"{w.const(f'K{k}_{j}', fn)}({', '.join(f'b{s}' for s in ins + outs)})"
        else:
            text = (f"DEVICE.call({st.op!r}, {w.const(f'ATTRS{k}_{j}', st.attrs)}, "
                    f"{_list(ins)}, {_list(outs)}, {tuple(st.transpose)!r})")
        w.step(text, f"W{k}_{j}", lambda st=st: step_work(name, st, exe.device))


def _segment_parts(step):
    """(schedule step, caller of its kernel's whole-range function or None for a library
    call) per step of a compiled segment; None when its artifact does not list one compiled
    kernel per distinct kernel, in order of first use (then it is timed whole)."""
    kernels = list(getattr(step.handle.artifact, "kernels", ()))
    order: dict = {}
    for st in step.steps:
        if isinstance(st, Launch):
            order.setdefault(id(st.kernel), len(order))
    if len(order) != len(kernels):
        return None
    parts = []
    for st in step.steps:
        if not isinstance(st, Launch):
            parts.append((st, None))
            continue
        art = kernels[order[id(st.kernel)]]
        if art.name != st.kernel.name or not hasattr(art, "address"):
            return None
        parts.append((st, _whole_range_caller(art.address, len(st.ins) + len(st.outs))))
    return parts


def _whole_range_caller(address: int, n: int):
    """`call(*arrays)`: the function at `address`, `void f(ptr, ...)` over `n` buffers (a
    segment kernel's whole-range function, codegen/cpu/segment.py)."""
    from .cpu.pointers import data_pointers
    fn = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * n))(address)

    def call(*arrays):
        fn(*data_pointers(arrays))
    call.fn = fn        # NOTE: keeps the ctypes function alive with the caller
    return call


def _segment_work(exe, step) -> Work:
    costs = [step_cost(st) for st in step.steps]
    return Work(f"@{exe.schedule.name}/segment_{step.handle.name}", "segment",
                sum(c[0] for c in costs), sum(c[1] for c in costs),
                f"{len(step.steps)} steps", "" if step.step.loc is None else str(step.step.loc),
                exe.device)


def _outputs(w: _Writer, exe) -> None:
    for i, s in exe._updated:
        w.line(f"if b{s} is not inputs[{i}]: copyto(inputs[{i}], b{s})")
    w.line(f"outs = {_list(exe.output_slots)}")
    for i in exe._copy_outputs:
        w.line(f"if may_share(outs[{i}], arena.block): outs[{i}] = array(outs[{i}], copy=True)")
    if exe.writebacks:
        env = "{" + ", ".join(f"{s}: b{s}" for s in sorted(_writeback_slots(exe))) + "}"
        w.line(f"outs = EXE._write_back({env}, inputs, outs)")
    w.line("return outs")
    if w.arena:
        w.line("finally:", 1)
        w.line("ARENAS.append(arena)")


def _writeback_slots(exe) -> set:
    return {s for _, s in exe.writebacks}
