"""Gradients through `@kiln.jit`: the backward of a traced call, as a compiled graph.

While a function is traced with grad mode on, its ops record on the autograd tape exactly as
they do eagerly (tracer tensors in place of arrays), so `with kiln.no_grad():` blocks, detach,
in-place rebasing and the version checks inside the function behave as in eager mode. A
`loss.backward()` inside the function walks that tape during the trace and its VJPs add the
backward to the same graph. When outputs still require grad at the end, the tape is walked
once more from them into a SEPARATE backward graph: its inputs are the forward values the VJPs
read (saved activations: extra outputs of the forward graph, or forward inputs re-read and
version-checked) and one cotangent per output; its outputs are the gradients of the inputs the
tape reached. Each call then records ONE tape node whose VJP runs that backward executable.
"""
from __future__ import annotations

import numpy as np

from kiln.ir.errors import KilnError

from . import autograd
from .tensor import Tensor
from .trace import Trace, tracing


class TapeBackward:
    """The backward graph of one trace (built at the end of tracing, before the forward graph
    is finished, because its saved values become forward outputs)."""

    def __init__(self, trace: Trace, outputs: list, out_index: list[int]):
        self.name = trace.builder.graph.name
        self.out_index = out_index          # which forward outputs the node differentiates
        self.error = None
        self.saved = []                     # forward Values the backward reads, in its order
        self.wrt = []                       # forward input Values whose gradients it returns
        self.graph = None
        try:
            self._build(trace, outputs)
        except KilnError as e:
            self.error = e                  # NOTE: raised if, and when, backward is called

    def _build(self, trace: Trace, outputs: list) -> None:
        bwd = Trace(f"{self.name}_vjp")
        bwd.parent = trace
        cots = [Tensor._wrap(bwd.builder.add_input(t._type(), f"cot{k}"), bwd)
                for k, t in zip(self.out_index, outputs)]
        grads: dict = {}
        with tracing(bwd):
            autograd.run_backward(list(zip(outputs, cots)), True,
                                  lambda leaf, g: _add(grads, leaf, g))
            values = [trace.value_of(leaf) for leaf, _ in grads.values()]
            results = [bwd.value_of(g) for _, g in grads.values()]
        self.wrt = values
        self.saved = list(bwd.__dict__.get("saved_from_parent", ()))
        self.graph = bwd.builder.finish(results)

    def compile(self, forward_inputs: list, device: str = "cpu") -> None:
        """Optimize and compile the backward graph for `device` (after the forward graph is
        final)."""
        from .compile import compile_traced
        if self.graph is None:
            return
        position = {v: i for i, v in enumerate(forward_inputs)}
        made_inside = [v for v in self.wrt if v not in position]
        if made_inside:
            from kiln.ir.errors import NotSupportedError
            raise NotSupportedError(
                "not supported yet: gradients for a tensor made inside the jitted function "
                f"with requires_grad=True ({made_inside[0].type}, e.g. a module constructed "
                "inside it); make it outside and pass or capture it")
        self.wrt_inputs = [position[v] for v in self.wrt]
        self.saved_inputs = [position.get(v) for v in self.saved]
        self.traced = self.graph
        self.graph, self.stages, self.executable = compile_traced(self.traced,
                                                                  device=device)

    def record(self, tensors: list, outputs: list, saved_arrays: list) -> None:
        """Make this call's differentiated outputs require grad, through one tape node."""
        outs = [outputs[k] for k in self.out_index]
        if self.error is not None:
            inputs = [t for t in tensors if t is not None and t._requires_grad]
            vjp = self._raise
        else:
            inputs = [tensors[i] for i in self.wrt_inputs]
            vjp = self._vjp_for(self._saved_values(tensors, saved_arrays),
                                [type(t._data) for t in inputs])
        node = autograd.TapeNode(f"jit_{self.name}", vjp, inputs,
                                 [autograd.save(t) for t in outs], None)
        for i, t in enumerate(outs):
            t._requires_grad = True
            t.grad_fn = node
            t._out_index = i
            t._view_version = t._version[0]

    def _raise(self, ctx, g):
        raise self.error

    def _saved_values(self, tensors: list, saved_arrays: list) -> list:
        """Per saved value: a forward output (an array, or a saved tensor when the caller
        holds it as an output), or a forward input saved with its version."""
        arrays = iter(saved_arrays)
        return [autograd.save(tensors[i]) if i is not None else next(arrays)
                for i in self.saved_inputs]

    def _vjp_for(self, saved: list, storages: list):
        """The call's VJP; each gradient is made where its input is (`storages`: their
        arrays' types: a CPU 0-d argument of a CUDA graph gets a CPU gradient)."""
        cot_types = [v.type for v in self.graph.inputs[:len(self.out_index)]]

        def vjp(ctx, g):
            if saved:
                autograd.require_fresh(ctx.outputs[0])  # NOTE: freed by an earlier backward?
            gs = g if isinstance(g, list) else [g]
            arrays = [np.zeros(ty.shape, ty.dtype.np) if gi is None else gi._data
                      for gi, ty in zip(gs, cot_types)]
            for s in saved:
                if isinstance(s, Tensor):
                    autograd.require_fresh(s)
                    arrays.append(s._data)
                else:
                    arrays.append(s)
            grads = self.executable(arrays)
            return [Tensor._wrap(a if type(a) is kind else
                                 (a.to_host() if kind is np.ndarray else _upload(a)))
                    for a, kind in zip(grads, storages)]
        return vjp


def _upload(a: np.ndarray):
    from .cuda_eager import cuda_device
    return cuda_device().from_host(np.ascontiguousarray(a))


def _add(grads: dict, leaf, g) -> None:
    """Sum the gradients reaching one leaf (inside the backward trace)."""
    if id(leaf) in grads:
        grads[id(leaf)] = (leaf, grads[id(leaf)][1] + g)
    else:
        grads[id(leaf)] = (leaf, g)
