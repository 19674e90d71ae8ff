"""An Executable: a planned schedule run on one Device.

Everything that does not depend on the input values (slots, loaded kernels, arena views,
when a buffer dies) is prepared when it is built, so a call is one Python loop over prepared
steps. Temps live in an arena (one block per concurrent call, reused across calls), outputs are
fresh per call (the caller keeps them), `run` steps make their own arrays.

    >>> import numpy as np
    >>> from kiln.ir.schedule_text import parse_schedule
    >>> from kiln.runtime.null import NullDevice
    >>> s = parse_schedule('''
    ... schedule @f(%x: f32[2,2]) {
    ...   buffer %0: f32[2,2] output
    ...   call matmul (%x, %x) -> (%0)
    ...   return %0
    ... }''')
    >>> build_executable(s, NullDevice(compute=True))([np.eye(2, dtype=np.float32)])[0].tolist()
    [[1.0, 0.0], [0.0, 1.0]]
"""
from __future__ import annotations

import os

import numpy as np

from kiln import debug
from kiln.ir.errors import KilnError
from kiln.ir.interpreter import run_op
from kiln.ir.schedule import Call, Launch, Run, Schedule

from .device import Device, c_strides
from .profiling import STATE as PROFILING


class _Arena:
    """One arena block, and the call environment with a view per planned temp in its slot
    (each call starts from a copy of `env`)."""

    def __init__(self, schedule: Schedule, slots: dict, device: Device):
        self.block = _aligned(device, max(schedule.arena_bytes or 0, 1))
        self.env = [None] * len(slots)
        for b in schedule.buffers:
            if b.kind == "temp":
                view = self.block[b.offset:b.offset + b.type.nbytes]
                self.env[slots[id(b)]] = view.view(b.type.dtype.np).reshape(b.type.shape)


_ALIGN = 64     # NOTE: a cache line, and one AVX-512 vector: no load splits across two


def _aligned(device: Device, nbytes: int) -> np.ndarray:
    """`nbytes` bytes starting at a multiple of _ALIGN (plan_memory aligns the offsets)."""
    raw = device.empty((nbytes + _ALIGN,), np.uint8)
    # NOTE: a host array's address, or a device array's (the CUDA array interface)
    face = getattr(raw, "__array_interface__", None) or raw.__cuda_array_interface__
    skip = -face["data"][0] % _ALIGN
    return raw[skip:skip + nbytes]


class _Step:
    """A step with its input and output slots; `fresh` outputs are allocated per call."""

    def __init__(self, step, slots: dict, device: Device):
        self.step = step
        self.ins = [slots[id(b)] for b in step.ins]
        self.outs = [slots[id(b)] for b in step.outs]
        # NOTE: an output updated in place (also an operand) was allocated by its maker
        self.fresh = [(slots[id(b)], tuple(b.type.shape), b.type.dtype.np)
                      for b in step.outs if b.kind == "output" and b not in step.ins]
        # NOTE: a `run` step may leave a strided view; kernels read C-contiguous buffers
        self.contiguous = [slots[id(b)] for b in step.ins if b.kind == "value"]
        self.device = device

    def prepare(self, env: list):
        for s in self.contiguous:
            a = env[s]
            if not a.flags.c_contiguous:
                env[s] = np.ascontiguousarray(a)
        empty = self.device.empty
        for s, shape, dtype in self.fresh:
            env[s] = empty(shape, dtype)


class _LaunchStep(_Step):
    def __init__(self, step: Launch, slots, device, handle):
        super().__init__(step, slots, device)
        self.handle = handle
        self.empty = any(d == 0 for d in step.kernel.space)
        self.order = self.ins + self.outs

    def __call__(self, env: list):
        self.prepare(env)
        if not self.empty:
            self.device.launch(self.handle, [env[s] for s in self.order])


class _CallStep(_Step):
    def __call__(self, env: list):
        self.prepare(env)
        self.device.call(self.step.op, self.step.attrs, [env[s] for s in self.ins],
                         [env[s] for s in self.outs], self.step.transpose)


class _RunStep(_Step):
    """An op's NumPy reference; errors name the op and the user's line."""

    def __init__(self, step: Run, slots, device):
        super().__init__(step, slots, device)
        self.types = [b.type for b in step.outs]
        on_host = getattr(device, "on_host", None)
        if on_host is not None:     # NOTE: a device whose arrays NumPy cannot read (CUDA)
            self.compute = on_host(self.compute)

    def __call__(self, env: list):
        for s, r in zip(self.outs, self.compute([env[s] for s in self.ins])):
            env[s] = r

    def compute(self, arrays: list) -> list:
        try:
            return run_op(self.step.op, self.step.attrs, arrays, self.types, loc=self.step.loc)
        except KilnError as e:
            raise e.at(self.step.loc)   # NOTE: a reference's error, at the user's line
        except Exception as e:  # NOTE: same wording as the interpreter
            raise KilnError(f"while running {self.step.op}: {type(e).__name__}: {e}",
                            loc=self.step.loc) from e


class Executable:
    """A compiled schedule: `exe(list_of_arrays) -> list_of_arrays` (its outputs).

    The write-backs that end a functional graph are performed into the arrays the caller
    passed, after every step."""

    def __init__(self, schedule: Schedule, device: Device, handles: dict, groups=None,
                 segments=None):
        self.schedule = schedule
        self.device = device
        self.graph = None              # NOTE: the graph it came from, when there is one
        slots: dict[int, int] = {}
        for b in schedule.inputs + schedule.buffers:
            slots.setdefault(id(b), len(slots))
        self.slots = len(slots)
        self.input_slots = [slots[id(b)] for b in schedule.inputs]
        self.output_slots = [slots[id(b)] for b in schedule.outputs]
        self.writebacks = [(schedule.inputs.index(d), slots[id(s)]) for d, s in schedule.writes]
        segments = segments or {}
        # NOTE: NumPy, or the device's stand-ins for the few NumPy functions a call uses
        self._xp = getattr(device, "xp", np)
        self.steps = []
        for item in (groups if groups is not None else schedule.steps):
            if isinstance(item, list):
                steps, handle = segments[id(item[0])]
                self.steps.append(_SegmentStep(steps, slots, device, handle))
            else:
                self.steps.append(_make_step(item, slots, device, handles))
        self.handles = handles
        self.segments = [h for _, h in segments.values()]
        self._slot_map = slots
        self._input_specs = [(tuple(b.type.shape), b.type.dtype.np, b.type,
                              c_strides(b.type.shape, b.type.dtype.np.itemsize))
                             for b in schedule.inputs]
        self._arenas: list[_Arena] = []
        self._runner = None
        self.temp_slots = [slots[id(b)] for b in schedule.buffers if b.kind == "temp"]
        self._copy_outputs = _outputs_in_arena(schedule, slots)
        # NOTE: only inputs and what `run` steps make (NumPy may return views) can share
        # memory with an input; kernels and calls write buffers of their own
        self._may_alias = {slots[id(b)] for b in schedule.inputs + schedule.buffers
                           if b.kind in ("input", "value")}
        self.fresh_outputs = _fresh_outputs(schedule)
        # NOTE: inputs a kernel updates in place; an input made contiguous for the call is a
        # copy, which is copied back into the caller's array
        updated = {id(b) for st in schedule.steps if isinstance(st, Launch) for b in st.outs
                   if b.kind == "input"}
        self._updated = [(i, slots[id(b)]) for i, b in enumerate(schedule.inputs)
                         if id(b) in updated]

    @property
    def written_inputs(self) -> list[int]:
        """Indices of the inputs a call writes (write-backs and updates in place)."""
        return sorted({i for i, _ in self.writebacks} | {i for i, _ in self._updated})

    @property
    def kernels(self) -> list:
        """The loaded kernels' artifacts, in launch order (for the CLI's stages)."""
        out = []
        for s in self.steps:
            if isinstance(s, _SegmentStep):
                out += list(s.handle.artifact.kernels)
            elif isinstance(s, _LaunchStep) and hasattr(s.handle, "artifact"):
                out.append(s.handle.artifact)
        return out

    @property
    def work(self) -> list:
        """(kernel name, estimated work) per loaded kernel, for the threading tests."""
        return [(h.name, h.work) for h in self.handles.values() if hasattr(h, "work")]

    @property
    def entries(self) -> int:
        """How many times one call enters compiled code (segments plus threaded launches)."""
        return sum(isinstance(s, (_SegmentStep, _LaunchStep)) for s in self.steps)

    def __repr__(self) -> str:
        return (f"<Executable @{self.schedule.name}: {len(self.steps)} steps, "
                f"{len(self.kernels)} kernels, arena {self.schedule.arena_bytes or 0} bytes>")

    def __call__(self, inputs) -> list[np.ndarray]:
        return (self._runner or self.runner)(inputs)

    def run_timed(self, inputs) -> list[np.ndarray]:
        """A call through the timed runner (runtime/runner.py): each step recorded, for a
        profiler or KILN_DEBUG=2 (the fast runner sends its calls here while either is on)."""
        timed = self.__dict__.get("_timed")
        if timed is None:
            from .runner import timed_runner
            timed = self._timed = timed_runner(self)
        return timed(inputs)

    @property
    def runner(self):
        """This executable's call as one generated function (runtime/runner.py), written on
        first use; the step interpreter `run_steps` where KILN_RUNNER=steps."""
        if self._runner is None:
            if os.environ.get("KILN_RUNNER") == "steps":
                self._runner = self.run_steps
            else:
                from .runner import write_runner
                self._runner = write_runner(self)
        return self._runner

    def unchecked_runner(self):
        """`run(b0, b1, ...) -> outputs`: the runner without its input checks, for a caller
        that has made them (runtime/runner.py); None where there is no generated runner."""
        if "_unchecked" not in self.__dict__:
            from .runner import write_runner
            slots = self.input_slots
            self._unchecked = None if os.environ.get("KILN_RUNNER") == "steps" or \
                len(set(slots)) != len(slots) else write_runner(self, checked=False)
        return self._unchecked

    def wrong_input_count(self, inputs):
        raise KilnError(f"executable @{self.schedule.name} takes {len(self.input_slots)} "
                        f"inputs, got {len(inputs)}")

    def new_arena(self) -> "_Arena":
        return _Arena(self.schedule, self._slot_map, self.device)

    def check_input(self, i: int, a) -> np.ndarray:
        return _check_input(self.schedule.name, i, a, self._input_specs[i], self._xp)

    def run_steps(self, inputs) -> list[np.ndarray]:
        """A call, run by looping over `self.steps` (the reference for the generated runner;
        while a profiler records or at KILN_DEBUG=2, the timed runner runs it instead)."""
        if PROFILING.on:
            return self.run_timed(inputs)
        if len(inputs) != len(self.input_slots):
            self.wrong_input_count(inputs)
        arena = self._arenas.pop() if self._arenas else self.new_arena()
        env = arena.env.copy()
        ndarray = self._xp.ndarray      # NOTE: NumPy's, or the device's array type
        try:
            for i, (a, s, spec) in enumerate(zip(inputs, self.input_slots, self._input_specs)):
                # NOTE: the common case (a C-contiguous ndarray of the planned type) in a
                # few comparisons; `flags` makes an object per read
                if type(a) is ndarray and a.shape == spec[0] and a.strides == spec[3] \
                        and a.dtype == spec[1]:
                    env[s] = a
                else:
                    env[s] = self.check_input(i, a)
            for step in self.steps:
                step(env)
            for i, s in self._updated:
                if env[s] is not inputs[i]:
                    self._xp.copyto(inputs[i], env[s])
            outs = [env[s] for s in self.output_slots]
            for i in self._copy_outputs:
                if self._xp.may_share_memory(outs[i], arena.block):
                    outs[i] = self._xp.array(outs[i], copy=True)
            if self.writebacks:
                outs = self._write_back(env, inputs, outs)
        finally:
            self._arenas.append(arena)
        return outs

    def _write_back(self, env: list, inputs, outs: list) -> list:
        """Write the final values into the caller's arrays. A value or output that still
        reads a written array (the old x written into y while x is written too, an output
        that views an input) is copied first: every value is the one before the writes."""
        written = [inputs[i] for i, _ in self.writebacks]
        xp = self._xp

        def own(a, may_alias):
            if may_alias and any(xp.may_share_memory(a, w) for w in written):
                return xp.array(a, copy=True)
            return a
        values = [own(env[s], s in self._may_alias) for _, s in self.writebacks]
        outs = [own(o, s in self._may_alias) for o, s in zip(outs, self.output_slots)]
        for (i, _), v in zip(self.writebacks, values):
            xp.copyto(inputs[i], v)
        return outs


def _fresh_outputs(schedule: Schedule) -> list[bool]:
    """Per output: is its array new memory of this call that nothing else returned or passed
    in shares? (an output buffer a kernel or call writes, listed once; a `run` step's
    NumPy result may be a view of its input)."""
    run_outs = {id(b) for st in schedule.steps if isinstance(st, Run) for b in st.outs}
    ids = [id(b) for b in schedule.outputs]
    return [b.kind == "output" and id(b) not in run_outs and ids.count(id(b)) == 1
            for b in schedule.outputs]


def _outputs_in_arena(schedule: Schedule, slots: dict) -> list[int]:
    """Output positions whose array may be (a view of) an arena temp: checked before they
    leave and copied if they are, since the next call reuses the arena. A `run` step's
    NumPy reference may return a view of any input."""
    in_arena = {id(b) for b in schedule.buffers if b.kind == "temp"}
    for st in schedule.steps:
        if isinstance(st, Run) and any(id(b) in in_arena for b in st.ins):
            in_arena.update(id(b) for b in st.outs)
    return [i for i, b in enumerate(schedule.outputs) if id(b) in in_arena]


def _check_input(name: str, i: int, a, spec, xp=np) -> np.ndarray:
    """Input `a` as a call takes it: an array of the device's kind (`xp`: NumPy, or a
    device's stand-ins that copy a host array over), of the planned type, C-contiguous."""
    shape, dtype, type_, _ = spec
    a = xp.asarray(a)
    if a.shape != shape or a.dtype != dtype:
        raise KilnError(f"executable @{name}: input {i} must be {type_}, got array "
                        f"{a.dtype}{list(a.shape)}")
    if not a.flags.c_contiguous:
        a = xp.ascontiguousarray(a)
    return a


def _make_step(step, slots, device, handles):
    if isinstance(step, Launch):
        return _LaunchStep(step, slots, device, handles[id(step.kernel)])
    if isinstance(step, Call):
        return _CallStep(step, slots, device)
    return _RunStep(step, slots, device)


class _SegmentStep(_Step):
    """Steps compiled into one entry function: one call, given a buffer pointer array."""

    def __init__(self, steps: list, slots: dict, device: Device, handle):
        self.step = steps[0]
        self.steps = steps
        self.handle = handle
        self.ins = [slots[id(b)] for st in steps for b in st.ins]
        self.outs = [slots[id(b)] for st in steps for b in st.outs]
        made: dict = {}
        for st in steps:
            for b in st.outs:
                if b.kind == "output" and b not in st.ins:
                    made.setdefault(id(b), (slots[id(b)], tuple(b.type.shape),
                                            b.type.dtype.np))
        self.fresh = list(made.values())
        self.contiguous = [slots[id(b)] for st in steps for b in st.ins if b.kind == "value"]
        self.device = device
        self.order = [slots[id(b)] for b in handle.buffers]

    def __call__(self, env: list):
        self.prepare(env)
        self.device.run_segment(self.handle, [env[s] for s in self.order])


def _segments(schedule: Schedule, device: Device, renderer) -> list:
    """Steps grouped into runs one compiled entry function can run: launches whose work is
    below the device's serial limit (larger ones are split over threads) and float matmuls.
    Each item is a list of steps (a segment) or a single step."""
    limit = getattr(device, "serial_work_limit", None)
    if limit is None or not hasattr(renderer, "compile_segment"):
        return list(schedule.steps)
    out, run = [], []
    for st in schedule.steps:
        if _segmentable(st, renderer, limit):
            run.append(st)
            continue
        if run:
            out.append(run)
            run = []
        out.append(st)
    if run:
        out.append(run)
    return out


def _segmentable(st, renderer, limit) -> bool:
    if isinstance(st, Launch):
        return (not any(d == 0 for d in st.kernel.space)
                and renderer.kernel_work(st.kernel) < limit)
    if isinstance(st, Call):
        return st.op == "matmul" and st.outs[0].type.dtype.value in ("f32", "f64") \
            and st.outs[0].type.numel > 0
    return False


def build_executable(schedule: Schedule, device: Device, renderer=None) -> Executable:
    """Load the code of a planned `schedule` on `device`. `renderer` (a backend's, with
    `compile(kernel)` and optionally `compile_segment(name, steps)`; or just a compile
    function) makes the artifacts; without one the kernel itself is handed to the device
    (the null device needs nothing else)."""
    if schedule.arena_bytes is None and any(b.kind == "temp" for b in schedule.buffers):
        from kiln.passes.plan_memory import plan_memory    # NOTE: runtime -> passes is fine
        plan_memory(schedule)
    compile_kernel = getattr(renderer, "compile", renderer)
    groups = _segments(schedule, device, renderer)
    lower_call = getattr(renderer, "lower_call", None)
    if lower_call is not None:
        # NOTE: a backend without a library for a call (CUDA's matmul) makes it a kernel
        groups = [lower_call(g) if isinstance(g, Call) else g for g in groups]
    handles, segments = {}, {}
    for item in groups:
        if isinstance(item, list):
            art = renderer.compile_segment(f"s{len(segments)}", item)
            segments[id(item[0])] = (item, device.load_segment(art))
            continue
        if isinstance(item, Launch):
            k = item.kernel
            if any(d == 0 for d in k.space):
                handles[id(k)] = None       # NOTE: nothing to compute: its outputs are empty
                continue
            artifact = compile_kernel(k) if compile_kernel is not None else k
            handles[id(k)] = device.load(artifact)
    exe = Executable(schedule, device, handles, groups, segments)
    if debug.LEVEL >= 3:
        _show_build(exe)
    return exe


def _show_build(exe: Executable) -> None:
    """KILN_DEBUG=3: the planned schedule; 4: also each compiled kernel's and segment entry's
    code at every stage the backend keeps (MLIR, LLVM IR, assembly or PTX)."""
    debug.log(f"schedule of @{exe.schedule.name}, memory planned:\n{exe.schedule}")
    if debug.LEVEL < 4:
        return
    for s in exe.steps:
        if isinstance(s, _SegmentStep):
            debug.log(f"segment {s.handle.name} of @{exe.schedule.name}: entry LLVM IR\n"
                      f"{s.handle.artifact.entry_ir}")
    for art in exe.kernels:
        for attr, what in (("mlir", "MLIR"), ("llvm_ir", "LLVM IR"), ("asm", "assembly"),
                           ("ptx", "PTX")):
            text = getattr(art, attr, None)
            if text:
                debug.log(f"kernel {art.name} of @{exe.schedule.name}: {what}\n{text}")
