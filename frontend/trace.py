"""Tracing: while a Trace is active, tensors hold graph Values and ops append nodes.

Tensors from outside the traced function (globals, closures, module parameters) are captured
as extra graph inputs, read again at every call, never baked in as constants.
"""
from __future__ import annotations

import threading

from kiln.ir.builder import GraphBuilder
from kiln.ir.dtypes import DType
from kiln.ir.errors import NotSupportedError
from kiln.ir.types import TensorType

_local = threading.local()


class GraphBreak(NotSupportedError):
    """The traced program needs a tensor's value (`.item()`, `bool(t)`, ...)."""


class Trace:
    """A graph under construction plus the bookkeeping to call it later."""

    def __init__(self, name: str):
        self.builder = GraphBuilder(name)
        self.arg_values: list = []          # graph inputs for the function's tensor args
        self.captured: dict = {}            # id(tensor) -> (tensor, Value)
        self.seed_inputs: list = []         # graph inputs filled with a fresh seed per call
        self.modules: dict = {}             # id -> (nn.Module called, its plain attributes)

    def add_arg(self, type: TensorType, hint: str):
        v = self.builder.add_input(type, hint)
        self.arg_values.append(v)
        return v

    def value_of(self, t):
        """The Value for tensor t in this trace (capturing outside tensors)."""
        if t._trace is self:
            return t._data
        if t._trace is not None:
            raise NotSupportedError("not supported yet: a tensor from another @kiln.jit "
                                    "trace used inside this one")
        key = id(t)
        if key not in self.captured:
            v = self.builder.add_input(t._type(), hint=f"c{len(self.captured)}")
            self.captured[key] = (t, v)
        return self.captured[key][1]

    def note_module(self, module) -> None:
        """An nn.Module ran during the trace: what it computes depends on `training` and its
        other plain attributes (dropout's p, batch norm's eps, ...)."""
        from .bytecode import module_state
        self.modules.setdefault(id(module), (module, module_state(module)))

    def read_value(self, t, why: str):
        """The NumPy value of traced tensor `t`, which the graph cannot give: a graph break."""
        from kiln.ir.types import user_loc
        raise GraphBreak(f"not supported yet: {why} on a traced tensor inside @kiln.jit "
                         "(a graph break)", loc=user_loc())

    def new_seed(self):
        v = self.builder.add_input(TensorType(DType.int64, ()), hint=f"seed{len(self.seed_inputs)}")
        self.seed_inputs.append(v)
        return v

    def input_order(self) -> list:
        """Graph inputs in order: args, then captured tensors and seeds as they appeared."""
        return list(self.builder.graph.inputs)


def current_trace() -> Trace | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


class tracing:
    """Context manager making `trace` the active one."""

    def __init__(self, trace: Trace):
        self.trace = trace

    def __enter__(self):
        if not hasattr(_local, "stack"):
            _local.stack = []
        _local.stack.append(self.trace)
        return self.trace

    def __exit__(self, *exc):
        _local.stack.pop()
        return False
