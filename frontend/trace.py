"""Tracing: while a Trace is active, tensors hold graph Values and ops append nodes.

Tensors from outside the traced function (globals, closures, module parameters) are captured
as extra graph inputs, read again at every call, never baked in as constants. Graph inputs
are named after where the program found them (`%x`, `%fc1.weight`: frontend/trace_names.py),
and a node made while an nn.Module's forward runs carries the module's path in its location
(`model.fc1 (Linear) at train.py:41`).
"""
from __future__ import annotations

import copy
import sys
import threading

import numpy as np

from kiln.ir.builder import GraphBuilder
from kiln.ir.errors import NotSupportedError
from kiln.ir.names import ModuleLoc
from kiln.ir.types import TensorType, user_loc

from .trace_names import TraceNames

class _TraceState(threading.local):
    stack: list | None = None   # NOTE: a class default: no failed lookup per jitted call


_local = _TraceState()


class GraphBreak(NotSupportedError):
    """The traced program needs a tensor's value (`.item()`, `bool(t)`, ...)."""


class ValueBreak(GraphBreak):
    """A graph break at a read of a traced tensor's value: replay mode can go past it."""


class HelperSideEffects(ValueBreak):
    """A function called during a trace has Python side effects (found before it ran):
    replay mode runs the Python at every call."""

    def __init__(self, message: str, effects: list, loc=None):
        super().__init__(message, loc=loc)
        self.effects = effects


class DeviceBreak(GraphBreak):
    """A CPU trace met a CUDA tensor it did not get as an argument (a captured model on the
    GPU): the function is traced again for CUDA."""


class _Scope:
    """An nn.Module whose forward is running in a trace: its path and class name."""

    __slots__ = ("module", "path", "kind")

    def __init__(self, module, path: str):
        self.module, self.path, self.kind = module, path, type(module).__name__


class _TraceBuilder(GraphBuilder):
    """A trace's GraphBuilder: a node made inside a module's forward gets the module path in
    its location, and one made by a VJP (a backward op) gets its forward op's location."""

    def __init__(self, name: str, scopes: list):
        super().__init__(name)
        self.scopes = scopes
        self.forward_loc = None

    def emit(self, op, inputs, attrs, loc=None):
        if self.forward_loc is not None:
            loc = self.forward_loc
        elif self.scopes and loc is not None:
            top = self.scopes[-1]
            loc = ModuleLoc(loc.file, loc.line, top.path, top.kind)
        return super().emit(op, inputs, attrs, loc)


class _BackwardOf:
    """The block in which a VJP runs inside a trace (see Trace.backward_of)."""

    __slots__ = ("builder", "loc", "saved")

    def __init__(self, builder, loc):
        self.builder, self.loc = builder, loc

    def __enter__(self):
        self.saved = self.builder.forward_loc
        if self.loc is not None:
            self.builder.forward_loc = self.loc

    def __exit__(self, *exc):
        self.builder.forward_loc = self.saved
        return False


class Trace:
    """A graph under construction plus the bookkeeping to call it later.

    The graph is compiled for one device, `device` ("cpu" or "cuda"), and every tensor of the
    traced function must be there: a tensor made, captured or moved to the other device is a
    graph break (`require_device`), so a function mixing devices runs eagerly and gets
    eager's results and errors. One exception, as in eager mode: CPU 0-d tensors (an
    optimizer's step count, a scale) join a CUDA graph as inputs read at every call; `host`
    holds them and the values computed from them alone (with constants, `neutral`), which
    are CPU tensors in the user's program: returning one is a graph break."""

    device = "cpu"

    def __init__(self, name: str):
        self.host: set = set()
        self.neutral: set = set()
        self.scopes: list = []              # _Scope of each module whose forward is running
        self.names = TraceNames()
        self.builder = _TraceBuilder(name, self.scopes)
        self.arg_values: list = []          # graph inputs for the function's tensor args
        self.captured: dict = {}            # id(tensor) -> (tensor, Value)
        self.seed_inputs: list = []         # graph inputs filled with a fresh seed per call
        self.modules: dict = {}             # id -> (nn.Module called, its plain attributes)
        self.replay = None                  # a replay session that materializes value reads
        self.scalar_inputs: list = []       # (Value, getter, DType): 0-d inputs read per call
        self.random_inputs: list = []       # (Value, draw): random numbers drawn per call
        self._start_guards(sys._getframe(1))

    def add_arg(self, type: TensorType, hint: str | None):
        v = self.builder.add_input(type, self.names.claim(hint))
        self.arg_values.append(v)
        return v

    def value_of(self, t):
        """The Value for tensor t in this trace (capturing outside tensors)."""
        if t._trace is self:
            return t._data
        parent = self.__dict__.get("parent")
        if parent is not None:
            return self._saved_from(parent, t)
        if t._trace is not None:
            raise NotSupportedError("not supported yet: a tensor from another @kiln.jit "
                                    "trace used inside this one")
        host = self.require_device("cpu" if type(t._data) is np.ndarray else "cuda",
                                   "a tensor read from outside the function",
                                   scalar=t._data.ndim == 0)
        if t._copy_of is not None:
            raise GraphBreak("not supported yet: compiling a function that reads a view of a "
                             "CUDA tensor (a copy standing for the view)", loc=user_loc())
        # NOTE: an alias over the same ndarray (one autograd saved, a detach()) is the same
        # storage: one graph input, so a write through either is seen by both
        storages = self.__dict__.setdefault("_storages", {})
        arr, key = storages.setdefault(id(t._data), (t._data, id(t)))
        if arr is not t._data:
            key = id(t)
            storages[id(t._data)] = (t._data, key)
        if key not in self.captured:
            v = self.builder.add_input(t._type(), hint=self._capture_name(t))
            self.captured[key] = (t, v)
            if host:
                self.host.add(v)
        return self.captured[key][1]

    def _capture_name(self, t) -> str:
        """The name of a captured tensor's input: where the program found it (`fc1.weight`,
        `opt.state.fc1.weight.exp_avg`, `w`), else `c<k>`."""
        outer = self.scopes[0].module if self.scopes else None
        name = self.names.tensor_name(t, outer) or self.names.claim(f"c{len(self.captured)}")
        self.names.given[id(t)] = name
        return name

    def grad_name(self, owner) -> str:
        """The name of the input holding the `.grad` of input `owner` (`fc1.weight.grad`)."""
        return self.names.claim(f"{owner.hint}.grad" if owner.hint else "grad")

    def enter_module(self, module) -> None:
        """`module`'s forward starts: nodes made until `exit_module` carry its path."""
        scopes = self.scopes
        if scopes:
            path = self.names.module_path(module, scopes[0].module, scopes[-1])
        else:
            path = self.names.module_path(module)
        scopes.append(_Scope(module, path))

    def exit_module(self) -> None:
        self.scopes.pop()

    def backward_of(self, outputs) -> _BackwardOf:
        """A block whose nodes carry the location of the node that made `outputs` (traced
        tensors: the forward op a VJP differentiates), as PyTorch's backward nodes point
        to their forward op."""
        loc = None
        for t in outputs:
            producer = getattr(t._data, "producer", None)
            if producer is not None:
                loc = producer.loc
                break
        return _BackwardOf(self.builder, loc)

    def require_device(self, device: str, what: str, scalar: bool = False) -> bool:
        """`what` is on `device` in the user's program: this trace's device (False), a CPU
        0-d tensor (`scalar`) in a CUDA trace (True: a host value), or a graph break (the
        function runs eagerly, where each op checks its operands' devices; a CPU trace
        meeting CUDA is traced again for CUDA)."""
        if device == self.device:
            return False
        if scalar and device == "cpu":
            return True
        cls = DeviceBreak if self.device == "cpu" else GraphBreak
        raise cls(f"not supported yet: {what} on {device} in a function compiled for "
                  f"{self.device} (a compiled graph runs on one device)", loc=user_loc())

    def follow_host(self, values: list, outs, holder) -> None:
        """Results of an op on host values and constants alone are host values too."""
        if not values:
            if getattr(holder, "_trace", None) is not self:
                self.neutral.update(outs)
            elif holder._data in self.host:
                self.host.update(outs)
            return
        host, neutral = self.host, self.neutral
        if any(v in host for v in values) and all(v in host or v in neutral for v in values):
            host.update(outs)

    def add_guard(self, check, what: str) -> None:
        """`check()` must be true at a call for this trace's graph to be used (`what` names
        it in recompile messages)."""
        self.__dict__.setdefault("extra_guards", []).append((check, what))

    def _saved_from(self, parent: "Trace", t):
        """In the backward trace of `parent`: the input holding forward value t (saved)."""
        forward = t._data if t._trace is parent else parent.value_of(t)
        saved = self.__dict__.setdefault("saved_from_parent", {})
        if forward not in saved:
            hint = self.names.claim(forward.hint or f"saved{len(saved)}")
            saved[forward] = self.builder.add_input(forward.type, hint=hint)
        return saved[forward]

    def note_module(self, module) -> None:
        """An nn.Module ran during the trace: what it computes depends on `training` and its
        other plain attributes (dropout's p, batch norm's eps, ...)."""
        from .bytecode import module_state
        self.modules.setdefault(id(module), (module, module_state(module)))

    def _start_guards(self, creator) -> None:
        """Which jit call this trace is for, and a recorder of the helper functions that run
        while it is active (their reads become guards; see frontend/guards.py)."""
        from .guards import HelperRecorder, skip_codes, take_origin
        # NOTE: `cut` re-runs __init__ mid-trace: the recorder and origin carry over.
        self.origin = take_origin() or getattr(self, "origin", None)
        if getattr(self, "helpers", None) is None:
            self.helpers = HelperRecorder(self, creator, skip_codes(self.origin))

    @property
    def grads(self):
        """The `.grad` slots of the outside tensors this trace reads or writes."""
        grads = self.__dict__.get("_grads")
        if grads is None or grads.trace is not self:
            from .trace_grads import TraceGrads
            grads = self._grads = TraceGrads(self)
        return grads

    def scalar_input(self, getter, dtype, hint: str, owner=None):
        """A 0-d graph input whose value is `getter()` read at every call (a hyper-parameter
        such as a learning rate that must not be baked in); returns its Value. It is named
        `hint`, after the variable holding `owner` when given (`opt.param_groups.0.lr`)."""
        from kiln.ir import dtypes
        dt = dtypes.as_dtype(dtype)
        where = self.names.object_name(owner) if owner is not None else None
        hint = self.names.claim(f"{where}.{hint}" if where else hint)
        v = self.builder.add_input(TensorType(dt, ()), hint=hint)
        self.scalar_inputs.append((v, getter, dt))
        return v

    def random_input(self, draw, type: TensorType, hint: str):
        """A graph input holding random numbers that `draw()` makes at every call, in the
        order of the graph's inputs (the program's order): jitted code then draws exactly
        what eager code draws (frontend/creation.py). Returns its Value."""
        name = self.names.claim(f"{hint}{len(self.random_inputs)}")
        v = self.builder.add_input(type, hint=name)
        self.random_inputs.append((v, draw))
        self.seed_inputs.append(v)          # NOTE: `kiln.explain` lists them with the seeds
        return v

    def read_value(self, t, why: str):
        """The NumPy value of traced tensor `t`. While replaying (frontend/replay.py) the graph
        recorded so far is compiled and run to give it; otherwise it is a graph break."""
        if self.replay is not None:
            return self.replay.read(self, t, why)
        from kiln.ir.types import user_loc
        raise ValueBreak(f"not supported yet: {why} on a traced tensor inside @kiln.jit "
                         "(a graph break)", loc=user_loc())

    def cut(self) -> "Trace":
        """Move everything recorded so far into a new Trace (a segment to compile) and start
        this one afresh; its tensors are rebound by the replay session."""
        # NOTE: a shallow copy plus __init__ moves every attribute, including ones added
        # later for other features, without listing them here.
        segment = copy.copy(self)
        replay = self.replay
        self.__init__(self.builder.graph.name)
        self.replay = replay
        # NOTE: the modules whose forward is running still are: their paths carry over
        self.scopes = self.builder.scopes = segment.scopes
        self.names = segment.names.fresh()
        return segment

    def input_order(self) -> list:
        """Graph inputs in order: args, then captured tensors and seeds as they appeared."""
        return list(self.builder.graph.inputs)


def current_trace() -> Trace | None:
    stack = _local.stack
    return stack[-1] if stack else None


class tracing:
    """Context manager making `trace` the active one."""

    def __init__(self, trace: Trace):
        self.trace = trace

    def __enter__(self):
        if _local.stack is None:
            _local.stack = []
        _local.stack.append(self.trace)
        return self.trace

    def __exit__(self, *exc):
        _local.stack.pop()
        return False


def untraced() -> tracing:
    """A block that runs eagerly even inside a trace (state an optimizer creates once)."""
    return tracing(None)
