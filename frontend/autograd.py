"""Eager autograd: a tape of registry ops, walked backwards with the registry's VJPs.

The same VJP rules drive the graph autograd pass (`kiln.passes.autograd`), so eager and
compiled gradients cannot disagree.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from kiln.ir.errors import KilnError
from kiln.ir.registry import VJPContext
from kiln.ir.types import user_loc

from .trace import current_trace

class AutogradError(KilnError, RuntimeError):
    """A backward that cannot run as asked (PyTorch raises RuntimeError for these)."""


class _GradState(threading.local):
    # NOTE: a class default, so a thread's first read finds it without a failed lookup
    # (getattr with a default costs an AttributeError: ~0.4 µs on every jitted call)
    enabled = True


_state = _GradState()


def is_grad_enabled() -> bool:
    return _state.enabled


def set_grad_enabled(mode: bool) -> None:
    _state.enabled = bool(mode)


class set_grad_mode(contextlib.ContextDecorator):
    """Set gradient recording on or off inside a `with` block or a decorated function."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)

    def __enter__(self):
        self._prev = is_grad_enabled()
        set_grad_enabled(self.mode)

    def __exit__(self, *exc):
        set_grad_enabled(self._prev)
        return False


class no_grad(set_grad_mode):
    """Disable gradient recording, as a context manager or a decorator.

    >>> import kiln
    >>> x = kiln.ones(2, requires_grad=True)
    >>> with kiln.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_mode):
    """Enable gradient recording (inside a `no_grad` region, say)."""

    def __init__(self):
        super().__init__(True)


class TapeNode:
    """One recorded op: its VJP, attrs, the saved inputs and outputs (aliases of their storage,
    checked against the storage's version counter when a VJP reads them), and one edge per
    input: ("node", producer TapeNode, output index), ("leaf", tensor) or None.
    """

    __slots__ = ("op", "vjp", "inputs", "outputs", "attrs", "edges", "retained", "consumed")

    def __init__(self, op: str, vjp, inputs, outputs, attrs):
        self.op = op
        self.vjp = vjp
        self.inputs = [save(t) for t in inputs]
        self.outputs = outputs
        self.attrs = attrs
        self.edges = [_edge(t) for t in inputs]
        self.retained: dict = {}
        self.consumed: set = set()      # outputs a backward without retain_graph went through
        for i, t in enumerate(outputs):
            t._saved = (t._saved[0], self, i)

    def name(self) -> str:
        return "".join(p.capitalize() for p in self.op.split("_")) + "Backward0"

    def __repr__(self):
        return f"<{self.name()}>"

    def free(self, outputs) -> None:
        """Release the saved values after a backward (without retain_graph=True) went through
        `outputs`. A node with several outputs (a jitted call) keeps them until a backward
        comes through an output a second time: PyTorch would hold one node per output."""
        if len(self.outputs) > 1:
            self.consumed.update(outputs)
            return
        for t in self.inputs + self.outputs:
            t._saved = _FREED
            if t._trace is None and type(t._data) is np.ndarray:
                # NOTE: keeps shape and dtype (VJPs read them) and drops the memory (a CUDA
                # alias keeps its device array: the error below must name the second pass)
                t._data = np.broadcast_to(np.zeros((), t._data.dtype), t._data.shape)


_FREED = ("freed",)


def save(t):
    """An alias of t that a VJP may read: using it after t's storage was written in place,
    or after the graph was freed, raises (`check_saved`)."""
    s = t._alias()
    s._saved = (t._version[0], t.grad_fn, t._out_index)
    return s


def check_saved(t) -> str | None:
    """Why saved value t may not be read now (written in place since it was saved, or freed
    by an earlier backward), or None. Results computed from such a value are marked stale and
    the backward raises only if one reaches an input that needs a gradient: PyTorch saves only
    what each gradient needs, so an unneeded overwritten value is no error there either."""
    if t._saved is _FREED:
        return check_saved_freed_message()
    if t._saved[0] == "stale":
        return t._saved[1]
    version, fn, index = t._saved
    if t._version[0] == version:
        return None
    what = f", which is output {index} of {fn.name()}," if fn is not None else ""
    return (f"one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [{t.dtype.value}{list(t.shape)}]{what} is at version "
            f"{t._version[0]}; expected version {version} instead. Hint: the operation that "
            "failed was an in-place op on a tensor autograd had saved; use an out-of-place op "
            "(or clone()) there.")


def check_saved_freed_message() -> str:
    return ("Trying to backward through the graph a second time (or directly access saved "
            "tensors after they have already been freed). Saved intermediate values of the "
            "graph are freed when you call .backward(). Specify retain_graph=True if you need "
            "to backward through the graph a second time or if you need to access saved "
            "tensors after calling backward.")


def mark_stale(results, why: str) -> None:
    for r in results:
        r._saved = ("stale", why)


def require_fresh(t) -> None:
    """Raise if t is a saved value that may not be read (see `check_saved`)."""
    if t._saved is not None:
        why = check_saved(t)
        if why is not None:
            raise AutogradError(why)


def cut_history(t) -> "TapeNode":
    """A node for t after a write that replaced all its values: no gradient flows back."""
    return TapeNode("overwrite", lambda ctx, g: [None], [], [save(t)], None)


def _edge(t):
    if not t._requires_grad:
        return None
    if t.grad_fn is not None:
        return ("node", t.grad_fn, t._out_index)
    return ("leaf", t)


def retain(t) -> None:
    """Keep the gradient of non-leaf `t` in `t.grad` during backward."""
    import weakref
    t.grad_fn.retained[t._out_index] = weakref.ref(t)


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
        for e in node.edges:
            if e is not None and e[0] == "node" and id(e[1]) not in seen:
                stack.append((e[1], False))
    return order[::-1]


def _accumulate(store: dict, key, g):
    store[key] = g if key not in store else store[key] + g


def backward(root, gradient, retain_graph: bool | None = None,
             create_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) * gradient into every leaf's `.grad`; without
    `retain_graph` (default: `create_graph`), free the saved values of every node the backward
    ran through. With `create_graph` the gradients are themselves differentiable."""
    backward_roots([(root, gradient)], retain_graph, create_graph)


def tensor_backward(t, gradient=None, retain_graph: bool | None = None,
                    create_graph: bool = False, inputs=None) -> None:
    """`Tensor.backward(gradient, retain_graph, create_graph, inputs)`, as in PyTorch."""
    roots = roots_with_cotangents([t], None if gradient is None else [gradient])
    backward_roots(roots, retain_graph, create_graph, inputs)


def backward_roots(roots, retain_graph: bool | None = None, create_graph: bool = False,
                   inputs=None) -> None:
    """Accumulate the gradients of `roots` = [(tensor, cotangent)] into `.grad`: of every
    leaf, or only of `inputs` (leaves or not) when given."""
    for i, (root, _) in enumerate(roots):
        if root._saved is None and root._base is not None and root._view_version != \
                root._version[0]:
            from .views import refresh_grad_fn
            refresh_grad_fn(root)
        if root.grad_fn is None and not root.requires_grad:
            raise AutogradError(f"element {i} of tensors does not require grad and does not "
                                "have a grad_fn", loc=user_loc())
    if retain_graph is None:
        retain_graph = create_graph
    accumulate = _accumulate_grad_with_graph if create_graph else _accumulate_grad
    wanted = None
    if inputs is not None:
        wanted = Wanted(inputs, accumulate)
        on_leaf = _only_leaves(wanted.leaves, accumulate)
    else:
        on_leaf = accumulate
    run_backward(roots, retain_graph, on_leaf, create_graph, wanted)


def _only_leaves(ids: set, on_leaf):
    def call(leaf, g):
        if id(leaf) in ids:
            on_leaf(leaf, g)
    return call


def roots_with_cotangents(outputs, grad_outputs) -> list:
    """[(output, cotangent)]: `grad_outputs[i]`, or ones for a one-element output (PyTorch's
    implicit gradient); checks counts and shapes like PyTorch."""
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise AutogradError(f"got {len(grad_outputs)} gradients for {len(outputs)} outputs "
                            "(one per output; None for a one-element output)", loc=user_loc())
    return [(out, _cotangent(i, out, g)) for i, (out, g) in
            enumerate(zip(outputs, grad_outputs))]


def _cotangent(i: int, out, g):
    if g is None:
        if out.numel() != 1:
            raise AutogradError(f"grad can be implicitly created only for scalar outputs; "
                                f"output {i} has shape {list(out.shape)}", loc=user_loc())
        from .functional import full
        return full(tuple(out.shape), 1, out.dtype, like=out)
    if not hasattr(g, "_kiln_apply"):
        raise TypeError(f"gradient {i} must be a Tensor or None, got {type(g).__name__}")
    if tuple(g.shape) != tuple(out.shape):
        raise AutogradError(f"Mismatch in shape: grad_output[{i}] has a shape of "
                            f"{list(g.shape)} and output[{i}] has a shape of "
                            f"{list(out.shape)}", loc=user_loc())
    # NOTE: an alias, so the cotangent is never the user's object (a gradient that needs
    # its own history keeps it: create_graph differentiates through it too)
    return g if g.requires_grad else g._alias()


def run_backward(roots, retain_graph: bool, on_leaf, create_graph: bool = False,
                 wanted: "Wanted | None" = None) -> None:
    """Walk the tape back from `roots` = [(tensor, cotangent)], calling `on_leaf(leaf, g)`
    for each gradient that reaches a leaf (several calls per leaf are possible).

    With `create_graph` the VJPs run with grad mode on over inputs and outputs that carry
    their history (`_live_context`), so the gradients they compute are on the tape too.
    With `wanted`, only the part of the tape that leads to its tensors runs."""
    cot: dict = {}
    nodes = []
    for t, g in roots:
        if t.grad_fn is None:
            on_leaf(t, g)
        else:
            _accumulate(cot, (id(t.grad_fn), t._out_index), g)
            nodes.append(t.grad_fn)
    order = _topo_order_all(nodes)
    if wanted is not None:
        wanted.mark_needed(order)
    with set_grad_mode(create_graph):
        for node in order:
            if wanted is not None and not wanted.visit(node, cot):
                continue
            got = _run_vjp(node, cot, on_leaf, create_graph, wanted)
            if not retain_graph and got:
                node.free(got)


class Wanted:
    """The tensors a backward must reach (`kiln.autograd.grad`'s inputs, `backward(inputs=)`):
    leaves, found by identity, and non-leaf tensors, found by (node, output index); the total
    cotangent of a non-leaf one is handed to `on_capture(tensor, g)` when its node comes up
    (every consumer has run by then). Nodes that lead to none of them do not run."""

    def __init__(self, tensors, on_capture):
        self.leaves = {id(t) for t in tensors if t.grad_fn is None}
        self.outputs = {(id(t.grad_fn), t._out_index): t for t in tensors
                        if t.grad_fn is not None}
        self.on_capture = on_capture
        self.needed: set = set()

    def mark_needed(self, order: list) -> None:
        """Which nodes have an edge into a wanted tensor or into a needed node."""
        for node in reversed(order):        # NOTE: producers before their consumers
            if any(self.edge_needed(e) for e in node.edges):
                self.needed.add(id(node))

    def edge_needed(self, edge) -> bool:
        if edge is None:
            return False
        if edge[0] == "leaf":
            return id(edge[1]) in self.leaves
        return id(edge[1]) in self.needed or (id(edge[1]), edge[2]) in self.outputs

    def visit(self, node: TapeNode, cot: dict) -> bool:
        """Capture the cotangents of node's wanted outputs; whether its VJP must run."""
        for i in range(len(node.outputs)):
            key = (id(node), i)
            if key in self.outputs and key in cot:
                self.on_capture(self.outputs[key], cot[key])
        return id(node) in self.needed


def _topo_order_all(roots: list) -> list:
    if len(roots) == 1:
        return _topo_order(roots[0])
    hub = TapeNode("roots", None, [], [], None)
    hub.edges = [("node", r, 0) for r in roots]
    return _topo_order(hub)[1:]


def _run_vjp(node: TapeNode, cot: dict, on_leaf, create_graph: bool = False,
             wanted: Wanted | None = None) -> list:
    """Run one node's VJP; returns the indices of the outputs that had a cotangent."""
    gs = [cot.pop((id(node), i), None) for i in range(len(node.outputs))]
    got = [i for i, g in enumerate(gs) if g is not None]
    if not got:
        return got
    if node.consumed.intersection(got):
        raise AutogradError(check_saved_freed_message())
    for i, ref in node.retained.items():
        t = ref()
        if t is not None and gs[i] is not None:
            (_accumulate_grad_with_graph if create_graph else _accumulate_grad)(t, gs[i])
    if wanted is None:
        needs = [e is not None for e in node.edges]
    else:
        needs = [wanted.edge_needed(e) for e in node.edges]
    if create_graph:
        ctx = _live_context(node, needs)
    else:
        ctx = VJPContext(node.inputs, node.outputs, node.attrs, needs)
    trace = current_trace()
    if trace is None:
        grads = node.vjp(ctx, gs[0] if len(gs) == 1 else gs)
    else:
        # NOTE: traced backward ops carry their forward op's location (module path, line)
        with trace.backward_of(node.outputs):
            grads = node.vjp(ctx, gs[0] if len(gs) == 1 else gs)
    for e, need, gi in zip(node.edges, needs, grads):
        if gi is None or not need:
            continue
        require_fresh(gi)
        if e[0] == "node" and trace is not None and (id(e[1]), e[2]) in cot:
            # NOTE: a second gradient of one forward value: the add that sums them carries
            # that value's location (its forward op), not the call site's
            with trace.backward_of(e[1].outputs):
                _accumulate(cot, (id(e[1]), e[2]), gi)
        elif e[0] == "node":
            _accumulate(cot, (id(e[1]), e[2]), gi)
        elif trace is not None:
            # NOTE: a leaf (an argument, a parameter) has no forward op: the add that sums
            # its gradients (frontend/jit_grad.py) carries the op that used it
            with trace.backward_of(node.outputs):
                on_leaf(e[1], gi)
        else:
            on_leaf(e[1], gi)
    return got


def _live_context(node: TapeNode, needs: list) -> VJPContext:
    """The VJP context of a backward that builds a graph: each saved input stands for the
    tensor it saved (its producer's output, or the leaf itself) and each saved output for
    this node's output, so what the VJP computes from them differentiates back through the
    forward graph, as PyTorch's double backward does."""
    if node.op.startswith("function_"):
        from kiln.ir.errors import NotSupportedError
        raise NotSupportedError(f"not supported yet: create_graph=True through the custom "
                                f"kiln.autograd.Function {node.op[len('function_'):]} (its "
                                "backward reads saved tensors without their history)")
    if node.op.startswith("jit_"):
        from kiln.ir.errors import NotSupportedError
        raise NotSupportedError("not supported yet: create_graph=True through the backward "
                                "of a @kiln.jit function (its compiled backward is not "
                                "differentiable); call the function without @kiln.jit, or "
                                "take the gradient inside it")
    inputs = [_live(saved, edge) for saved, edge in zip(node.inputs, node.edges)]
    outputs = [_live(saved, ("node", node, i) if saved.dtype.is_float else None)
               for i, saved in enumerate(node.outputs)]
    return VJPContext(inputs, outputs, node.attrs, needs)


def _live(saved, edge):
    """A saved value reconnected to its history `edge`. A leaf is used itself when its
    storage is unchanged; a value written since it was saved keeps its saved marker, so
    anything computed from it is stale (see `check_saved`) and carries no history."""
    if edge is None or check_saved(saved) is not None:
        return saved
    if edge[0] == "leaf":
        return edge[1]
    live = saved._alias()
    live._saved = saved._saved
    live._requires_grad = True
    live.grad_fn = edge[1]
    live._out_index = edge[2]
    return live


def _accumulate_grad_with_graph(t, g) -> None:
    """AccumulateGrad under `create_graph`: `.grad` keeps its history (a copy: a cotangent
    may alias another gradient) and later gradients are added out of place (an in-place add
    would rewrite a value on the tape), as PyTorch's AccumulateGrad does with grad mode on."""
    t.grad = g.clone() if t.grad is None else t.grad + g


def _accumulate_grad(t, g) -> None:
    """`t.grad = g` the first time (a copy: a cotangent may alias another gradient or the
    user's `gradient=`), then `t.grad += g` in place, as PyTorch's AccumulateGrad does."""
    if t.grad is None:
        t.grad = g.clone().detach()
    else:
        t.grad.add_(g)
