"""Proxies: how DDP learns during the backward that a group of gradients is complete.

For the length of DDP's forward, every parameter in the module tree is replaced in its
module's table by an alias made by a "proxy" node on the autograd tape; the node's VJP sees
the parameter's whole gradient (the tape has summed every use first) and hands it to DDP
instead of `.grad`. Eagerly (EagerStep) there is one node per module that owns parameters,
so a module's gradients are reported as soon as its part of the backward is done.

Why a node also reads the module's input: the tape runs nodes in reverse depth-first finish
order, which puts nodes that read only leaves (a parameter's permute or expand, and a proxy
over parameters alone) at the very end of the backward, whatever layer they belong to.
When a module is first called, its parameters get a new proxy node that also takes the
module's input as an operand (it sends it no gradient): that node now finishes only after
everything the input depends on, so it runs right after the module's own backward, before
the layers beneath it. Made after the input, it can never be on a cycle.

Inside `@kiln.jit` (traced_forward) the backward is compiled: one proxy node per bucket,
whose VJP (run while the trace records `loss.backward()`) emits the bucket's all-reduce into
the graph and assigns the averaged gradients to `.grad`.
"""
from __future__ import annotations

from kiln.frontend import autograd
from kiln.frontend.tensor import Tensor


def proxy_node(name: str, params: list, anchor, report) -> list:
    """Aliases of `params` made by one tape node; its VJP calls `report(cotangents)` (one
    Tensor or None per parameter) and sends no gradient on. `anchor` (a tensor with history,
    or None) is an extra operand that only places the node in the backward's order."""
    outs = [p._alias() for p in params]
    inputs = list(params) + ([anchor] if anchor is not None else [])
    n_inputs = len(inputs)

    def vjp(ctx, g):
        report(list(g) if isinstance(g, list) else [g])
        return [None] * n_inputs

    node = autograd.TapeNode(name, vjp, inputs, [autograd.save(o) for o in outs], None)
    for i, o in enumerate(outs):
        o._requires_grad = True
        o.grad_fn = node
        o._out_index = i
        o._view_version = o._version[0]
    return outs, node


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

    def swap(self, values: dict) -> None:
        """Put values[i] wherever parameter i is (for the indices given)."""
        for m, name, i in self.entries:
            if i in values:
                m._parameters[name] = values[i]

    def restore(self) -> None:
        for m, name, i in self.entries:
            m._parameters[name] = self.params[i]


class EagerStep:
    """The eager forward of one DDP step: proxies, anchored at each module's first call."""

    def __init__(self, ddp):
        self.tables = ddp._tables
        self.params = ddp._params
        self.reducer = ddp._reducer
        self.nodes: list = []
        self.called: set = set()

    def forward(self, call):
        wrapped = []
        try:
            for m, members in self.tables.owners:
                self.proxy(members, None)
                wrapped.append(self._wrap(m, members))
            out = call()
        finally:
            self.tables.restore()
            for m in wrapped:
                m.__dict__.pop("forward", None)
        self.reducer.expect(self.counts(out))
        return out

    def proxy(self, members: list[int], anchor) -> None:
        params = [self.params[i] for i in members]
        reducer = self.reducer

        def report(gs):
            for i, g in zip(members, gs):
                reducer.contribute(i, g)
        outs, node = proxy_node("ddp_grad_ready", params, anchor, report)
        self.nodes.append((node, members))
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

    def counts(self, out) -> list[int]:
        """Per parameter: how many of this step's proxy nodes the backward from `out` will
        reach (each reports once)."""
        reached = _reachable([t.grad_fn for t in _tensors(out) if t.grad_fn is not None])
        counts = [0] * len(self.params)
        for node, members in self.nodes:
            if id(node) in reached:
                for i in members:
                    counts[i] += 1
        return counts


def _anchor(args, kwargs):
    for x in list(args) + list(kwargs.values()):
        if isinstance(x, Tensor) and x._requires_grad and x.grad_fn is not None:
            return x
    return None


def _tensors(obj):
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _tensors(x)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _tensors(x)


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
