"""The schedule IR: what runs, in which order, over which buffers.

Fusion leaves a graph of `kernel` nodes and other ops; `passes/schedule.py` turns it into a
Schedule, memory planning (`passes/plan_memory.py`) gives its temporary buffers places in one
arena, a backend's renderer compiles its kernels and the runtime executes its steps. It is
the one contract between those stages, and prints and parses back like the graph IR
(`ir/schedule_text.py`):

    schedule @f(%x: f32[4,8]) {
      buffer %0: f32[4,1] temp {arena=0, offset=0, nbytes=16}
      buffer %1: f32[4,8] output
      launch @fused_0 (%x) -> (%0) {space=[4,8], reduce=[1]} {
        load %x strides=[8,1] offset=0
        store %0 strides=[1,0] offset=0
        body @fused_0(%2: f32[4,8]) { ... }
      }
      run exp (%0) -> (%1)
      return %1
    }

Buffers: `input` (the caller's arrays), `temp` (placed in the arena once planned), `output`
(fresh each call: the caller keeps them) and `value` (made by a `run` step's NumPy reference).

Steps:
- `launch`: a Kernel over its iteration space `space`. The axes in `reduce` are reduction axes,
  the others are parallel. Each body input is read through a `load` access and each body
  output written through a `store` access: element strides over `space` plus an offset, so a
  broadcast is a zero stride and a transpose is permuted strides (never a copy). A value
  that does not vary along the reduction axes (a row value) has zero strides there.
- `call`: a library routine (matmul) writing into its output buffers.
- `run`: an op's NumPy reference (ops with no lowering yet).
- `write`: the write-backs that end a functional graph: a value copied into an input.
"""
from __future__ import annotations

import dataclasses

from .attrs import Attrs
from .errors import VerifyError
from .graph import Graph
from .types import Loc, TensorType

BUFFER_KINDS = ("input", "temp", "output", "value")


@dataclasses.dataclass(eq=False)
class Buffer:
    """A tensor-sized piece of memory. `arena`/`offset`/`nbytes` are set for planned temps."""

    name: str
    type: TensorType
    kind: str
    arena: int | None = None
    offset: int | None = None
    nbytes: int | None = None

    @property
    def planned(self) -> bool:
        return self.offset is not None

    def __repr__(self) -> str:
        return f"<Buffer %{self.name}: {self.type} {self.kind}>"


@dataclasses.dataclass(frozen=True)
class Access:
    """How a kernel reads or writes one buffer: element `strides` over the iteration space
    and an element `offset`."""

    strides: tuple[int, ...]
    offset: int = 0

    def span(self, space) -> int:
        """One past the largest element index touched over `space` (0 when empty)."""
        if any(d == 0 for d in space):
            return 0
        return self.offset + sum((d - 1) * s for d, s in zip(space, self.strides)) + 1


@dataclasses.dataclass(eq=False)
class Kernel:
    """A fused computation over `space`; `body` is a graph of registry ops (see ops/kernel.py
    for what a body may hold), its inputs read by `loads` and its outputs written by `stores`.
    """

    name: str
    space: tuple[int, ...]
    reduce: tuple[int, ...]
    body: Graph
    loads: tuple[Access, ...]
    stores: tuple[Access, ...]
    # NOTE: (store j, load i) pairs where store j writes over the buffer load i reads, with
    # the same access: each element is read before it is written (an update in place)
    inplace: tuple[tuple[int, int], ...] = ()

    @property
    def parallel(self) -> tuple[int, ...]:
        return tuple(k for k in range(len(self.space)) if k not in self.reduce)

    def signature(self) -> str:
        """Canonical text (space, accesses, body; no names or locations): kernels with equal
        signatures compile to the same code."""
        from .schedule_text import kernel_signature
        return kernel_signature(self)


@dataclasses.dataclass(eq=False)
class Launch:
    kernel: Kernel
    ins: list[Buffer]
    outs: list[Buffer]
    loc: Loc | None = None


@dataclasses.dataclass(eq=False)
class _OpStep:
    """A step that applies a registry op (`op`, `attrs`) to buffers."""

    op: str
    attrs: Attrs
    ins: list[Buffer]
    outs: list[Buffer]
    loc: Loc | None = None


@dataclasses.dataclass(eq=False)
class Run(_OpStep):
    """An op run by its NumPy reference; its outputs are `value` buffers it makes."""


@dataclasses.dataclass(eq=False)
class Call(_OpStep):
    """A library routine (`op` from the registry) writing into `outs` (`temp` or `output`
    buffers). `transpose` (one flag per operand, or empty) says an operand buffer holds the
    transpose of its last two axes (a matmul reads `w.T` from `w` itself, as BLAS's
    transa/transb)."""

    transpose: tuple = ()

    def operand_types(self) -> list:
        """The operands' types as the op sees them (after the transposes)."""
        out = []
        for i, b in enumerate(self.ins):
            t = b.type
            if self.transpose and self.transpose[i]:
                t = t.with_shape(t.shape[:-2] + (t.shape[-1], t.shape[-2]))
            out.append(t)
        return out


@dataclasses.dataclass(eq=False)
class Schedule:
    name: str
    inputs: list[Buffer]
    buffers: list[Buffer]                 # every non-input buffer, in declaration order
    steps: list                           # Launch | Call | Run, in launch order
    outputs: list[Buffer]
    writes: list[tuple[Buffer, Buffer]] = dataclasses.field(default_factory=list)
    arena_bytes: int | None = None        # set by memory planning
    naive_bytes: int | None = None        # the sum of every temp: the peak without reuse

    def __str__(self) -> str:
        from .schedule_text import print_schedule
        return print_schedule(self)

    @property
    def kernels(self) -> list[Kernel]:
        return [s.kernel for s in self.steps if isinstance(s, Launch)]


def step_kind(step) -> str:
    return {Launch: "launch", Call: "call", Run: "run"}[type(step)]


# ---- verifier -------------------------------------------------------------------------------
def verify_schedule(s: Schedule) -> Schedule:
    """Check a schedule's invariants; VerifyError naming the step and its source line.

    - every buffer is defined once (an input, or the output of one step), before it is read,
      and `output`/`temp`/`value` buffers are made by the step kinds that make them;
    - a launch's accesses stay inside their buffers and agree with the body's types;
    - planned temps lie inside the arena and live ranges that overlap do not share bytes.
    """
    defined: set = set()
    for b in s.inputs:
        if b.kind != "input":
            raise VerifyError(f"schedule @{s.name}: parameter %{b.name} is {b.kind}, "
                              "not input")
        defined.add(id(b))
    declared = {id(b) for b in s.buffers}
    for step in s.steps:
        _verify_step(s, step, defined, declared)
    for b in s.outputs:
        if id(b) not in defined:
            raise VerifyError(f"schedule @{s.name} returns %{b.name}, which no step writes")
    for dst, src in s.writes:
        if dst.kind != "input" or id(src) not in defined:
            raise VerifyError(f"schedule @{s.name}: write %{dst.name} <- %{src.name} must "
                              "copy a defined buffer into an input")
    _verify_plan(s)
    return s


def _verify_step(s: Schedule, step, defined: set, declared: set):
    kind = step_kind(step)
    where = f"schedule @{s.name}, {kind} " + (
        f"@{step.kernel.name}" if kind == "launch" else step.op)
    for b in step.ins:
        if id(b) not in defined:
            raise VerifyError(f"{where} reads %{b.name} before any step writes it",
                              loc=step.loc)
    inplace = ({id(step.outs[j]) for j, i in step.kernel.inplace
                if j < len(step.outs) and i < len(step.ins) and step.outs[j] is step.ins[i]}
               if kind == "launch" else set())
    for b in step.outs:
        if kind == "launch" and (b.kind == "input" or id(b) in inplace):
            continue        # NOTE: an update in place (of the caller's array, or a buffer)
        if id(b) in defined or id(b) not in declared:
            raise VerifyError(f"{where} writes %{b.name}, which is "
                              + ("already written" if id(b) in defined else "not declared"),
                              loc=step.loc)
        allowed = ("value",) if kind == "run" else ("temp", "output")
        if b.kind not in allowed:
            raise VerifyError(f"{where} writes %{b.name} of kind {b.kind}; a {kind} writes "
                              f"{' or '.join(allowed)} buffers", loc=step.loc)
        defined.add(id(b))
    if kind == "launch":
        _verify_launch(where, step)
    elif kind == "call":
        _verify_call(where, step)


def _verify_call(where: str, step: Call):
    from .registry import get_op
    if step.transpose and len(step.transpose) != len(step.ins):
        raise VerifyError(f"{where}: {len(step.transpose)} transpose flags for "
                          f"{len(step.ins)} operands", loc=step.loc)
    types = step.operand_types()
    try:
        want = get_op(step.op).infer(types, step.attrs)
    except Exception as e:
        raise VerifyError(f"{where}: operands {', '.join(map(str, types))}: {e}",
                          loc=step.loc) from None
    got = [b.type for b in step.outs]
    if list(want) != got:
        raise VerifyError(f"{where}: results {', '.join(map(str, got))}, but {step.op} of "
                          f"{', '.join(map(str, types))} gives {', '.join(map(str, want))}",
                          loc=step.loc)


def _verify_launch(where: str, step: Launch):
    k = step.kernel
    rank = len(k.space)
    if sorted(set(k.reduce)) != list(k.reduce) or any(not 0 <= a < rank for a in k.reduce):
        raise VerifyError(f"{where}: reduce axes {list(k.reduce)} must be sorted, distinct "
                          f"axes of the space {list(k.space)}", loc=step.loc)
    pairs = [("load", b, a, v.type) for b, a, v in zip(step.ins, k.loads, k.body.inputs)]
    pairs += [("store", b, a, v.type) for b, a, v in zip(step.outs, k.stores, k.body.outputs)]
    if len(k.loads) != len(step.ins) or len(k.body.inputs) != len(step.ins):
        raise VerifyError(f"{where}: {len(step.ins)} operands, {len(k.loads)} loads, "
                          f"{len(k.body.inputs)} body inputs", loc=step.loc)
    if len(k.stores) != len(step.outs) or len(k.body.outputs) != len(step.outs):
        raise VerifyError(f"{where}: {len(step.outs)} results, {len(k.stores)} stores, "
                          f"{len(k.body.outputs)} body outputs", loc=step.loc)
    for what, buf, acc, vtype in pairs:
        _verify_access(where, step, k, what, buf, acc, vtype)
    for j, i in k.inplace:
        if not (0 <= j < len(step.outs) and 0 <= i < len(step.ins)) or (
                step.outs[j] is not step.ins[i] or k.stores[j] != k.loads[i]):
            raise VerifyError(f"{where}: in-place pair (store {j}, load {i}) must write the "
                              "buffer it reads, with the same access", loc=step.loc)


def _verify_access(where, step, k: Kernel, what, buf: Buffer, acc: Access, vtype):
    if vtype.dtype != buf.type.dtype:
        raise VerifyError(f"{where}: {what} of %{buf.name} ({buf.type}) as {vtype}: dtypes "
                          "differ", loc=step.loc)
    if len(acc.strides) != len(k.space) or acc.offset < 0:
        raise VerifyError(f"{where}: {what} of %{buf.name} has strides {list(acc.strides)} "
                          f"and offset {acc.offset} over the space {list(k.space)}",
                          loc=step.loc)
    if acc.span(k.space) > buf.type.numel:
        raise VerifyError(f"{where}: {what} of %{buf.name} ({buf.type}) with strides "
                          f"{list(acc.strides)} reaches element {acc.span(k.space) - 1}, past "
                          f"its {buf.type.numel} elements", loc=step.loc)
    if what == "load":
        shape = (1,) * (len(k.space) - len(vtype.shape)) + tuple(vtype.shape)
        for axis, (d, n, st) in enumerate(zip(shape, k.space, acc.strides)):
            if d == 1 and n != 1 and st != 0:
                raise VerifyError(f"{where}: load of %{buf.name} as {vtype} broadcasts "
                                  f"along axis {axis} but has stride {st} there",
                                  loc=step.loc)
    else:
        if tuple(vtype.shape) != tuple(k.space) and any(acc.strides[a] for a in k.reduce):
            raise VerifyError(f"{where}: store of %{buf.name} ({vtype}, a value per row) has "
                              f"strides {list(acc.strides)}, not 0 along the reduction axes "
                              f"{list(k.reduce)}", loc=step.loc)
        writes = 1
        for d, st in zip(k.space, acc.strides):
            writes *= d if st else 1
        if writes != buf.type.numel:
            raise VerifyError(f"{where}: store of %{buf.name} ({buf.type}) with strides "
                              f"{list(acc.strides)} writes {writes} elements, not "
                              f"{buf.type.numel}", loc=step.loc)


def _verify_plan(s: Schedule):
    temps = [b for b in s.buffers if b.kind == "temp"]
    planned = [b for b in temps if b.planned]
    if not planned:
        return
    if len(planned) != len(temps) or s.arena_bytes is None:
        raise VerifyError(f"schedule @{s.name}: memory plan covers {len(planned)} of "
                          f"{len(temps)} temps")
    for b in planned:
        if b.nbytes < b.type.nbytes or b.offset + b.nbytes > s.arena_bytes:
            raise VerifyError(f"schedule @{s.name}: %{b.name} ({b.type}, {b.type.nbytes} "
                              f"bytes) planned at [{b.offset}, {b.offset + b.nbytes}) in an "
                              f"arena of {s.arena_bytes} bytes")
    live = live_ranges(s)
    for b in planned:
        if id(b) not in live:
            raise VerifyError(f"schedule @{s.name}: temp %{b.name} is planned but no step "
                              "writes it")
    for i, a in enumerate(planned):
        for b in planned[i + 1:]:
            if _overlap(live[id(a)], live[id(b)]) and _overlap(
                    (a.offset, a.offset + a.nbytes - 1), (b.offset, b.offset + b.nbytes - 1)):
                raise VerifyError(f"schedule @{s.name}: %{a.name} and %{b.name} are live at "
                                  "once and share arena bytes")


def _overlap(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def live_ranges(s: Schedule) -> dict[int, tuple[int, int]]:
    """id(buffer) -> (first step, last step) it is live in: from the step that writes it to
    the last step that reads it (buffers returned or written back live to the end, and the
    inputs of a `run` step as long as its outputs).

    >>> from kiln.ir.schedule_text import parse_schedule
    >>> s = parse_schedule('''
    ... schedule @f(%x: f32[2,2]) {
    ...   buffer %a: f32[2,2] temp
    ...   buffer %b: f32[2,2] output
    ...   call matmul (%x, %x) -> (%a)
    ...   call matmul (%a, %x) -> (%b)
    ...   return %b
    ... }''')
    >>> [live_ranges(s)[id(b)] for b in s.buffers]
    [(0, 1), (1, 2)]
    """
    ranges: dict[int, list[int]] = {}
    end = len(s.steps)
    for i, step in enumerate(s.steps):
        for b in step.outs:
            # NOTE: a buffer updated in place is written again: it lives from its first write
            ranges.setdefault(id(b), [i, i])[1] = i
        for b in step.ins:
            if id(b) in ranges:
                ranges[id(b)][1] = i
    for b in list(s.outputs) + [src for _, src in s.writes]:
        if id(b) in ranges:
            ranges[id(b)][1] = end
    # NOTE: a NumPy reference may return a view of its input (reshape, slice, even an
    # identity), so a `run` step's inputs stay live as long as its outputs do.
    for step in reversed(s.steps):
        if isinstance(step, Run):
            last = max((ranges[id(b)][1] for b in step.outs), default=0)
            for b in step.ins:
                if id(b) in ranges:
                    ranges[id(b)][1] = max(ranges[id(b)][1], last)
    return {k: (v[0], v[1]) for k, v in ranges.items()}
