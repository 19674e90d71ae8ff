"""An Executable: a graph turned into a list of launches over buffers.

Each `kernel` node becomes a compiled CPU kernel launch; every other node runs its NumPy
reference (`run_node`), like the interpreter. Everything that does not depend on the input
values (slots, output types, compiled functions, when a buffer dies) is computed at build
time, so a call is one Python loop over prepared steps.

    >>> import numpy as np
    >>> from kiln.ir.builder import GraphBuilder, make_node
    >>> from kiln.ir.types import TensorType
    >>> from kiln.ir.dtypes import float32
    >>> body = GraphBuilder("body"); x = body.add_input(TensorType(float32, (3,)))
    >>> body = body.finish(body.emit("exp", [x], {}))
    >>> g = GraphBuilder("f"); a = g.add_input(TensorType(float32, (3,)))
    >>> g = g.finish(g.emit("kernel", [a], {"name": "k0", "body": body}))
    >>> build_executable(g)([np.zeros(3, np.float32)])[0].tolist()
    [1.0, 1.0, 1.0]
"""
from __future__ import annotations

import numpy as np

from kiln.codegen.cpu_kernel import CompiledKernel, compile_kernel
from kiln.ir.errors import KilnError
from kiln.ir.graph import Graph
from kiln.ir.interpreter import run_node

from .allocator import default_allocator
from .cpu import CpuLauncher, default_launcher, kernel_function

_ALLOCATOR = default_allocator()


def _pointer(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


class _KernelStep:
    """Launch one compiled kernel: fresh output buffers, pointers, (lo, hi) chunks."""

    def __init__(self, compiled: CompiledKernel, node, ins, outs, launcher: CpuLauncher,
                 trusted: set):
        self.compiled = compiled
        self.node = node
        self.ins = ins
        self.outs = outs
        self.out_specs = [(v.type.shape, v.type.dtype.np) for v in node.outputs]
        # NOTE: buffers made by other kernels are fresh and C-contiguous; reference results
        # may be views, so only those are checked.
        self.check = [s not in trusted for s in ins]
        self.fn = kernel_function(compiled.address, len(ins) + len(outs))
        self.outer = compiled.plan.outer
        self.work = compiled.work
        self.launcher = launcher

    def __call__(self, env: list):
        args = []
        for s, check in zip(self.ins, self.check):
            a = env[s]
            if check and not a.flags.c_contiguous:
                a = np.ascontiguousarray(a)
            args.append(a)
        empty = _ALLOCATOR.empty
        results = [empty(shape, dtype) for shape, dtype in self.out_specs]
        pointers = [_pointer(a) for a in args] + [_pointer(r) for r in results]
        self.launcher.launch(self.fn, pointers, self.outer, self.work)
        for s, r in zip(self.outs, results):
            env[s] = r


class _EmptyKernelStep:
    """A kernel whose iteration space has no elements: outputs are empty arrays."""

    def __init__(self, node, ins, outs):
        self.node = node
        self.ins = ins
        self.outs = outs

    def __call__(self, env: list):
        for s, v in zip(self.outs, self.node.outputs):
            env[s] = np.empty(v.type.shape, v.type.dtype.np)


class _ReferenceStep:
    """Any other node: its NumPy reference, errors naming the node and the user's line."""

    def __init__(self, node, ins, outs):
        self.node = node
        self.ins = ins
        self.outs = outs

    def __call__(self, env: list):
        try:
            results = run_node(self.node, [env[s] for s in self.ins])
        except KilnError:
            raise
        except Exception as e:  # NOTE: same wording as the interpreter
            raise KilnError(f"while running {self.node.op}: {type(e).__name__}: {e}",
                            node=self.node, loc=self.node.loc) from e
        for s, r in zip(self.outs, results):
            env[s] = r


class Executable:
    """A compiled graph: `exe(list_of_arrays) -> list_of_arrays` (the graph's outputs).

    The write-backs that end a functional graph (`copy_ %input, %value`) are performed into
    the arrays the caller passed (`writebacks`: (input index, slot)), after every other step.
    """

    def __init__(self, graph: Graph, steps, slots: int, input_slots, output_slots, frees,
                 kernels: list[CompiledKernel], writebacks=()):
        self.graph = graph
        self.steps = steps
        self.slots = slots
        self.input_slots = input_slots
        self.output_slots = output_slots
        self.frees = frees
        self.kernels = kernels
        self.writebacks = list(writebacks)
        self._input_specs = [(tuple(v.type.shape), v.type.dtype.np, v.type)
                             for v in graph.inputs]

    def __repr__(self) -> str:
        return (f"<Executable @{self.graph.name}: {len(self.steps)} steps, "
                f"{len(self.kernels)} compiled kernels>")

    def __call__(self, inputs) -> list[np.ndarray]:
        if len(inputs) != len(self.input_slots):
            raise KilnError(f"executable @{self.graph.name} takes {len(self.input_slots)} "
                            f"inputs, got {len(inputs)}")
        env: list = [None] * self.slots
        for i, (a, s, spec) in enumerate(zip(inputs, self.input_slots, self._input_specs)):
            env[s] = _check_input(self.graph.name, i, a, spec)
        for step, dead in zip(self.steps, self.frees):
            step(env)
            for s in dead:
                env[s] = None
        if not self.writebacks:
            return [env[s] for s in self.output_slots]
        return self._write_back(env, inputs)

    def _write_back(self, env: list, inputs) -> list:
        """Write the final values into the caller's arrays. A value or output that still
        reads a written array (the old x written into y while x is written too, an output
        that views an input) is copied first: every value is the one before the writes."""
        written = [inputs[i] for i, _ in self.writebacks]

        def own(a):
            if any(np.may_share_memory(a, w) for w in written):
                return np.array(a, copy=True)
            return a
        values = [own(env[s]) for _, s in self.writebacks]
        outs = [own(env[s]) for s in self.output_slots]
        for (i, _), v in zip(self.writebacks, values):
            np.copyto(inputs[i], v)
        return outs


def _check_input(graph_name: str, i: int, a, spec) -> np.ndarray:
    shape, dtype, type_ = spec
    a = np.asarray(a)
    if a.shape != shape or a.dtype != dtype:
        raise KilnError(f"executable @{graph_name}: input {i} must be {type_}, got array "
                        f"{a.dtype}{list(a.shape)}")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


def build_executable(graph: Graph, launcher: CpuLauncher | None = None) -> Executable:
    """Compile every kernel node of `graph` (cached per distinct body) and plan the calls."""
    launcher = launcher or default_launcher()
    slot: dict = {}
    for v in graph.inputs:
        slot.setdefault(v, len(slot))
    steps, kernels, trusted, writebacks = [], [], set(), []
    input_index = {v: i for i, v in enumerate(graph.inputs)}
    for node in graph.nodes:
        if node.op == "copy_":      # NOTE: a write-back (the graph is functional)
            writebacks.append((input_index[node.inputs[0]], _slot_of(slot, node.inputs[1],
                                                                      node)))
            continue
        ins = [_slot_of(slot, v, node) for v in node.inputs]
        outs = [slot.setdefault(v, len(slot)) for v in node.outputs]
        step = _make_step(node, ins, outs, launcher, trusted)
        if isinstance(step, _KernelStep):
            kernels.append(step.compiled)
            trusted.update(outs)
        steps.append(step)
    output_slots = [_slot_of(slot, v, None) for v in graph.outputs]
    frees = _dead_after(steps, set(output_slots) | {s for _, s in writebacks})
    input_slots = [slot[v] for v in graph.inputs]
    return Executable(graph, steps, len(slot), input_slots, output_slots, frees, kernels,
                      writebacks)


def _slot_of(slot: dict, v, node) -> int:
    if v not in slot:
        where = f"node {node.op}" if node is not None else "the graph outputs"
        raise KilnError(f"{where} reads a value that is not defined before it ({v})",
                        loc=getattr(node, "loc", None))
    return slot[v]


def _make_step(node, ins, outs, launcher, trusted):
    if node.op != "kernel":
        return _ReferenceStep(node, ins, outs)
    if any(v.type.numel == 0 for v in node.outputs):
        return _EmptyKernelStep(node, ins, outs)
    return _KernelStep(compile_kernel(node), node, ins, outs, launcher, trusted)


def _dead_after(steps, keep: set) -> list[list[int]]:
    """Per step, the slots last read there (freed right after, unless a graph output)."""
    last: dict[int, int] = {}
    for i, step in enumerate(steps):
        for s in step.ins:
            last[s] = i
    frees: list[list[int]] = [[] for _ in steps]
    for s, i in last.items():
        if s not in keep:
            frees[i].append(s)
    return frees
