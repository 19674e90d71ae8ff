"""Where a traced program found its tensors and modules: the names of graph inputs and the
module paths in node locations (see ir/names.py).

A module's parameter or buffer is named as `named_parameters()` names it from the outermost
module the program reads (`fc1.weight`); optimizer state after the optimizer's variable and
the parameter (`opt.state.fc1.weight.exp_avg`); another tensor after the variable, attribute
or item that holds it (`w`, `self.scale`, `weights.0`). A module's path starts at the variable
the program called it through (`model.fc1`). The program's frames are searched only while
tracing, once per new tensor or module.
"""
from __future__ import annotations

import re
import sys
import types

from kiln.ir.names import is_hint, is_value_name, unique_name

_MAX_DEPTH = 2          # variable -> attribute -> attribute, at most
_MAX_ITEMS = 64         # longer lists and dicts are not searched


class TraceNames:
    """The names one trace has given its graph inputs, and what it found to give them."""

    def __init__(self):
        self.taken: set[str] = set()
        self.anchors: list = []     # (module, variable name): outermost modules found
        self._tables: dict = {}     # id(module) -> (module, {id: param name}, {id: path})
        self._anchor_of: dict = {}  # id(module) -> (anchor module, variable, path below it)
        self.given: dict = {}       # id(tensor) -> the name its graph input got
        self.optimizers: dict = {}  # id(optimizer) -> (it, variable, {id(tensor): name})

    def fresh(self) -> "TraceNames":
        """Names for a new graph of the same program (replay's next segment): no name taken
        yet, the modules found so far still known."""
        out = TraceNames()
        out.anchors, out._tables, out._anchor_of = self.anchors, self._tables, self._anchor_of
        out.optimizers = self.optimizers
        return out

    def claim(self, hint: str | None) -> str | None:
        """`hint` made unique in this trace (None stays None: printed as a number)."""
        if not is_hint(hint):
            return None
        name = unique_name(hint, self.taken)
        self.taken.add(name)
        return name

    # ---- modules ----------------------------------------------------------------------------
    def module_path(self, module, outer=None, parent=None) -> str:
        """The path of `module` (`model`, `model.fc1`, `model.layers.0`), called inside
        `outer` (the outermost module running, or None) and `parent` (the innermost: the
        _Scope of a module running, or None). NOTE: a submodule added under a name that is
        no identifier (`add_module("my layer", m)`) shows with `_` for what is not."""
        return _clean_path(self._module_path(module, outer, parent))

    def _module_path(self, module, outer, parent) -> str:
        if outer is not None:
            anchor, var = self._anchor(outer)[:2]
            rel = self._table(anchor)[2].get(id(module))
            if rel is not None:
                self._anchor_of.setdefault(id(module), (anchor, var, rel))
                return _join(var, rel)
        found = self._anchor_of.get(id(module))
        if found is None and parent is not None:
            # NOTE: not a registered submodule (a module kept in a plain list attribute)
            path = _attribute_path(parent.module, parent.path, module)
            if path is not None:
                return path
        if found is None:
            found = self._anchor(module)
        return _join(found[1], found[2])

    def _anchor(self, module):
        """(module holding `module`, its variable, path below it), found once."""
        found = self._anchor_of.get(id(module))
        if found is None:
            found = self._anchor_of[id(module)] = self._find_anchor(module)
            self._note_anchor(found[0], found[1])
        return found

    def _find_anchor(self, module):
        """(module holding `module`, its variable name, path below it) from the frames."""
        hit = _first(_locate_module, self, module)
        return hit if hit is not None else (module, type(module).__name__.lower(), "")

    def _table(self, module):
        entry = self._tables.get(id(module))
        if entry is None:
            params: dict = {}
            for table in (module.named_parameters(), module.named_buffers()):
                for name, t in table:
                    params.setdefault(id(t), name)
                    params.setdefault(id(t._data), name)
            paths = {id(m): path for path, m in module.named_modules()}
            entry = self._tables[id(module)] = (module, params, paths)
        return entry

    def _note_anchor(self, module, var: str) -> None:
        if all(m is not module for m, _ in self.anchors):
            self.anchors.append((module, var))

    # ---- tensors ----------------------------------------------------------------------------
    def tensor_name(self, t, outer) -> str | None:
        """The readable name of outside tensor `t`, read inside module `outer` (or None),
        unique in this trace: a parameter of a second outermost module with a name the first
        one's took is prefixed with its variable (`disc.fc1.weight`)."""
        found = self._in_modules(t, outer)
        for _, _, index in list(self.optimizers.values()):
            if found is None and id(t) in index:
                return self.claim(index[id(t)])
        if found is None:
            hit = self._search(t)       # NOTE: may find the module that holds t
            found = self._in_modules(t, outer)
            if found is None:
                return self.claim(hit)
        name, var = _clean_path(found[0]), found[1]
        return self.claim(f"{var}.{name}" if name in self.taken else name)

    def _in_modules(self, t, outer):
        """(name, variable of the outermost module) of a parameter or buffer of the module
        running (`outer`) or of one found so far; None when none holds t."""
        anchors = ([self._anchor(outer)[:2]] if outer is not None else []) + self.anchors
        for module, var in anchors:
            name = _lookup(self._table(module)[1], t)
            if name is not None:
                return name, var
        return None

    def _search(self, t) -> str | None:
        hit = _first(_locate_tensor, self, t)
        return hit if is_hint(hit) else None

    def param_name(self, p, optimizer) -> str:
        """How optimizer state names parameter `p`: the name it has in this trace, in a
        module found so far, or its position among the optimizer's parameters."""
        name = self.given.get(id(p))
        for module, _ in self.anchors:
            if name is None:
                name = _lookup(self._table(module)[1], p)
        if name is None:
            params = [q for group in optimizer.param_groups for q in group["params"]]
            name = str(next((i for i, q in enumerate(params) if q is p), "param"))
        return name

    def object_name(self, obj) -> str | None:
        """The variable (or attribute) through which the program reaches `obj`."""
        hit = _first(_locate_object, self, obj)
        return hit if is_hint(hit) else None


def _join(var: str, rel: str) -> str:
    return f"{var}.{rel}" if rel else var


def _clean_path(path: str) -> str:
    """`path` as a value name (so that the location it is in parses back)."""
    if is_value_name(path):
        return path
    return ".".join(re.sub(r"\W", "_", part) or "_" for part in path.split("."))


def _lookup(table: dict, t):
    name = table.get(id(t))
    return name if name is not None else table.get(id(t._data))


def _first(locate, names: TraceNames, target):
    """The first hit of `locate(names, value, variable, target, 0)` over the variables of
    the user's frames. NOTE: naming never fails a trace: a value that raises while it is
    looked at (a proxy's `__getattr__`) is passed over."""
    for var, v in _frame_values():
        try:
            hit = locate(names, v, var, target, 0)
        except Exception:
            hit = None
        if hit is not None:
            return hit
    return None


def _frame_values():
    """(name, value) of every variable of the user's frames, innermost frame first: its
    locals, then its module's globals."""
    from .guards import is_user_code
    frame = sys._getframe(2)
    seen_globals: set = set()
    while frame is not None:
        if is_user_code(frame.f_code):
            if frame.f_code.co_name != "<module>":
                yield from list(frame.f_locals.items())
            if id(frame.f_globals) not in seen_globals:
                seen_globals.add(id(frame.f_globals))
                yield from list(frame.f_globals.items())
        frame = frame.f_back


def _is_module(v) -> bool:
    global _MODULE
    if _MODULE is None:
        from kiln.nn.module import Module
        _MODULE = Module
    return isinstance(v, _MODULE)


_MODULE = None


def _instance_dict(v) -> dict | None:
    """v's attributes, read without running its `__getattr__`."""
    try:
        d = object.__getattribute__(v, "__dict__")
    except Exception:
        return None
    return d if isinstance(d, dict) else None


def _is_optimizer(v) -> bool:
    d = _instance_dict(v)
    return d is not None and isinstance(d.get("param_groups"), list) and \
        isinstance(d.get("state"), dict)


def _children(v):
    """(name, value) of the places inside a plain value where a tensor or module may be; a
    name is one part of a value name (`weights.0`, `self.scale`: no key like `a b`)."""
    from .tensor import Tensor
    if isinstance(v, (Tensor, str, bytes, int, float, complex, bool, type, types.ModuleType,
                      types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return []
    if isinstance(v, (list, tuple)):
        return [(str(i), x) for i, x in enumerate(v)] if len(v) <= _MAX_ITEMS else []
    if isinstance(v, dict):
        items = v.items() if len(v) <= _MAX_ITEMS else ()
    else:
        attrs = _instance_dict(v)
        items = attrs.items() if attrs is not None else ()
    return [(str(k), x) for k, x in list(items) if _is_part(k)]


def _is_part(key) -> bool:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        return False
    return "." not in str(key) and is_value_name(str(key))


def _attribute_path(parent, path: str, module) -> str | None:
    """`path.attr` (`path.blocks.0`) when `module` is a plain attribute of module `parent`
    (or an item of one)."""
    attrs = _instance_dict(parent) or {}
    for key, x in list(attrs.items()):
        if _is_part(key) and not key.startswith("_"):
            hit = _locate_object(None, x, f"{path}.{key}", module, 1)
            if hit is not None:
                return hit
    return None


def _locate_tensor(names: TraceNames, v, var: str, t, depth: int) -> str | None:
    if v is t:
        return var
    if _is_module(v):
        name = _lookup(names._table(v)[1], t)
        if name is not None:
            names._note_anchor(v, var)
        return name
    if _is_optimizer(v):
        return _optimizer_state_name(names, v, var, t)
    if depth >= _MAX_DEPTH:
        return None
    for key, x in _children(v):
        hit = _locate_tensor(names, x, f"{var}.{key}", t, depth + 1)
        if hit is not None:
            return hit
    return None


def _optimizer_state_name(names: TraceNames, opt, var: str, t) -> str | None:
    """`opt.state.fc1.weight.exp_avg` (or `opt.param_groups.0.params.1`) when t is there;
    the optimizer is remembered, its tensors indexed once (an optimizer step reads many)."""
    index = names.optimizers.get(id(opt))
    if index is None or id(t) not in index[2]:
        index = names.optimizers[id(opt)] = (opt, var, _state_index(names, opt, var))
    return index[2].get(id(t))


def _state_index(names: TraceNames, opt, var: str) -> dict:
    out: dict = {}
    for i, group in enumerate(opt.param_groups):
        for j, p in enumerate(group.get("params", ())):
            out.setdefault(id(p), f"{var}.param_groups.{i}.params.{j}")
    for p, state in list(opt.state.items()):
        for key, x in list(state.items()) if isinstance(state, dict) else ():
            if _is_part(key):
                out[id(x)] = f"{var}.state.{names.param_name(p, opt)}.{key}"
    return out


def _locate_module(names: TraceNames, v, var: str, module, depth: int):
    """(anchor module, variable, path below it) when `module` is `v` or inside it."""
    if _is_module(v):
        rel = names._table(v)[2].get(id(module))
        if rel is None:
            return None
        names._note_anchor(v, var)
        return (v, var, rel)
    if depth >= _MAX_DEPTH or _is_optimizer(v):
        return None
    for key, x in _children(v):
        hit = _locate_module(names, x, f"{var}.{key}", module, depth + 1)
        if hit is not None:
            return hit
    return None


def _locate_object(names: TraceNames | None, v, var: str, obj, depth: int) -> str | None:
    if v is obj:
        return var
    if depth >= _MAX_DEPTH or _is_module(v):
        return None
    for key, x in _children(v):
        hit = _locate_object(names, x, f"{var}.{key}", obj, depth + 1)
        if hit is not None:
            return hit
    return None
