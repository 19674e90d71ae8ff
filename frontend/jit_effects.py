"""What a compiled call does besides computing values: in-place writes into its inputs, and
outputs that are the inputs themselves or views of them (PyTorch's aliasing, kept under jit).

The functionalize pass turns a traced function's in-place writes into write-backs, which the
executable performs into the callers' arrays; this module bumps those tensors' version counters
(so autograd refuses a backward through a value saved before the call), refuses inputs that
share memory when the function writes one of them, and rebuilds outputs: an output that was a
view of an input in the trace is a view of the caller's tensor again, every other output is
fresh storage that no input or other output shares.
"""
from __future__ import annotations

import numpy as np

from kiln.ir.errors import KilnError
from kiln.passes.functionalize import output_aliases

from . import autograd
from .tensor import Tensor
from .trace_grads import grad_guard


class CallEffects:
    """Built once per compiled trace from the traced graph (before functionalization)."""

    def __init__(self, trace, executable):
        graph = trace.builder.graph
        n = getattr(trace, "n_outputs", len(graph.outputs))
        position = {v: i for i, v in enumerate(graph.inputs)}
        self.n_outputs = n
        self.aliases = output_aliases(graph)[:n]
        self.first = _first_occurrence(graph.outputs[:n])
        self.written = executable.written_inputs
        # NOTE: NumPy, or the executable's device's array functions (CUDA)
        self.xp = getattr(executable, "_xp", np)
        self.written_set = frozenset(self.written)
        self.grad_effects = [(position[v], k) for v, k in getattr(trace, "grad_effects", ())]
        self.grad_guards = [(position[v], g) for v, g in trace.grads.guards()] \
            if "_grads" in trace.__dict__ else []
        self.saved_start = getattr(trace, "saved_start", len(graph.outputs))
        self.may_alias = _may_alias(executable.graph.outputs)
        fresh = getattr(executable, "fresh_outputs", None)
        if fresh is not None and len(fresh) != len(self.may_alias):
            fresh = None
        if fresh is not None:
            # NOTE: the executable knows which arrays are new memory of the call (a view op
            # in the graph is often a strided kernel store into a fresh buffer there)
            self.may_alias = [m and not f for m, f in zip(self.may_alias, fresh)]
        self.view_roots = {k: (pos, ops) for k, pos, ops in getattr(trace, "view_roots", ())}
        # NOTE: outputs that are new arrays of the call, each returned once, and nothing
        # written or assigned: `after` only wraps them
        self.plain = not (self.written or self.grad_effects or self.view_roots
                          or any(a is not None for a in self.aliases) or any(self.may_alias[:n])
                          or self.first != list(range(n)))
        # NOTE: an executable's fresh outputs are allocated C-contiguous for the call
        self.contiguous = fresh is not None and all(fresh[:n])

    def before(self, tensors: list, arrays: list) -> None:
        """Refuse a call whose inputs overlap in memory when the function writes one."""
        if self.written and len(arrays) > 1:
            _check_no_overlap(tensors, arrays, self.written_set, self.xp)

    def grads_hold(self, tensors: list) -> bool:
        return all(grad_guard(tensors[i]._grad) == g for i, g in self.grad_guards)

    def after(self, tensors: list, results: list) -> list:
        """Bump the written tensors' versions, assign the `.grad`s the call set; return the
        function's outputs as Tensors."""
        if self.plain:
            if self.contiguous:
                return list(map(Tensor._wrap, results[:self.n_outputs]))
            return [Tensor._wrap(a if a.flags.c_contiguous else self.xp.ascontiguousarray(a))
                    for a in results[:self.n_outputs]]
        for i in self.written:
            tensors[i]._version[0] += 1
        outs: list = []
        owners: dict = {}
        for k in range(self.n_outputs):
            if self.first[k] != k:
                outs.append(outs[self.first[k]])    # NOTE: the same value returned twice
            elif self.aliases[k] is not None:
                i, ops = self.aliases[k]
                outs.append(_view_of(tensors[i], ops))
            elif k in self.view_roots:              # NOTE: outputs sharing one new storage
                pos, ops = self.view_roots[k]
                if pos not in owners:
                    owners[pos] = Tensor._wrap(self._fresh(results, pos, tensors))
                outs.append(_view_of(owners[pos], ops))
            else:
                outs.append(Tensor._wrap(self._fresh(results, k, tensors)))
        for i, k in self.grad_effects:
            tensors[i]._grad = None if k is None else \
                Tensor._wrap(self._fresh(results, k, tensors))
        return outs

    def _fresh(self, results: list, k: int, tensors: list) -> np.ndarray:
        arr = results[k]
        if self.may_alias[k]:
            return _fresh(arr, k, results, tensors, self.xp)
        if not arr.flags.c_contiguous:
            return self.xp.ascontiguousarray(arr)
        return arr

    def saved(self, results: list, outs: list) -> list:
        """The saved activations the backward reads, as it must hold them: an array that is
        also an output the caller holds is saved through that tensor (version-checked)."""
        held = {id(t._data): t for t in outs}
        out = []
        for arr in results[self.saved_start:]:
            t = held.get(id(arr))
            out.append(autograd.save(t) if t is not None else arr)
        return out


def _may_alias(outputs) -> list[bool]:
    """Per output of the compiled graph: may its array be an input's or another output's?
    A kernel's or a computing op's result is new storage; an input, a view op's result (a
    NumPy view) or a value returned twice may not be."""
    from kiln.ir.registry import get_op
    out = []
    for v in outputs:
        node = v.producer
        out.append(node is None or outputs.count(v) > 1 or get_op(node.op).view is not None)
    return out


def _first_occurrence(values) -> list[int]:
    first: dict = {}
    return [first.setdefault(v, k) for k, v in enumerate(values)]


def _view_of(t: Tensor, ops) -> Tensor:
    """The caller's tensor viewed again through the traced view ops (eagerly: a real view)."""
    from kiln.ir.registry import apply
    out = t
    for op, attrs in ops:
        out = apply(op, [out], dict(attrs.items()))
    return out


def _fresh(arr, k: int, results: list, tensors: list, xp=np):
    """arr, or a copy of it when it is an input's storage or another output's array (after
    canonicalization two outputs, or an output and an input, can be one value)."""
    shared = any(j != k and r is arr for j, r in enumerate(results))
    if (shared or not arr.flags.c_contiguous or not arr.flags.writeable
            or any(t is not None and xp.may_share_memory(arr, t._data) for t in tensors)):
        return xp.array(arr, order="C", copy=True)
    return arr


def _check_no_overlap(tensors: list, arrays: list, written: frozenset, xp=np) -> None:
    roots: dict = {}
    for i, a in enumerate(arrays):
        if tensors[i] is not None:
            roots.setdefault(id(_root(a)), []).append(i)
    for group in roots.values():
        if len(group) < 2 or not any(i in written for i in group):
            continue
        for i in group:
            for j in group:
                if i < j and (i in written or j in written) and \
                        xp.may_share_memory(arrays[i], arrays[j]):
                    raise KilnError(f"not supported yet: inputs {i} and {j} of a @kiln.jit "
                                    "function share memory and the function writes one of "
                                    "them in place; pass a clone() of one of them")


def _root(a):
    """The object owning a's memory (views made by as_strided sit on a small holder object,
    which has a `base` too; a device array's views share its allocation's lease)."""
    lease = getattr(a, "_lease", None)
    if lease is not None:
        return lease
    while getattr(a, "base", None) is not None:
        a = a.base
    return a
