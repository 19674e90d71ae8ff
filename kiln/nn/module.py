"""`Module`: the base class of every layer and model, with PyTorch's behaviour: attributes that
are Parameters, Modules or buffers are registered; parameters, state dicts, train/eval, casting
and `repr` walk the tree of submodules.
"""
from __future__ import annotations

import collections
import collections.abc
from collections import OrderedDict

from kiln.frontend.trace import GraphBreak, current_trace
from kiln.frontend.autograd import no_grad
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes
from kiln.ir.errors import KilnError, NotSupportedError

from .parameter import Parameter
from .utils import hooks


class StateDictError(KilnError, RuntimeError):
    """`load_state_dict` found missing, unexpected or mis-shaped entries (a RuntimeError, as
    in PyTorch)."""

    category = "state_dict"


class _IncompatibleKeys(collections.namedtuple("IncompatibleKeys",
                                               ["missing_keys", "unexpected_keys"])):
    """What `load_state_dict` returns: the keys it missed and the keys it did not use."""

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _addindent(text: str, spaces: int) -> str:
    """Indent every line but the first (how PyTorch nests child reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return "\n".join(lines[:1] + [" " * spaces + line for line in lines[1:]])


def _check_name(kind: str, name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string. Got {type(name).__name__}")
    if name == "":
        raise KeyError(f'{kind} name can\'t be empty string ""')
    if "." in name:
        raise KeyError(f'{kind} name can\'t contain ".", got: {name}')


class Module:
    """Base class for all neural network modules; subclass it and define `forward`.

    >>> import kiln
    >>> from kiln import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc1 = nn.Linear(2, 4)
    ...         self.fc2 = nn.Linear(4, 1)
    ...     def forward(self, x):
    ...         return self.fc2(nn.functional.relu(self.fc1(x)))
    >>> net = Net()
    >>> net
    Net(
      (fc1): Linear(in_features=2, out_features=4, bias=True)
      (fc2): Linear(in_features=4, out_features=1, bias=True)
    )
    >>> [name for name, _ in net.named_parameters()]
    ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
    >>> net(kiln.ones(3, 2)).shape
    kiln.Size([3, 1])
    """

    training: bool
    _version = 1    # NOTE: a layout version per class, stored in state dicts like PyTorch's

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments "
                            f"{args} {kwargs}")
        # NOTE: object.__setattr__ skips our __setattr__, which needs these dicts to exist.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  '"forward" function')

    def __call__(self, *args, **kwargs):
        trace = current_trace()
        hooked = self.__dict__.get("_has_hooks") and hooks.has_hooks(self)
        if trace is not None:
            if hooked:
                # NOTE: hooks run Python (and backward hooks run during the backward) that a
                # compiled graph would not run again: such a function runs eagerly
                raise GraphBreak(f"not supported yet: hooks of module {self._get_name()} "
                                 "inside @kiln.jit (the function runs eagerly)")
            trace.note_module(self)     # NOTE: its train/eval flag becomes a jit guard
            # NOTE: the nodes its forward makes carry its path (`model.fc1`); kept by the
            # trace only, so eager calls pay nothing for it
            trace.enter_module(self)
            try:
                return self.forward(*args, **kwargs)
            finally:
                trace.exit_module()
        if hooked:
            return hooks.call_with_hooks(self, args, kwargs)
        return self.forward(*args, **kwargs)

    # ---- hooks -----------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> hooks.RemovableHandle:
        """Call `hook(module, args)` before each forward; a non-None result replaces `args`
        (a non-tuple is wrapped in one). With `with_kwargs`, `hook(module, args, kwargs)`
        returns None or `(args, kwargs)`."""
        table = hooks.hook_table(self, "_forward_pre_hooks")
        handle = hooks.add_hook(table, hook, prepend)
        if with_kwargs:
            hooks.hook_table(self, "_forward_pre_hooks_with_kwargs")[handle.id] = True
        return handle

    def register_forward_hook(self, hook, *, prepend: bool = False, with_kwargs: bool = False,
                              always_call: bool = False) -> hooks.RemovableHandle:
        """Call `hook(module, args, output)` after each forward (`hook(module, args, kwargs,
        output)` with `with_kwargs`); a non-None result replaces the output. With
        `always_call` the hook also runs when forward raises (with output None).

        >>> import kiln
        >>> relu = kiln.nn.ReLU()
        >>> h = relu.register_forward_hook(lambda m, args, out: out * 2)
        >>> relu(kiln.tensor([-1.0, 3.0])).tolist()
        [0.0, 6.0]
        """
        table = hooks.hook_table(self, "_forward_hooks")
        kw = hooks.hook_table(self, "_forward_hooks_with_kwargs")
        always = hooks.hook_table(self, "_forward_hooks_always_called")
        handle = hooks.add_hook(table, hook, prepend, extra_dict=[kw, always])
        if with_kwargs:
            kw[handle.id] = True
        if always_call:
            always[handle.id] = True
        return handle

    def register_full_backward_hook(self, hook, prepend: bool = False) -> hooks.RemovableHandle:
        """Call `hook(module, grad_input, grad_output)` when the gradients of the module's
        positional inputs are computed; a non-None result (one entry per input) replaces
        `grad_input`. Entries for arguments that are not tensors or need no gradient are
        None, as in PyTorch."""
        return hooks.add_hook(hooks.hook_table(self, "_backward_hooks"), hook, prepend)

    def register_full_backward_pre_hook(self, hook,
                                        prepend: bool = False) -> hooks.RemovableHandle:
        """Call `hook(module, grad_output)` when the gradients of the module's outputs are
        computed, before the inputs'; a non-None result replaces `grad_output`."""
        return hooks.add_hook(hooks.hook_table(self, "_backward_pre_hooks"), hook, prepend)

    def register_backward_hook(self, hook):
        raise NotSupportedError("not supported yet: the deprecated register_backward_hook; "
                                "use register_full_backward_hook (PyTorch's recommendation)")

    # ---- registration ----------------------------------------------------------------------
    def _require_init(self, what: str):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or None, a declared but absent one) under `name`."""
        self._require_init("parameter")
        _check_name("parameter", name)
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{_type_name(param)}' object to parameter "
                            f"'{name}' (kiln.nn.Parameter or None required)")
        if param is not None and param.grad_fn is not None:
            raise ValueError(f"Cannot assign non-leaf Tensor to parameter '{name}'. Model "
                             "parameters must be created explicitly. To express "
                             f"'{name}' as a function of another Tensor, compute the value "
                             "in the forward() method.")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True):
        """Add a tensor that is state but not a parameter (BatchNorm's running_mean);
        persistent buffers are part of the state dict."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name("buffer", name)
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{_type_name(tensor)}' object to buffer '{name}' "
                            "(kiln Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        """Add a child module under `name` (an attribute of that name)."""
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{_type_name(module)} is not a Module subclass")
        _check_name("module", name)
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value) -> None:
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            self._require_init("parameters")
            self._forget(name, keep="_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{_type_name(value)}' as parameter '{name}' "
                                "(kiln.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            self._require_init("module")
            self._forget(name, keep="_modules")
            self._modules[name] = value
        elif name in self.__dict__.get("_modules", {}):
            if value is not None:
                raise TypeError(f"cannot assign '{_type_name(value)}' as child module "
                                f"'{name}' (kiln.nn.Module or None expected)")
            self._modules[name] = None
        elif name in self.__dict__.get("_buffers", {}):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{_type_name(value)}' as buffer '{name}' "
                                "(kiln.Tensor or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: str):
        """Drop `name` from the other registries before it is registered in `keep`; an entry
        already in `keep` stays where it is, so replacing a layer keeps its position."""
        self.__dict__.pop(name, None)
        for table in ("_parameters", "_buffers", "_modules"):
            if table != keep:
                self.__dict__[table].pop(name, None)
        self._non_persistent_buffers_set.discard(name)

    def __getattr__(self, name: str):
        # NOTE: only called when normal lookup fails, i.e. for registered entries.
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str):
        for table in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(table, {}):
                del self.__dict__[table][name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = list(super().__dir__())
        keys += list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(k for k in set(keys) if not k[:1].isdigit())

    # ---- walking the tree ------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True):
        """(qualified name, module) for this module and every descendant, each once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, table: str, prefix: str, recurse: bool, remove_duplicate: bool):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        """(qualified name, Parameter) pairs; a shared parameter is listed once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def get_submodule(self, target: str) -> "Module":
        """The descendant named by a dotted path (`"encoder.layers.0"`)."""
        module = self
        for item in target.split(".") if target else []:
            if item not in module._modules:
                raise AttributeError(f"{module._get_name()} has no attribute `{item}`")
            module = module._modules[item]
        return module

    def apply(self, fn) -> "Module":
        """Call fn on every submodule (children first) and then on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients ---------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to None (the default), or to zeros."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None       # NOTE: no read first: see Optimizer.zero_grad
            elif p.grad is not None:
                p.grad.detach_()
                with no_grad():
                    p.grad.zero_()

    # ---- casting and devices -----------------------------------------------------------------
    def _apply(self, fn) -> "Module":
        """Replace the data of every parameter, gradient and buffer by fn(tensor); the
        Parameter objects stay the same, so optimizers holding them keep working."""
        for module in self.modules():
            with no_grad():
                for p in module._parameters.values():
                    if p is not None:
                        p.data = fn(p)
                        if p.grad is not None:
                            p.grad = fn(p.grad)
                for name, b in module._buffers.items():
                    if b is not None:
                        b.data = fn(b)
        return self

    def to(self, *args, **kwargs) -> "Module":
        """`to(device)`, `to(dtype)`, `to(device, dtype)`, `to(tensor)`: moves parameters,
        gradients and buffers, and casts the floating-point ones, in place (the Parameter
        objects stay: an optimizer made before keeps working)."""
        device, dtype = _parse_to(args, kwargs)
        if dtype is not None and not dtype.is_float:
            raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got "
                            f"desired dtype={dtype}")
        if dtype is None and device is None:
            return self

        def move(t):
            if dtype is not None and t.dtype.is_float:
                t = t.to(dtype)
            return t if device is None else t.detach().to(device)
        return self._apply(move)

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self, device=None) -> "Module":
        return self.to("cuda" if device is None else
                       f"cuda:{device}" if isinstance(device, int) else device)

    def float(self) -> "Module":
        return self.to(dtypes.float32)

    def double(self) -> "Module":
        return self.to(dtypes.float64)

    def half(self) -> "Module":
        raise NotSupportedError("not supported yet: float16 (Kiln has float32 and float64)")

    # ---- state dicts -------------------------------------------------------------------------
    def _save_to_state_dict(self, destination, prefix: str, keep_vars: bool) -> None:
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        """An OrderedDict of every parameter and persistent buffer by qualified name
        (`fc1.weight`, `bn.running_mean`), detached unless keep_vars."""
        if destination is None:
            destination = OrderedDict()
            destination._metadata = OrderedDict()
        if hasattr(destination, "_metadata"):
            destination._metadata[prefix[:-1]] = {"version": self._version}
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".",
                                  keep_vars=keep_vars)
        return destination

    def _local_state(self) -> dict:
        state = {k: v for k, v in self._parameters.items() if v is not None}
        state.update((k, v) for k, v in self._buffers.items()
                     if v is not None and k not in self._non_persistent_buffers_set)
        return state

    def _missing_ok(self, name: str, version) -> bool:
        """Whether entry `name` may be absent from a state dict of layout `version` (None:
        unknown); subclasses whose layout changed say yes for the new entries."""
        return False

    def _check_state(self, state_dict, prefix, pairs, missing, unexpected, errors):
        """Match this module's entries against state_dict; collects (target, value) pairs."""
        local = self._local_state()
        metadata = getattr(state_dict, "_metadata", None) or {}
        version = metadata.get(prefix[:-1], {}).get("version")
        for name, target in local.items():
            key = prefix + name
            if key not in state_dict:
                if not self._missing_ok(name, version):
                    missing.append(key)
                continue
            value = state_dict[key]
            if not isinstance(value, Tensor):
                errors.append(f'While copying the parameter named "{key}", expected '
                              f"kiln.Tensor from checkpoint but received {type(value)}")
            elif tuple(value.shape) != tuple(target.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{list(value.shape)} from checkpoint, the shape in current "
                              f"model is {list(target.shape)}.")
            else:
                pairs.append((target, value))
        for key in state_dict:
            if isinstance(key, str) and key.startswith(prefix):
                head = key[len(prefix):].split(".", 1)
                known = self._modules if len(head) > 1 else local
                if head[0] not in known:
                    unexpected.append(key)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy parameters and buffers from state_dict into this module (the Parameter
        objects stay the same). strict: every key must match, or a StateDictError names each
        missing and unexpected key; a shape mismatch is always an error. Nothing is copied
        when there is an error. Returns (missing_keys, unexpected_keys)."""
        if assign:
            raise NotSupportedError("not supported yet: load_state_dict(assign=True)")
        if not isinstance(state_dict, collections.abc.Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        pairs, missing, unexpected, errors = [], [], [], []
        for prefix, module in self.named_modules(remove_duplicate=False):
            module._check_state(state_dict, prefix + "." if prefix else "", pairs, missing,
                                unexpected, errors)
        # NOTE: keys that are not strings name no parameter (PyTorch fails on them inside)
        unexpected.extend(k for k in state_dict if not isinstance(k, str))
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
        if errors:
            raise StateDictError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t"
                                 + "\n\t".join(errors))
        with no_grad():
            for target, value in pairs:
                target.copy_(value.detach())
        return _IncompatibleKeys(missing, unexpected)

    # ---- printing ----------------------------------------------------------------------------
    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        """The text inside this module's parentheses in `repr` (its hyperparameters)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(module), 2)
                       for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{self._get_name()}({body})"


def _type_name(value) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"


def _parse_to(args, kwargs):
    """(device string or None, DType or None) from the arguments of `Module.to`."""
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, (dtypes.DType, type)):
            dtype = a
        elif a is not None:
            device = a
    device = None if device is None else str(device)
    return device, None if dtype is None else dtypes.as_dtype(dtype)
