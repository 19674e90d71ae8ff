""".grad inside `@kiln.jit`: gradients of outside tensors and arguments as graph values.

While a function is traced, `p.grad` of a tensor that lives outside the trace (a parameter, an
argument) is not touched: reads and writes go to a slot kept by the trace. The first read of a
`.grad` that exists makes it a graph input (read again from `p.grad` at every call; in-place
updates of it become write-backs); what the slot holds at the end is applied after each call:
`p.grad = None`, or `p.grad =` a new tensor holding a graph output. Whether each `.grad` was
None, and its type, are guards (a `zero_grad()` before the first step does not compile a graph
that assumes gradients exist).
"""
from __future__ import annotations

from kiln.ir.types import TensorType

_UNSET = object()


class GradSlot:
    __slots__ = ("owner", "initial", "current", "guard")

    def __init__(self, owner, initial, guard):
        self.owner = owner          # the tensor whose .grad this is (outside, or a stand-in)
        self.initial = initial      # None, or the traced stand-in for the .grad at call time
        self.current = initial
        self.guard = guard          # None, or (dtype, shape, strides) of .grad at trace time


class TraceGrads:
    """The `.grad` slots of one trace."""

    def __init__(self, trace):
        self.trace = trace
        self.slots: dict = {}       # id(owner) -> GradSlot
        self.inputs: dict = {}      # grad input Value -> owner's input Value

    def owns(self, t) -> bool:
        """t's .grad lives outside the trace: an outside tensor or an argument's stand-in."""
        return t._trace is None or t._data in getattr(self.trace, "arg_leaves", ())

    def get(self, t):
        return self._slot(t).current

    def set(self, t, value) -> None:
        slot = self.slots.get(id(t))
        if slot is None:    # NOTE: written before any read: the call's .grad does not matter
            self.trace.value_of(t)
            slot = self.slots[id(t)] = GradSlot(t, _UNSET, _UNSET)
        slot.current = value

    def _slot(self, t) -> GradSlot:
        slot = self.slots.get(id(t))
        if slot is None:
            slot = self.slots[id(t)] = self._new_slot(t)
        return slot

    def _new_slot(self, t) -> GradSlot:
        from .tensor import Tensor
        owner_value = self.trace.value_of(t)     # NOTE: the owner is an input before its grad
        g = t._grad if t._trace is None else self.trace.arg_leaves[owner_value]._grad
        if g is None:
            return GradSlot(t, None, None)
        v = self.trace.builder.add_input(TensorType(g.dtype, tuple(g.shape)),
                                           hint=self.trace.grad_name(owner_value))
        self.inputs[v] = owner_value
        stand_in = Tensor._wrap(v, self.trace)
        stand_in._strides = g._elem_strides()
        return GradSlot(t, stand_in, (g._data.dtype, g._data.shape, g._data.strides))

    def results(self):
        """(owner's input Value, traced tensor or None) for every slot whose .grad changed
        object: the graph outputs (or Nones) to assign after each call."""
        out = []
        for slot in self.slots.values():
            if slot.current is not slot.initial:
                out.append((self.trace.value_of(slot.owner), slot.current))
        return out

    def guards(self) -> list:
        """(owner's input Value, expected guard) for every slot: None, or the grad's type."""
        return [(self.trace.value_of(s.owner), s.guard) for s in self.slots.values()
                if s.guard is not _UNSET]


def grad_guard(g) -> tuple | None:
    """What a compiled trace assumed about a `.grad` at call time."""
    if g is None:
        return None
    return (g._data.dtype, g._data.shape, g._data.strides)
