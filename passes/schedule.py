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

from kiln.ir.builder import GraphBuilder
from kiln.ir.graph import Graph, Value
from kiln.ir.ops.kernel import kernel_space
from kiln.ir.ops.rules import contiguous_strides
from kiln.ir.schedule import Access, Buffer, Call, Kernel, Launch, Run, Schedule

# NOTE: ops the device runs as a library routine writing into a planned buffer.
LIBRARY_OPS = ("matmul",)


def _swaps_last_two(perm) -> bool:
    n = len(perm)
    return n >= 2 and tuple(perm) == tuple(range(n - 2)) + (n - 1, n - 2)


def _load(shape, space, strides, offset) -> Access:
    """How a kernel reads a value of `shape` stored with element `strides` at `offset`: its
    dims line up with the space's last dims; stride 0 where it has extent 1."""
    out = [0] * len(space)
    lead = len(space) - len(shape)
    for k, (d, st) in enumerate(zip(shape, strides)):
        if d != 1:
            out[lead + k] = st
    return Access(tuple(out), offset)


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
    return _Builder(graph).build()


# NOTE: view ops that fold into the accesses of the kernels and calls that read them: no
# step and no copy, only strides. A view is materialized (a copy kernel) only where an array
# is needed: a reference op, a graph output, a write-back or a matmul operand BLAS cannot read.
FOLDED_VIEWS = ("permute", "reshape")


class _Builder:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.buffers: dict[Value, Buffer] = {}
        self.views: dict[Value, tuple[Buffer, tuple, int]] = {}
        inputs = []
        for i, v in enumerate(graph.inputs):
            self.buffers.setdefault(v, Buffer(v.hint or f"in{i}", v.type, "input"))
            inputs.append(self.buffers[v])
        self.returned = set(graph.outputs)
        self.users = graph.users()
        self.s = Schedule(graph.name, inputs, [], [], [])

    def make(self, v: Value, kind: str) -> Buffer:
        if kind != "value" and v in self.returned:
            kind = "output"
        b = Buffer(f"t{len(self.s.buffers)}", v.type, kind)
        self.s.buffers.append(b)
        self.buffers[v] = b
        return b

    def access(self, v: Value) -> tuple[Buffer, tuple, int]:
        """(buffer, element strides of v's shape, offset) that reads value v."""
        if v in self.views:
            return self.views[v]
        return self.buffer(v), contiguous_strides(v.shape), 0

    def buffer(self, v: Value) -> Buffer:
        """A buffer holding v as an array: a folded view is materialized here, by a copy
        kernel (compiled with its neighbours, and never a view into the arena)."""
        if v not in self.buffers:
            root, strides, offset = self.views[v]
            body = GraphBuilder(f"copy_{len(self.s.buffers)}")
            x = body.add_input(v.type)
            body = body.finish(body.emit("copy", [x], {}, loc=v.producer.loc))
            space = tuple(v.shape)
            kernel = Kernel(body.name, space, (), body, (_load(space, space, strides, offset),),
                            (broadcast_access(space, space),))
            self.s.steps.append(Launch(kernel, [root], [self.make(v, "temp")],
                                       v.producer.loc))
        return self.buffers[v]

    def fold_view(self, node) -> bool:
        v, (root, strides, offset) = node.inputs[0], self.access(node.inputs[0])
        if node.op == "permute":
            self.views[node.out] = (root, tuple(strides[p] for p in node.attrs.perm), offset)
            return True
        if strides == contiguous_strides(v.shape):      # NOTE: a reshape of a dense value
            self.views[node.out] = (root, contiguous_strides(node.out.shape), offset)
            return True
        return False

    def build(self) -> Schedule:
        s = self.s
        for node in self.graph.nodes:
            if node.op == "copy_":      # NOTE: a write-back (the graph is functional)
                s.writes.append((self.buffer(node.inputs[0]), self.buffer(node.inputs[1])))
            elif node.op == "permute" and node.outputs[0] in self.buffers:
                continue        # NOTE: a transpose the matmul before it already computed
            elif node.op in FOLDED_VIEWS and self.fold_view(node):
                continue
            elif node.op == "kernel":
                reads = [self.access(v) for v in node.inputs]
                outs = [self.make(v, "temp") for v in node.outputs]
                s.steps.append(Launch(_kernel(node, reads), [r[0] for r in reads], outs,
                                      node.loc))
            elif node.op in LIBRARY_OPS:
                self.call(node)
            else:
                ins = [self.buffer(v) for v in node.inputs]
                outs = [self.make(v, "value") for v in node.outputs]
                s.steps.append(Run(node.op, node.attrs, ins, outs, node.loc))
        s.outputs = [self.buffer(v) for v in self.graph.outputs]
        write_in_place(s)
        reuse_dying_temps(s)
        return s

    def call(self, node):
        """A matmul reads each operand as it is stored or as a transposed dense matrix. When
        every reader of its result transposes it (a weight's gradient `(x^T g)^T`), it
        computes the transposed product `g^T x` instead, so nothing is transposed later."""
        a, b = node.inputs
        readers = self.users.get(node.out, [])
        if readers and node.out not in self.returned and all(
                u.op == "permute" and _swaps_last_two(u.attrs.perm) for u in readers):
            (ib, tb), (ia, ta) = self.operand(b, True), self.operand(a, True)
            out = self.make(readers[0].out, "temp")
            for u in readers:
                self.buffers[u.out] = out
            self.s.steps.append(Call(node.op, node.attrs, [ib, ia], [out], node.loc,
                                     (tb, ta) if tb or ta else ()))
            return
        (ia, ta), (ib, tb) = self.operand(a, False), self.operand(b, False)
        outs = [self.make(v, "temp") for v in node.outputs]
        self.s.steps.append(Call(node.op, node.attrs, [ia, ib], outs, node.loc,
                                 (ta, tb) if ta or tb else ()))

    def operand(self, v: Value, transposed: bool) -> tuple[Buffer, bool]:
        """(buffer, BLAS transpose flag) reading v (or v with its last two axes swapped)."""
        root, strides, offset = self.access(v)
        shape = tuple(v.shape)
        swapped = shape[:-2] + (shape[-1], shape[-2])
        dense_t = contiguous_strides(swapped)
        dense_t = dense_t[:-2] + (dense_t[-1], dense_t[-2])
        # NOTE: BLAS reads the buffer as stored: a reshaped view (another shape over the same
        # bytes) is materialized; the call's operand types are its buffers' types
        if offset == 0 and strides == contiguous_strides(shape) and (
                tuple(root.type.shape) == shape):
            return root, transposed
        if offset == 0 and strides == dense_t and tuple(root.type.shape) == swapped:
            return root, not transposed
        return self.buffer(v), transposed


def _kernel(node, reads) -> Kernel:
    body = node.attrs.body
    space, axes = kernel_space(node.attrs.name, body)
    loads = tuple(_load(v.shape, space, strides, offset)
                  for v, (_, strides, offset) in zip(body.inputs, reads))
    stores = []
    for v in body.outputs:
        p = v.producer
        if p is not None and p.op in ("sum", "mean", "max", "min") and not p.attrs.keepdim:
            kept = tuple(k for k in range(len(space)) if k not in axes)
            stores.append(broadcast_access(v.shape, space, kept))
        else:
            stores.append(broadcast_access(v.shape, space))
    return Kernel(node.attrs.name, space, axes, body, loads, tuple(stores))


def write_in_place(s: Schedule) -> Schedule:
    """Turn write-backs into updates in place: when the kernel that makes the new value of an
    input is the last step to touch that input, and reads it (if at all) element by element as
    it writes, the kernel stores straight into the input and the write-back goes away (an
    optimizer's `p - lr * g`, `m * b1 + g * (1 - b1)`).

    Not done when the input is returned, read by a reference step (NumPy may hold a view of
    it), read by a later step, written twice, or when the value is returned too or written
    back into another input as well (that write-back would lose its source), or when the
    input's old value is itself written back into another input (write-backs happen after
    every step: that one would copy the new value)."""
    returned = {id(b) for b in s.outputs}
    dsts = [id(d) for d, _ in s.writes]
    srcs = [id(v) for _, v in s.writes]
    touched_by_run = {id(b) for st in s.steps if isinstance(st, Run) for b in st.ins}
    keep = []
    for dst, src in s.writes:
        at = _maker(s, src)
        ok = (at is not None and src.kind == "temp" and id(src) not in returned
              and id(dst) not in returned and dsts.count(id(dst)) == 1
              and srcs.count(id(src)) == 1 and id(dst) not in srcs
              and id(dst) not in touched_by_run
              and not any(src in st.ins or dst in st.ins or dst in st.outs
                          for st in s.steps[at + 1:]))
        if ok:
            ok = _store_into(s.steps[at], src, dst)
        if ok:
            s.buffers.remove(src)
        else:
            keep.append((dst, src))
    s.writes = keep
    return s


def _maker(s: Schedule, b: Buffer) -> int | None:
    for i, st in enumerate(s.steps):
        if b in st.outs:
            return i if isinstance(st, Launch) else None
    return None


def _store_into(step: Launch, src: Buffer, dst: Buffer) -> bool:
    """Make `step` store its output `src` into `dst` (see write_in_place); False when the
    kernel reads `dst` other than at the element it writes."""
    k = step.kernel
    j = step.outs.index(src)
    reads = [i for i, b in enumerate(step.ins) if b is dst]
    if any(k.loads[i] != k.stores[j] for i in reads) or len(reads) > 1:
        return False
    if k.stores[j].strides != contiguous_strides(dst.type.shape) and any(
            d != 1 for d in dst.type.shape):
        return False
    step.outs[j] = dst
    if reads:
        k.inplace = k.inplace + ((j, reads[0]),)
    return True


def reuse_dying_temps(s: Schedule) -> Schedule:
    """A kernel whose input is a temp it reads for the last time, element by element as it
    writes an output of the same type, writes that output over the temp: the temp's maker
    writes the output buffer directly, and the kernel updates it in place (`relu(x @ w.T + b)`:
    the GEMM writes the result, the bias and ReLU are applied where it lies)."""
    kept = {id(b) for b in s.outputs} | {id(src) for _, src in s.writes}
    # NOTE: a reference step's result may be a NumPy view of its input, read later
    kept |= {id(b) for st in s.steps if isinstance(st, Run) for b in st.ins}
    for at, step in enumerate(s.steps):
        if not isinstance(step, Launch):
            continue
        for j, out in enumerate(list(step.outs)):
            i = _dying_input(s, at, step, j, kept)
            if i is not None:
                _write_over(s, at, step, i, j)
    return s


def _dying_input(s: Schedule, at: int, step: Launch, j: int, kept: set) -> int | None:
    """The operand `step` can write output j over (see reuse_dying_temps), or None; `kept`:
    ids of buffers that outlive the call or may be viewed."""
    out, k = step.outs[j], step.kernel
    if out.kind not in ("temp", "output") or any(jj == j for jj, _ in k.inplace):
        return None
    for i, t in enumerate(step.ins):
        if (t.kind != "temp" or t.type != out.type or id(t) in kept
                or step.ins.count(t) != 1 or k.loads[i] != k.stores[j]
                or any(t in st.ins for st in s.steps[at + 1:])
                or any(ii == i for _, ii in k.inplace)):
            continue
        maker = next((st for st in s.steps[:at] if t in st.outs), None)
        if isinstance(maker, (Launch, Call)) and maker.outs.count(t) == 1:
            return i
    return None


def _write_over(s: Schedule, at: int, step: Launch, i: int, j: int):
    t, out = step.ins[i], step.outs[j]
    for st in s.steps[:at + 1]:
        st.ins[:] = [out if b is t else b for b in st.ins]
        st.outs[:] = [out if b is t else b for b in st.outs]
    # NOTE: the output is now made where the temp was: declared in the temp's place
    s.buffers.remove(out)
    s.buffers[s.buffers.index(t)] = out
    step.kernel.inplace = step.kernel.inplace + ((j, i),)
