"""Eager autograd: a tape of registry ops, walked backwards with the registry's VJPs.

The same VJP rules drive the graph autograd pass (`kiln.passes.autograd`), so eager and
compiled gradients cannot disagree.
"""
from __future__ import annotations

import contextlib
import threading

from kiln.ir.errors import KilnError
from kiln.ir.registry import VJPContext

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


def set_grad_enabled(mode: bool) -> None:
    _state.enabled = bool(mode)


@contextlib.contextmanager
def _grad_mode(mode: bool):
    prev = is_grad_enabled()
    set_grad_enabled(mode)
    try:
        yield
    finally:
        set_grad_enabled(prev)


class no_grad(contextlib.ContextDecorator):
    """Disable gradient recording, as a context manager or a decorator.

    >>> import kiln
    >>> x = kiln.ones(2, requires_grad=True)
    >>> with kiln.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    def __enter__(self):
        self._prev = is_grad_enabled()
        set_grad_enabled(False)

    def __exit__(self, *exc):
        set_grad_enabled(self._prev)
        return False


class enable_grad(contextlib.ContextDecorator):
    def __enter__(self):
        self._prev = is_grad_enabled()
        set_grad_enabled(True)

    def __exit__(self, *exc):
        set_grad_enabled(self._prev)
        return False


class TapeNode:
    """One recorded op: its VJP, inputs (Tensors), detached outputs and attrs."""

    __slots__ = ("op", "vjp", "inputs", "outputs", "attrs")

    def __init__(self, op: str, vjp, inputs, outputs, attrs):
        self.op = op
        self.vjp = vjp
        self.inputs = inputs
        self.outputs = outputs
        self.attrs = attrs

    def name(self) -> str:
        return "".join(p.capitalize() for p in self.op.split("_")) + "Backward0"

    def __repr__(self):
        return f"<{self.name()}>"


def _topo_order(root: TapeNode) -> list[TapeNode]:
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t.grad_fn is not None and id(t.grad_fn) not in seen:
                stack.append((t.grad_fn, False))
    return order[::-1]


def _accumulate(store: dict, key, g):
    store[key] = g if key not in store else store[key] + g


def backward(root, gradient) -> None:
    """Accumulate d(root)/d(leaf) * gradient into every leaf's `.grad`."""
    if root.grad_fn is None:
        if root.requires_grad:
            _accumulate_leaf(root, gradient)
            return
        raise KilnError("element 0 of tensors does not require grad and does not have a "
                        "grad_fn")
    cot: dict = {(id(root.grad_fn), root._out_index): gradient}
    with _grad_mode(False):
        for node in _topo_order(root.grad_fn):
            _run_vjp(node, cot)


def _run_vjp(node: TapeNode, cot: dict):
    gs = [cot.pop((id(node), i), None) for i in range(len(node.outputs))]
    if all(g is None for g in gs):
        return
    needs = [t.requires_grad for t in node.inputs]
    ctx = VJPContext(node.inputs, node.outputs, node.attrs, needs)
    g = gs[0] if len(gs) == 1 else gs
    grads = node.vjp(ctx, g)
    for t, gi, need in zip(node.inputs, grads, needs):
        if gi is None or not need:
            continue
        if t._retain and t.grad_fn is not None:
            t.grad = gi if t.grad is None else t.grad + gi
        if t.grad_fn is not None:
            _accumulate(cot, (id(t.grad_fn), t._out_index), gi)
        else:
            _accumulate_leaf(t, gi)


def _accumulate_leaf(t, g):
    g = g.detach()
    t.grad = g if t.grad is None else (t.grad + g).detach()
