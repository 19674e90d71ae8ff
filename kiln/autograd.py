"""`kiln.autograd`: gradients as values (`grad`), `backward` of several tensors, and custom
differentiable operations (`Function`), as in `torch.autograd`.

The tape and its walk live in `kiln.frontend.autograd`; this module is the public face.

    >>> import kiln
    >>> import kiln.autograd
    >>> x = kiln.tensor([1.0, 2.0], requires_grad=True)
    >>> g, = kiln.autograd.grad((x ** 3).sum(), x, create_graph=True)
    >>> g.tolist(), x.grad is None
    ([3.0, 12.0], True)
    >>> (g ** 2).sum().backward()          # a gradient penalty: d/dx sum((3x^2)^2) = 36x^3
    >>> x.grad.tolist()
    [36.0, 288.0]
"""
from __future__ import annotations

from kiln.frontend import autograd as _tape
from kiln.frontend.autograd import (AutogradError, enable_grad, is_grad_enabled, no_grad,
                                    set_grad_enabled)
from kiln.frontend.tensor import Tensor
from kiln.ir.types import user_loc

__all__ = ["AutogradError", "Function", "FunctionCtx", "backward", "enable_grad", "grad",
           "is_grad_enabled", "no_grad", "set_grad_enabled"]


def _as_list(tensors, what: str) -> list:
    if isinstance(tensors, Tensor):
        return [tensors]
    if isinstance(tensors, (list, tuple)):
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"{what}[{i}] must be a Tensor, got {type(t).__name__}")
        return list(tensors)
    raise TypeError(f"{what} must be a Tensor or a sequence of Tensors, got "
                    f"{type(tensors).__name__}")


def _grad_list(grads):
    if grads is None or isinstance(grads, Tensor):
        return None if grads is None else [grads]
    return list(grads)


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool | None = None,
         materialize_grads: bool = False) -> tuple:
    """The gradients of `outputs` (weighted by `grad_outputs`) with respect to each of
    `inputs`, returned as a tuple; no `.grad` is touched.

    `grad_outputs` may be omitted for one-element outputs. The graph's saved values are
    freed unless `retain_graph` (default: `create_graph`). With `create_graph=True` the
    gradients have a history of their own, so they can be differentiated again (gradient
    penalties, Hessian-vector products). An input the outputs do not depend on raises unless
    `allow_unused=True` (its gradient is then None, or zeros with `materialize_grads=True`).

    >>> import kiln, kiln.autograd
    >>> x = kiln.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = x * x
    >>> kiln.autograd.grad(y, x, grad_outputs=kiln.ones(3))[0].tolist()
    [2.0, 4.0, 6.0]
    """
    outputs = _as_list(outputs, "outputs")
    inputs = _as_list(inputs, "inputs")
    if materialize_grads and allow_unused is False:
        raise ValueError("Expected allow_unused to be True or not passed when "
                         "materialize_grads=True, but got: allow_unused=False.")
    for t in inputs:
        if not t.requires_grad:
            raise AutogradError("One of the differentiated Tensors does not require grad",
                                loc=user_loc())
    roots = _tape.roots_with_cotangents(outputs, _grad_list(grad_outputs))
    for i, out in enumerate(outputs):
        if not out.requires_grad:
            raise AutogradError(f"element {i} of tensors does not require grad and does not "
                                "have a grad_fn", loc=user_loc())
    found = _collect(roots, inputs, retain_graph, create_graph)
    return tuple(_result(t, found.get(id(t)), allow_unused or materialize_grads,
                         materialize_grads) for t in inputs)


def _collect(roots, inputs, retain_graph, create_graph) -> dict:
    """id(input) -> its summed gradient, for the inputs the backward reached."""
    found: dict = {}

    def add(t, g):
        found[id(t)] = g if id(t) not in found else found[id(t)] + g

    wanted = _tape.Wanted(inputs, add)
    if retain_graph is None:
        retain_graph = create_graph
    _tape.run_backward(roots, retain_graph, _only(wanted.leaves, add), create_graph, wanted)
    return found


def _only(ids: set, add):
    def on_leaf(leaf, g):
        if id(leaf) in ids:
            add(leaf, g)
    return on_leaf


def _result(t: Tensor, g, allow_unused: bool, materialize: bool):
    if g is None:
        if not allow_unused:
            raise AutogradError("One of the differentiated Tensors appears to not have been "
                                "used in the graph. Set allow_unused=True if this is the "
                                "desired behavior.", loc=user_loc())
        if materialize:
            from kiln.frontend.creation import zeros_like
            return zeros_like(t)
        return None
    return g


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs=None) -> None:
    """Accumulate the gradients of `tensors` (weighted by `grad_tensors`) into the `.grad` of
    every leaf they depend on, or only of `inputs` when given, like `torch.autograd.backward`.

    >>> import kiln, kiln.autograd
    >>> a = kiln.tensor([1.0, 2.0], requires_grad=True)
    >>> kiln.autograd.backward([(a * a).sum(), a.sum()])
    >>> a.grad.tolist()
    [3.0, 5.0]
    """
    tensors = _as_list(tensors, "tensors")
    roots = _tape.roots_with_cotangents(tensors, _grad_list(grad_tensors))
    if inputs is not None:
        inputs = _as_list(inputs, "inputs")
        if not inputs:
            raise AutogradError("'inputs' argument to backward() cannot be empty.",
                                loc=user_loc())
    _tape.backward_roots(roots, retain_graph, create_graph, inputs)



class FunctionCtx:
    """The `ctx` a custom `Function`'s forward and backward share."""

    def __init__(self, needs_input_grad: tuple):
        self.needs_input_grad = needs_input_grad
        self.materialize_grads = True
        self._saved: tuple = ()
        self._non_differentiable: set = set()

    def save_for_backward(self, *tensors) -> None:
        """Keep tensors for backward; reading them after an in-place write raises."""
        self._saved = tuple(None if t is None else _tape.save(t) for t in tensors)

    @property
    def saved_tensors(self) -> tuple:
        for t in self._saved:
            if t is not None:
                _tape.require_fresh(t)
        return self._saved

    def mark_non_differentiable(self, *tensors) -> None:
        self._non_differentiable.update(id(t) for t in tensors)

    def set_materialize_grads(self, value: bool) -> None:
        """Whether backward gets zeros (the default) or None for outputs without a gradient."""
        self.materialize_grads = bool(value)


class Function:
    """A differentiable operation with a hand-written backward, as `torch.autograd.Function`:
    subclass it with static `forward(ctx, *args)` and `backward(ctx, *grad_outputs)` (one
    gradient or None per forward argument) and call `YourFunction.apply(*args)`.

    >>> import kiln, kiln.autograd
    >>> class Cube(kiln.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, grad):
    ...         x, = ctx.saved_tensors
    ...         return grad * 3 * x ** 2
    >>> x = kiln.tensor([1.0, 2.0], requires_grad=True)
    >>> Cube.apply(x).sum().backward()
    >>> x.grad.tolist()
    [3.0, 12.0]
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("a kiln.autograd.Function subclass must define forward")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("a kiln.autograd.Function subclass must define backward")

    @classmethod
    def apply(cls, *args, **kwargs):
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx = FunctionCtx(needs)
        with no_grad():
            result = cls.forward(ctx, *args, **kwargs)
        if not (is_grad_enabled() and any(needs)):
            return result
        single = isinstance(result, Tensor)
        outputs = [result] if single else list(result)
        _record_function(cls, ctx, args, outputs)
        return outputs[0] if single else type(result)(outputs)


def _record_function(cls, ctx: FunctionCtx, args: tuple, outputs: list) -> None:
    """One tape node from the tensor arguments to the differentiable outputs, whose VJP calls
    `cls.backward`. An output that is an argument itself becomes an alias of it."""
    positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
    inputs = [args[i] for i in positions]
    index = [i for i, o in enumerate(outputs) if isinstance(o, Tensor) and o.dtype.is_float
             and id(o) not in ctx._non_differentiable]
    for i in index:
        if any(outputs[i] is t for t in inputs):
            outputs[i] = outputs[i]._alias()
    outs = [outputs[i] for i in index]

    def vjp(_, g):
        gs = list(g) if isinstance(g, list) else [g]
        if ctx.materialize_grads:
            from kiln.frontend.creation import zeros_like
            gs = [zeros_like(o) if gi is None else gi for gi, o in zip(gs, outs)]
        full = [None] * len(outputs)
        for i, gi in zip(index, gs):
            full[i] = gi
        grads = _function_grads(cls, cls.backward(ctx, *full), len(args))
        return [grads[i] for i in positions]

    node = _tape.TapeNode(f"function_{cls.__name__}", vjp, inputs,
                          [_tape.save(o) for o in outs], None)
    for k, o in enumerate(outs):
        o._requires_grad = True
        o.grad_fn = node
        o._out_index = k
        o._view_version = o._version[0]


def _function_grads(cls, grads, n_args: int) -> tuple:
    grads = grads if isinstance(grads, tuple) else (grads,)
    if len(grads) > n_args and all(g is None for g in grads[n_args:]):
        grads = grads[:n_args]
    if len(grads) != n_args:
        raise AutogradError(f"function {cls.__name__}Backward returned an incorrect number of "
                            f"gradients (expected {n_args}, got {len(grads)})")
    return grads
