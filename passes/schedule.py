"""Fused graph -> schedule IR: buffers, kernel launches with their accesses, library calls,
reference steps and write-backs, in launch order (see `ir/schedule.py`).

Every value gets a buffer: graph inputs are `input`s, what a kernel or a library call makes is
an `output` when the caller gets it back, else a `temp` (memory planning places temps in one
arena); what a `run` step makes is a `value`. A kernel's accesses are the C-contiguous layout
of each body value, broadcast (stride 0) along the axes where its shape is 1.

    >>> from kiln.ir.parser import parse
    >>> from kiln.passes.fusion import fuse_elementwise
    >>> s = build_schedule(fuse_elementwise(parse('''
    ... graph @f(%x: f32[4,8], %b: f32[8]) {
    ...   %0: f32[4,8] = expand %b {shape=[4,8]}
    ...   %1: f32[4,8] = add %x, %0
    ...   return %1
    ... }''')))
    >>> [a.strides for a in s.kernels[0].loads]
    [(8, 1), (0, 1)]
"""
from __future__ import annotations

from kiln.ir.graph import Graph, Value
from kiln.ir.ops.kernel import kernel_space
from kiln.ir.ops.rules import contiguous_strides
from kiln.ir.schedule import Access, Buffer, Call, Kernel, Launch, Run, Schedule

# NOTE: ops the device runs as a library routine writing into a planned buffer.
LIBRARY_OPS = ("matmul",)


def broadcast_access(shape, space, axes_of=None) -> Access:
    """The access of a C-contiguous array of `shape` over `space`: its dims line up with the
    space's last dims (or with `axes_of`, the space axes its dims are, for a reduction's
    keepdim=false result); stride 0 where it has extent 1 or no dim at all."""
    axes_of = axes_of or tuple(range(len(space) - len(shape), len(space)))
    own = contiguous_strides(shape)
    strides = [0] * len(space)
    for d, s, axis in zip(shape, own, axes_of):
        if d != 1:
            strides[axis] = s
    return Access(tuple(strides), 0)


def build_schedule(graph: Graph) -> Schedule:
    """The schedule of a fused graph (the fusion pass's output)."""
    buffers: dict[Value, Buffer] = {}
    inputs = []
    for i, v in enumerate(graph.inputs):
        b = Buffer(v.hint or f"in{i}", v.type, "input")
        buffers.setdefault(v, b)
        inputs.append(buffers[v])
    returned = set(graph.outputs)
    s = Schedule(graph.name, inputs, [], [], [])

    def make(v: Value, kind: str) -> Buffer:
        if kind != "value" and v in returned:
            kind = "output"
        b = Buffer(f"t{len(s.buffers)}", v.type, kind)
        s.buffers.append(b)
        buffers[v] = b
        return b

    for node in graph.nodes:
        if node.op == "copy_":      # NOTE: a write-back (the graph is functional)
            s.writes.append((buffers[node.inputs[0]], buffers[node.inputs[1]]))
            continue
        ins = [buffers[v] for v in node.inputs]
        if node.op == "kernel":
            outs = [make(v, "temp") for v in node.outputs]
            s.steps.append(Launch(_kernel(node), ins, outs, node.loc))
        elif node.op in LIBRARY_OPS:
            outs = [make(v, "temp") for v in node.outputs]
            s.steps.append(Call(node.op, node.attrs, ins, outs, node.loc))
        else:
            outs = [make(v, "value") for v in node.outputs]
            s.steps.append(Run(node.op, node.attrs, ins, outs, node.loc))
    s.outputs = [buffers[v] for v in graph.outputs]
    return s


def _kernel(node) -> Kernel:
    body = node.attrs.body
    space, axes = kernel_space(node.attrs.name, body)
    loads = tuple(broadcast_access(v.shape, space) for v in body.inputs)
    stores = []
    for v in body.outputs:
        p = v.producer
        if p is not None and p.op in ("sum", "mean", "max", "min") and not p.attrs.keepdim:
            kept = tuple(k for k in range(len(space)) if k not in axes)
            stores.append(broadcast_access(v.shape, space, kept))
        else:
            stores.append(broadcast_access(v.shape, space))
    return Kernel(node.attrs.name, space, axes, body, loads, tuple(stores))
