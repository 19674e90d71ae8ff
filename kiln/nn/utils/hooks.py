"""Module hooks: `RemovableHandle` and the backward-hook plumbing, as `torch.utils.hooks`.

A full backward hook sees a module's gradients as PyTorch defines them: `grad_output` holds
the gradient of each tensor the module returned, `grad_input` the gradient of each positional
argument (None for arguments that are not tensors or need no gradient). Two identity nodes on
the autograd tape catch them: one over the outputs, whose VJP sees `grad_output` first, and
one over the inputs, whose VJP sees `grad_input` once every use of the inputs inside the
module has sent its gradient; its VJP calls the hooks and passes on what they return.
"""
from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict

from kiln.frontend import autograd
from kiln.frontend.autograd import AutogradError
from kiln.frontend.tensor import Tensor

_next_id = itertools.count()


class RemovableHandle:
    """What `register_*_hook` returns: `handle.remove()` unregisters the hook (also as a
    context manager: the hook is removed when the `with` block ends).

    >>> import kiln
    >>> lin = kiln.nn.Linear(2, 2)
    >>> seen = []
    >>> handle = lin.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    >>> _ = lin(kiln.ones(3, 2)); handle.remove(); _ = lin(kiln.ones(1, 2))
    >>> seen
    [kiln.Size([3, 2])]
    """

    def __init__(self, hooks_dict: dict, *, extra_dict=None):
        self.id = next(_next_id)
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        extras = [] if extra_dict is None else (
            extra_dict if isinstance(extra_dict, list) else [extra_dict])
        self.extra_dict_ref = tuple(weakref.ref(d) for d in extras)

    def remove(self) -> None:
        for ref in (self.hooks_dict_ref, *self.extra_dict_ref):
            table = ref()
            if table is not None:
                table.pop(self.id, None)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def add_hook(table: OrderedDict, hook, prepend: bool, extra_dict=None) -> RemovableHandle:
    """Register `hook` in `table` (first when `prepend`) and return its handle."""
    if not callable(hook):
        raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
    handle = RemovableHandle(table, extra_dict=extra_dict)
    table[handle.id] = hook
    if prepend:
        table.move_to_end(handle.id, last=False)
    return handle


def _identity(tensors: list, vjp) -> list:
    """Aliases of `tensors` produced by one tape node whose VJP is `vjp(list of cotangents)`."""
    outs = [t._alias() for t in tensors]

    def node_vjp(ctx, g):
        return vjp(list(g) if isinstance(g, list) else [g])

    node = autograd.TapeNode("backward_hook", node_vjp, tensors,
                             [autograd.save(o) for o in outs], None)
    for i, o in enumerate(outs):
        o._requires_grad = True
        o.grad_fn = node
        o._out_index = i
        o._view_version = o._version[0]
    return outs


def _needs_hook(tensors: list) -> bool:
    return autograd.is_grad_enabled() and any(t.requires_grad for t in tensors)


class BackwardHook:
    """The full backward hooks and backward pre-hooks of one module call."""

    def __init__(self, module, hooks: list, pre_hooks: list):
        self.module = module
        self.hooks = hooks
        self.pre_hooks = pre_hooks
        self.n_inputs = 0
        self.input_index = None     # positions of the arguments that went through the node
        self.grad_outputs = None

    def setup_input_hook(self, args: tuple) -> tuple:
        """`args` with each tensor that needs a gradient replaced by an identity node's
        output. The other tensor arguments get zeros in `grad_input` (PyTorch marks them
        non-differentiable, which gives zeros), the other arguments None."""
        self.n_inputs = len(args)
        tensors = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        if not _needs_hook([args[i] for i in tensors]):
            return args
        index = [i for i in tensors if args[i].requires_grad]
        self.zero_inputs = {i: args[i] for i in tensors if not args[i].requires_grad}
        self.input_index = index
        outs = _identity([args[i] for i in index], self._input_vjp)
        new = list(args)
        for i, o in zip(index, outs):
            new[i] = o
        return tuple(new)

    def setup_output_hook(self, result):
        """`result` (a tensor or a tuple/list of them) behind the output identity node."""
        single = isinstance(result, Tensor)
        items = [result] if single else list(result) if isinstance(result, (tuple, list)) \
            else None
        if items is None:
            return result
        index = [i for i, r in enumerate(items) if isinstance(r, Tensor)]
        if not _needs_hook([items[i] for i in index]):
            return result
        self.n_outputs = len(items)
        self.output_index = [i for i in index if items[i].requires_grad]
        outs = _identity([items[i] for i in self.output_index], self._output_vjp)
        for i, o in zip(self.output_index, outs):
            items[i] = o
        return items[0] if single else type(result)(items)

    def _pack(self, index: list, values: list, size: int) -> tuple:
        packed = [None] * size
        for i, v in zip(index, values):
            packed[i] = v
        return tuple(packed)

    def _output_vjp(self, grads: list) -> list:
        grad_outputs = self._pack(self.output_index, grads, self.n_outputs)
        for hook in self.pre_hooks:
            replaced = hook(self.module, grad_outputs)
            if replaced is not None:
                grad_outputs = _checked(replaced, len(grad_outputs), "grad_output")
        self.grad_outputs = grad_outputs
        if self.input_index is None:
            self._call_hooks_without_inputs()
        return [grad_outputs[i] for i in self.output_index]

    def _call_hooks_without_inputs(self) -> None:
        """No input needs a gradient: hooks see `grad_input` of Nones and may not change it."""
        grad_inputs = (None,) * self.n_inputs
        for hook in self.hooks:
            res = hook(self.module, grad_inputs, self.grad_outputs)
            if res is not None and not (isinstance(res, tuple)
                                        and all(r is None for r in res)):
                raise AutogradError("Backward hook for Modules where no input requires "
                                    "gradient should always return None or None for all "
                                    "gradients.")
        self.grad_outputs = None

    def _input_vjp(self, grads: list) -> list:
        from kiln.frontend.creation import zeros_like
        grad_inputs = list(self._pack(self.input_index, grads, self.n_inputs))
        for i, t in self.zero_inputs.items():
            grad_inputs[i] = zeros_like(t)
        grad_inputs = tuple(grad_inputs)
        grad_outputs = self.grad_outputs
        if grad_outputs is None:    # NOTE: an input used past the module's outputs only
            grad_outputs = (None,)
        for hook in self.hooks:
            replaced = hook(self.module, grad_inputs, grad_outputs)
            if replaced is not None:
                grad_inputs = _checked(replaced, self.n_inputs, "grad_input")
        return [grad_inputs[i] for i in self.input_index]


def _checked(replaced, expected: int, what: str) -> tuple:
    if not isinstance(replaced, (tuple, list)):
        replaced = (replaced,)
    if len(replaced) != expected:
        raise AutogradError(f"Backward hook returned an invalid number of {what}, got "
                            f"{len(replaced)}, but expected {expected}")
    for r in replaced:
        if r is not None and not isinstance(r, Tensor):
            raise TypeError(f"Backward hook must return Tensors or None for {what}, got "
                            f"{type(r).__name__}")
    return tuple(replaced)


# NOTE: the tables that hold hooks; the others only mark some of their entries
HOOK_TABLES = ("_forward_pre_hooks", "_forward_hooks", "_backward_hooks", "_backward_pre_hooks")


def hook_table(module, name: str) -> OrderedDict:
    """module's hook table `name`, made on first use (so modules built without hooks, or
    unpickled from before hooks existed, need none)."""
    table = module.__dict__.get(name)
    if table is None:
        table = OrderedDict()
        object.__setattr__(module, name, table)
    object.__setattr__(module, "_has_hooks", True)
    return table


def has_hooks(module) -> bool:
    d = module.__dict__
    return any(d.get(name) for name in HOOK_TABLES)


def call_with_hooks(module, args: tuple, kwargs: dict):
    """`module(*args, **kwargs)` with its hooks, in PyTorch's order: forward pre-hooks, the
    backward hook's input node, forward, forward hooks, the backward hook's output node."""
    d = module.__dict__
    args, kwargs = _run_pre_hooks(module, d, args, kwargs)
    bw = None
    if d.get("_backward_hooks") or d.get("_backward_pre_hooks"):
        bw = BackwardHook(module, list(d.get("_backward_hooks", {}).values()),
                          list(d.get("_backward_pre_hooks", {}).values()))
        args = bw.setup_input_hook(args)
    try:
        result = module.forward(*args, **kwargs)
    except Exception:
        for key, hook in list(d.get("_forward_hooks", {}).items()):
            if key in d.get("_forward_hooks_always_called", ()):
                _call_forward_hook(module, d, key, hook, args, kwargs, None)
        raise
    for key, hook in list(d.get("_forward_hooks", {}).items()):
        out = _call_forward_hook(module, d, key, hook, args, kwargs, result)
        if out is not None:
            result = out
    return result if bw is None else bw.setup_output_hook(result)


def _run_pre_hooks(module, d: dict, args: tuple, kwargs: dict):
    with_kwargs = d.get("_forward_pre_hooks_with_kwargs", {})
    for key, hook in list(d.get("_forward_pre_hooks", {}).items()):
        if key in with_kwargs:
            out = hook(module, args, kwargs)
            if out is None:
                continue
            if not (isinstance(out, tuple) and len(out) == 2):
                raise RuntimeError(f"forward pre-hook must return None or a tuple of "
                                   f"(new_args, new_kwargs), but got {out}.")
            args, kwargs = out
        else:
            out = hook(module, args)
            if out is not None:
                args = out if isinstance(out, tuple) else (out,)
    return args, kwargs


def _call_forward_hook(module, d: dict, key, hook, args, kwargs, result):
    if key in d.get("_forward_hooks_with_kwargs", ()):
        return hook(module, args, kwargs, result)
    return hook(module, args, result)
