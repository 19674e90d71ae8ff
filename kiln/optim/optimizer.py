"""`Optimizer`: parameter groups, per-parameter state, `zero_grad`, `step`, and state dicts in
PyTorch's format.

Updates are written with Kiln tensor ops under `kiln.no_grad()` and in-place rebinding
(`p.add_(...)`), never NumPy, so a jitted training step can capture `optimizer.step()`.
The helpers below spell PyTorch's fused in-place ops (`addcmul_`, `addcdiv_`, `lerp_`) in the
same order of operations as its CPU kernels, so float32 results agree with PyTorch's.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import chain

from kiln.frontend import functional as F
from kiln.frontend.autograd import enable_grad, no_grad
from kiln.frontend.tensor import Tensor
from kiln.frontend.trace import current_trace, untraced
from kiln.ir.errors import KilnError


class _RequiredParameter:
    """The default of an option every parameter group must give (SGD's `lr` in old PyTorch)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()
_SET_ERROR = ("optimizer parameters need to be organized in ordered collections, but the "
              "ordering of tensors in sets will change between runs; use a list instead")


class Optimizer:
    """Base class of Kiln's optimizers (`SGD`, `Adam`, `AdamW`, `RMSprop`).

    `params` is an iterable of tensors, or of dicts that each hold `"params"` and per-group
    options; options a group leaves out come from `defaults`.

    >>> import kiln
    >>> w = kiln.ones(2, requires_grad=True)
    >>> opt = kiln.optim.SGD([{"params": [w], "lr": 0.5}], lr=0.1)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w.tolist(), opt.param_groups[0]["lr"]
    ([0.0, 0.0], 0.5)
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor")
        if isinstance(params, set):
            raise TypeError(_SET_ERROR)
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own options (e.g. a new layer to fine-tune)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(_SET_ERROR)
        group["params"] = list(params if params is not None else [])
        for p in group["params"]:
            _check_param(p)
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in group["params"]]
        if len(set(ids)) != len(ids) or seen.intersection(ids):
            raise ValueError("some parameters appear more than once (in one or in several "
                             "parameter groups)")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's `.grad`: to None (the default) or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None       # NOTE: without reading it first (a traced step then
                    continue            # does not depend on whether gradients existed)
                if p.grad is not None:
                    p.grad.detach_()
                    with no_grad():
                        p.grad.zero_()

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns `closure()`'s loss.

        `closure` re-evaluates the model and returns the loss (it runs with grad enabled).
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        trace = current_trace()
        with no_grad():
            todo = [(p, p.grad, group) for group in self.param_groups for p in group["params"]]
            todo = [(p, grad, group) for p, grad, group in todo if grad is not None]
            for p, _, group in todo:
                state = self.state[p]
                if not state:
                    with untraced():    # NOTE: real tensors, updated in place after
                        self._init_state(p, group, state)
            if trace is not None:
                self._guard_structure(trace)
            for p, grad, group in todo:
                self._update(p, grad, group, self.state[p])
        return loss

    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        """Create a parameter's state before its first update (subclasses that keep any)."""

    def _hyper(self, group: dict, name: str, dtype, index: int | None = None):
        """`group[name]` (its item `index`: `betas[0]`); inside @kiln.jit a 0-d graph input of
        `dtype` read at every call, so a scheduler's new learning rate, momentum or betas
        (OneCycleLR cycles them) are used without recompiling."""
        trace = current_trace()
        if trace is None:
            return group[name] if index is None else group[name][index]
        cache = trace.__dict__.setdefault("_optimizer_inputs", {})
        key = (id(group), name, index, dtype)
        if key not in cache:
            get = (lambda: group[name]) if index is None else (lambda: group[name][index])
            at = next(i for i, g in enumerate(self.param_groups) if g is group)
            hint = f"param_groups.{at}.{name}" + ("" if index is None else f".{index}")
            v = trace.scalar_input(get, dtype, hint, owner=self)
            cache[key] = Tensor._wrap(v, trace)
        return cache[key]

    def _guard_structure(self, trace) -> None:
        """What the traced step assumed about this optimizer beyond the values that are graph
        inputs: its groups and their parameters, the other options (branches depend on them)
        and which state tensors exist. A scheduler changing `lr` keeps it; anything else
        retraces."""
        trace.add_guard(lambda snapshot=_structure(self): _structure(self) == snapshot,
                        f"the {type(self).__name__} optimizer's options or state")

    def _update(self, p: Tensor, grad: Tensor, group: dict, state: dict) -> None:
        """Update one parameter in place; subclasses implement their rule here."""
        raise NotImplementedError(f"{type(self).__name__} does not define its update rule")

    # ---- state dicts ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """`{"state": {id: {...}}, "param_groups": [{..., "params": [ids]}]}`, like PyTorch.

        Parameters are replaced by integer ids, numbered in group order; the state's tensors
        are the optimizer's own (not copies), as in PyTorch.
        """
        ids: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [ids.setdefault(id(p), len(ids)) for p in group["params"]]
            groups.append(packed)
        state = {ids[id(p)]: dict(s) for p, s in self.state.items() if id(p) in ids}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state and options from `state_dict()`'s output (tensors are copied)."""
        _check_state_dict(state_dict)
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups "
                             f"({len(saved_groups)}) than the optimizer ({len(self.param_groups)})")
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict's parameter group {i} has "
                                 f"{len(saved['params'])} parameters, but the optimizer's "
                                 f"group {i} has {len(group['params'])}")
        id_map = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in self.param_groups)))
        state: defaultdict = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key not in id_map:
                raise KilnError(f"loaded optimizer state has an entry for parameter id {key!r},"
                                f" which no parameter group lists (ids: {sorted(id_map)})")
            param = id_map[key]
            state[param] = {k: _restore(param, k, v) for k, v in value.items()}
        self.state = state
        self.param_groups = [{**{k: v for k, v in saved.items() if k != "params"},
                              "params": group["params"]}
                             for saved, group in zip(saved_groups, self.param_groups)]

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {group[k]}" for k in sorted(group) if k != "params")
        return "\n".join(lines + [")"])


# NOTE: options that are graph inputs (`_hyper`) are not guarded by value; of momentum only
# whether it is zero (the update's branch)
_INPUT_OPTIONS = ("lr", "betas", "momentum")


def _structure(opt: Optimizer) -> tuple:
    groups = tuple((id(g), tuple(id(p) for p in g["params"]),
                    tuple((k, v) for k, v in sorted(g.items()) if k not in _INPUT_OPTIONS),
                    g.get("momentum", 0) != 0)
                   for g in opt.param_groups)
    state = tuple((id(p), tuple((k, id(v)) for k, v in s.items())) for p, s in opt.state.items())
    return groups, state


def _check_param(p) -> None:
    if not isinstance(p, Tensor):
        raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                        f"{type(p).__name__}")
    if not p.is_leaf:
        raise ValueError("can't optimize a non-leaf Tensor (one computed from others); "
                         "optimize the tensors it was computed from")


def _check_state_dict(state_dict) -> None:
    if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
        keys = sorted(map(str, state_dict)) if isinstance(state_dict, dict) else None
        raise KilnError(f"an optimizer state dict has exactly the keys 'param_groups' and "
                        f"'state', got {keys if keys is not None else type(state_dict).__name__}")


def _restore(param: Tensor, key: str, value):
    """A private copy of a loaded state value, cast to the parameter's dtype and moved to its
    device like PyTorch (except the step counter, which keeps its own dtype and device)."""
    if not isinstance(value, Tensor):
        return value
    value = value.detach().clone()
    if key != "step" and param.dtype.is_float:
        value = F.cast(value, param.dtype)
    if key != "step" and param._trace is None:
        value = value.to(param.device)
    return value


# ---- PyTorch's fused in-place ops, in its order of operations ------------------------------
def addcmul_(x: Tensor, t1: Tensor, t2: Tensor, value=1.0) -> Tensor:
    """`x += value * t1 * t2`, computed as `x + (value * t1) * t2` like PyTorch's kernel."""
    return x.add_(t1.mul(value).mul(t2))


def addcdiv_(x: Tensor, t1: Tensor, t2: Tensor, value=1.0) -> Tensor:
    """`x += value * t1 / t2`, computed as `x + (value * t1) / t2` like PyTorch's kernel."""
    return x.add_(t1.mul(value).div(t2))


def lerp_(x: Tensor, end: Tensor, weight) -> Tensor:
    """`x += weight * (end - x)`; for weights >= 0.5 PyTorch computes it from `end`'s side
    (a traced weight, a graph input, picks its side per call with `where`)."""
    if isinstance(weight, Tensor):
        diff = end.sub(x)
        near = F.lt(F.abs(weight), 0.5)
        return x.copy_(F.where(near, x.add(diff.mul(weight)), end.sub(diff.mul(1.0 - weight))))
    if abs(weight) < 0.5:
        return x.add_(end.sub(x).mul(weight))
    return x.copy_(end.sub(end.sub(x).mul(1.0 - weight)))


def check_range(name: str, value, low: float = 0.0, high: float | None = None) -> None:
    """PyTorch's option validation: `ValueError("Invalid learning rate: -1")`."""
    if value < low or (high is not None and value >= high):
        raise ValueError(f"Invalid {name}: {value}")
