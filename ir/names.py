"""Names and locations that say where a value or an op came from in the user's program.

Graph inputs are named after their source (`%x` for an argument, `%fc1.weight` for a module's
parameter, `%opt.state.fc1.weight.exp_avg` for optimizer state) and an op made inside an
`nn.Module`'s forward carries the module's path with the user's line:

    >>> str(ModuleLoc("train.py", 41, "model.fc1", "Linear"))
    'model.fc1 (Linear) at train.py:41'
    >>> parse_loc("model.fc1 (Linear) at train.py:41") == ModuleLoc("train.py", 41,
    ...                                                            "model.fc1", "Linear")
    True
    >>> is_hint("fc1.weight"), is_hint("layers.0.weight"), is_hint("12"), is_hint("a b")
    (True, True, False, False)

Names and locations are for people: they never change what a graph computes, and the kernel
signatures that key compiled code leave them out.
"""
from __future__ import annotations

import dataclasses
import re

from .types import Loc

_WORD = re.compile(r"\w+")
_DIGITS = re.compile(r"[0-9]+")
# NOTE: the text after `%` the IR tokenizer takes as one value name
VALUE_TOKEN = r"%\w+(?:\.\w+)*"
_LOC = re.compile(r"(?:(?P<module>[^\s()]+) \((?P<kind>[^()]+)\) at )?(?P<file>.+):(?P<line>\d+)")


def is_value_name(name: str) -> bool:
    """A name the IR text can hold after `%`: a number (`%3`), or parts joined by dots, each
    an identifier or a number (`%x`, `%fc1.weight`, `%layers.0.weight`)."""
    parts = name.split(".")
    return all(_DIGITS.fullmatch(p) or (p.isidentifier() and _WORD.fullmatch(p))
               for p in parts)


def is_hint(name) -> bool:
    """A readable name the printer keeps: a value name that is not a plain number (numbers
    are the printer's own)."""
    return isinstance(name, str) and is_value_name(name) and not _DIGITS.fullmatch(name)


def unique_name(hint: str, taken) -> str:
    """`hint`, or `hint_1`, `hint_2`, ... : the first that is not in `taken`."""
    if hint not in taken:
        return hint
    k = 1
    while f"{hint}_{k}" in taken:
        k += 1
    return f"{hint}_{k}"


@dataclasses.dataclass(frozen=True)
class ModuleLoc(Loc):
    """A user's source line inside an `nn.Module`'s forward: the module's path from the
    outermost module the program called (`model.fc1`) and its class (`Linear`)."""

    module: str = ""
    kind: str = ""

    def __str__(self) -> str:
        return f"{self.module} ({self.kind}) at {Loc.__str__(self)}"


def parse_loc(text: str) -> Loc | None:
    """The Loc that `str(loc)` wrote (`file.py:LINE`, `path (Class) at file.py:LINE`)."""
    m = _LOC.fullmatch(text.strip())
    if m is None:
        return None
    file, line = m.group("file").strip(), int(m.group("line"))
    if m.group("module") is None:
        return Loc(file, line)
    return ModuleLoc(file, line, m.group("module"), m.group("kind"))


def mlir_loc(loc: Loc | None) -> str:
    """The MLIR location of `loc`: `loc("train.py":41:0)`, named after the module path when
    it has one: `loc("model.fc1 (Linear)"("train.py":41:0))`."""
    if loc is None:
        return "loc(unknown)"
    where = f"{_mlir_string(Loc.__str__(loc).rsplit(':', 1)[0])}:{loc.line}:0"
    if isinstance(loc, ModuleLoc):
        return f"loc({_mlir_string(f'{loc.module} ({loc.kind})')}({where}))"
    return f"loc({where})"


def _mlir_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
