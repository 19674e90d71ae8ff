"""An executable's call as one generated Python function: its steps in straight-line code.

The step objects in runtime/executable.py run a call by looping over steps and slot lists;
for a small call (W6: one kernel on 16 elements) those loops cost more than the kernel. This
writes the same work as one function with a local variable per buffer slot: the input checks,
the arena's temps, each step's fresh outputs and its device call, the in-place copy-backs, the
outputs. `Executable.run_steps` remains the reference: both run the same step objects' data
and `tests/runtime/test_executable.py` runs every schedule both ways.

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

import math

import numpy as np

from kiln.ir.errors import KilnError


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.scope: dict = {}

    def const(self, name: str, value) -> str:
        self.scope[name] = value
        return name

    def line(self, text: str, depth: int = 0) -> None:
        self.lines.append("    " * (depth or self.depth) + text)


def write_runner(exe):
    """`run(inputs) -> outputs` for Executable `exe` (see module docstring)."""
    from .executable import _CallStep, _LaunchStep, _RunStep, _SegmentStep
    w = _Writer()
    w.device = exe.device
    # NOTE: without temps or outputs that may view them, a call needs no arena
    w.arena = bool(exe.temp_slots or exe._copy_outputs)
    w.depth = 2 if w.arena else 1
    # NOTE: NumPy's functions, or a device's stand-ins for its own arrays (Device.xp)
    xp = exe._xp
    w.scope.update(ndarray=xp.ndarray, DEVICE=exe.device, EXE=exe, copyto=xp.copyto,
                   contiguous=xp.ascontiguousarray, may_share=xp.may_share_memory,
                   array=xp.array)
    _inputs(w, exe)
    for k, step in enumerate(exe.steps):
        _prepare(w, step)
        if isinstance(step, _SegmentStep):
            _segment(w, exe.device, step, k)
        elif isinstance(step, _LaunchStep):
            if not step.empty:
                w.line(f"DEVICE.launch({w.const(f'H{k}', step.handle)}, {_list(step.order)})")
        elif isinstance(step, _CallStep):
            st = step.step
            w.line(f"DEVICE.call({st.op!r}, {w.const(f'ATTRS{k}', st.attrs)}, "
                   f"{_list(step.ins)}, {_list(step.outs)}, {tuple(st.transpose)!r})")
        elif isinstance(step, _RunStep):
            targets = "".join(f"b{s}, " for s in step.outs)
            w.line(f"{targets}= {w.const(f'RUN{k}', step.compute)}({_list(step.ins)})")
        else:
            raise KilnError(f"the runner cannot write a {type(step).__name__}")
    _outputs(w, exe)
    source = "def run(inputs):\n" + "\n".join(w.lines) + "\n"
    exec(compile(source, f"<kiln runner of @{exe.schedule.name}>", "exec"), w.scope)
    run = w.scope["run"]
    run.source = source
    return run


def _list(slots) -> str:
    return "[" + ", ".join(f"b{s}" for s in slots) + "]"


def _inputs(w: _Writer, exe) -> None:
    n = len(exe.input_slots)
    w.line(f"if len(inputs) != {n}: EXE.wrong_input_count(inputs)", 1)
    if w.arena:
        w.line("arena = ARENAS.pop() if ARENAS else EXE.new_arena()", 1)
        w.scope["ARENAS"] = exe._arenas
        w.line("try:", 1)
    for i, (s, spec) in enumerate(zip(exe.input_slots, exe._input_specs)):
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


def _segment(w: _Writer, device, step, k: int) -> None:
    caller = getattr(device, "segment_caller", None)
    if caller is not None:
        w.line(f"{w.const(f'SEG{k}', caller(step.handle))}({', '.join(f'b{s}' for s in step.order)})")
    else:
        w.line(f"DEVICE.run_segment({w.const(f'H{k}', step.handle)}, {_list(step.order)})")


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
