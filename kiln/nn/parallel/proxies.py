"""Proxies: how DDP learns during the backward that a group of gradients is complete.

For the length of DDP's forward, every parameter that requires grad is replaced in its
module's table by an alias made by a "proxy" node on the autograd tape; the node's VJP sees
the parameter's whole gradient (the tape has summed every use first) and hands it to the
step's reducer instead of `.grad`. Eagerly (EagerForward) there is one node per module that
owns parameters, so a module's gradients are reported as soon as its part of the backward is
done. Every proxy node also takes the step's sentinel as an input (reducer.py): the tape
runs the sentinel after every proxy that the backward reaches, and it ends the step.

Why a node also reads the module's input: the tape runs nodes in reverse depth-first finish
order, which puts nodes that read only leaves (a parameter's permute or expand, and a proxy
over parameters alone) at the very end of the backward, whatever layer they belong to.
When a module is first called, its parameters get a new proxy node that also takes the
module's input as an operand (it sends it no gradient): that node now finishes only after
everything the input depends on, so it runs right after the module's own backward, before
the layers beneath it. Made after the input, it can never be on a cycle.

A backward that wants only some tensors (`kiln.autograd.grad`, `backward(inputs=...)`) does
not need the sentinel: the proxies then pass this rank's own gradients on to the
parameters it wants, unaveraged, as PyTorch's `autograd.grad` returns them through DDP.

Inside `@kiln.jit` (traced.py) the backward is compiled: one proxy node per bucket, and the
sentinel emits every bucket's all-reduce into the graph.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from kiln.frontend import autograd
from kiln.frontend.tensor import Tensor
from kiln.ir.errors import KilnError


class ParametersChanged(KilnError, RuntimeError):
    """The module's parameters are not the ones DistributedDataParallel was built with."""


def proxy_node(name: str, params: list, anchor, sentinel, report, zero) -> list:
    """Aliases of `params` made by one tape node; in a full backward its VJP calls
    `report(cotangents)` (one Tensor or None per parameter) and sends only `zero()` on, to
    the sentinel. `anchor` (a tensor with history, or None) is an extra operand that only
    places the node in the backward's order."""
    outs = [p._alias() for p in params]
    inputs = list(params) + ([anchor] if anchor is not None else []) + [sentinel]
    n, n_inputs = len(params), len(inputs)

    def vjp(ctx, g):
        gs = list(g) if isinstance(g, list) else [g]
        if not ctx.needs[-1]:
            # NOTE: a backward for chosen tensors: this rank's own gradients, where wanted
            return [gi if need else None for gi, need in zip(gs, ctx.needs[:n])] + \
                [None] * (n_inputs - n)
        report(gs)
        return [None] * (n_inputs - 1) + [zero()]

    node = autograd.TapeNode(name, vjp, inputs, [autograd.save(o) for o in outs], None)
    for i, o in enumerate(outs):
        o._requires_grad = True
        o.grad_fn = node
        o._out_index = i
        o._view_version = o._version[0]
    return outs, node


_ZERO = Tensor._wrap(np.zeros((), np.float32))


def eager_zero() -> Tensor:
    return _ZERO


class Tables:
    """Every (module, name) table entry that holds one of DDP's parameters, to swap them for
    proxies during a forward and put them back after."""

    def __init__(self, module, params: list):
        index = {id(p): i for i, p in enumerate(params)}
        self.entries = []           # (module, name, parameter index)
        self.owners = []            # (module, [parameter indices]) for modules owning some
        for m in module.modules():
            mine = [(name, index[id(p)]) for name, p in m._parameters.items()
                    if p is not None and id(p) in index]
            self.entries += [(m, name, i) for name, i in mine]
            if mine:
                self.owners.append((m, sorted({i for _, i in mine})))
        self.params = params
        # NOTE: the names in the DDP model's own state dict
        self.names = {id(m): f"module.{n}".rstrip(".") for n, m in module.named_modules()}
        self.frozen = [(f"module.{n}", p) for n, p in module.named_parameters()
                       if id(p) not in index]

    def check(self) -> None:
        """Raise if a parameter was replaced, or one frozen at construction now requires
        grad: DDP averages only the gradients of the parameters it was built with."""
        for m, name, i in self.entries:
            if m._parameters.get(name) is not self.params[i]:
                where = f"{self.names.get(id(m), 'module')}.{name}"
                raise ParametersChanged(
                    f"DistributedDataParallel: parameter '{where}' is no longer the Parameter "
                    "DDP was built with (it was replaced or removed after wrapping); DDP "
                    "synchronises only the parameters it wrapped. Change the parameters "
                    "before wrapping the model, or wrap it again (PyTorch's DDP would "
                    "silently leave the new one unsynchronised)")
        for name, p in self.frozen:
            if p.requires_grad:
                raise ParametersChanged(
                    f"DistributedDataParallel: parameter '{name}' did not require grad when "
                    "DDP was built and requires it now; DDP averages the gradients only of "
                    "the parameters that required grad when it was built. Unfreeze before "
                    "wrapping the model, or wrap it again")

    def swap(self, values: dict) -> None:
        """Put values[i] wherever parameter i is (for the indices given)."""
        for m, name, i in self.entries:
            if i in values:
                m._parameters[name] = values[i]

    def restore(self) -> None:
        for m, name, i in self.entries:
            m._parameters[name] = self.params[i]


class _Proxy:
    """One eager proxy node's parameters, and whether the forward's outputs reach it."""

    __slots__ = ("members", "expected", "node")

    def __init__(self, members: list[int], node):
        self.members, self.expected, self.node = members, False, node


class EagerForward:
    """One eager forward of DDP in `step`: proxies, anchored at each module's first call."""

    def __init__(self, ddp, step):
        self.tables = ddp._tables
        self.params = ddp._params
        self.step = step
        self.proxies: list[_Proxy] = []
        self.called: set = set()

    def forward(self, call):
        live = self.step.live
        wrapped = []
        try:
            for m, members in self.tables.owners:
                members = [i for i in members if live[i] and self.params[i].requires_grad]
                if members:
                    self.proxy(members, None)
                    wrapped.append(self._wrap(m, members))
            out = call()
        finally:
            self.tables.restore()
            for m in wrapped:
                m.__dict__.pop("forward", None)
        self.expect(out)
        return out

    def proxy(self, members: list[int], anchor) -> None:
        params = [self.params[i] for i in members]
        step = self.step
        holder: list = []

        def report(gs):
            step.contribute(members, gs, holder[0].expected)
        outs, node = proxy_node("ddp_grad_ready", params, anchor, step.sentinel, report,
                                eager_zero)
        holder.append(_Proxy(members, node))
        self.proxies.append(holder[0])
        self.tables.swap(dict(zip(members, outs)))

    def _wrap(self, m, members):
        original = m.forward        # NOTE: the bound method of its class

        def forward(*args, **kwargs):
            if id(m) not in self.called:
                self.called.add(id(m))
                anchor = _anchor(args, kwargs)
                if anchor is not None:
                    self.proxy(members, anchor)
            return original(*args, **kwargs)
        m.__dict__["forward"] = forward
        return m

    def expect(self, out) -> None:
        """Mark the proxies the backward from `out` will reach (each reports once) as
        expected, so their buckets may go as soon as they have reported; then let go of the
        nodes (the graph alone keeps them)."""
        reached = _reachable([t.grad_fn for t in tensors_in(out) if t.grad_fn is not None])
        for proxy in self.proxies:
            if id(proxy.node) in reached:
                proxy.expected = True
                self.step.expect(proxy.members)
            proxy.node = None


def _anchor(args, kwargs):
    for x in list(args) + list(kwargs.values()):
        if isinstance(x, Tensor) and x._requires_grad and x.grad_fn is not None:
            return x
    return None


def tensors_in(obj, depth: int = 0):
    """The tensors in a forward's output: nested lists, tuples (named too), dicts,
    dataclasses (PyTorch's `_find_tensors` looks in the same places)."""
    if isinstance(obj, Tensor):
        yield obj
    elif depth > 32:
        return
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for x in obj:
            yield from tensors_in(x, depth + 1)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from tensors_in(x, depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from tensors_in(getattr(obj, f.name, None), depth + 1)


def _reachable(roots: list) -> set:
    seen: set = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(e[1] for e in node.edges if e is not None and e[0] == "node"
                     and id(e[1]) not in seen)
    return seen
