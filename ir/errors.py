"""Errors carry a category, the IR node or op, the user's source line and a hint."""
from __future__ import annotations


class KilnError(Exception):
    """Base class of Kiln's errors."""

    category = "error"

    def __init__(self, message: str, *, loc=None, node=None, hint: str | None = None):
        self.message = message
        self.loc = loc
        self.node = node
        self.hint = hint
        super().__init__(self._render())

    def at(self, loc) -> "KilnError":
        """This error, naming `loc` (the user's line) when it names none yet."""
        if self.loc is None and loc is not None:
            self.loc = loc
            self.args = (self._render(),)
        return self

    def _render(self) -> str:
        text = self.message
        if self.loc is not None:
            text += f"\n  at {self.loc}"
            if getattr(self.loc, "source", None):
                text += f": {self.loc.source}"
        if self.node is not None:
            text += f"\n  while handling node: {self.node}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ShapeError(KilnError, ValueError, RuntimeError):
    """Shapes that do not fit: a RuntimeError, as PyTorch's (and a ValueError, as before)."""

    category = "shape"


class KilnIndexError(ShapeError, IndexError):
    """An index out of range: an `IndexError`, as PyTorch's (and a ShapeError, as before)."""

    category = "index"


class DTypeError(KilnError, TypeError, RuntimeError):
    """Wrong dtypes: a RuntimeError, as PyTorch's dtype mismatches (and a TypeError, as
    before)."""

    category = "dtype"


class VerifyError(KilnError):
    category = "verify"


class ParseError(KilnError):
    category = "parse"


class NotSupportedError(KilnError, NotImplementedError):
    """A feature Kiln does not have yet; the message starts with 'not supported yet'."""

    category = "unsupported"


def type_name(v) -> str:
    """`float`, `numpy.ndarray`: a value's type as PyTorch's argument errors name it."""
    t = type(v)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__.split('.')[0]}.{t.__name__}"


class ArgumentTypeError(KilnError, TypeError):
    """A value of the wrong type where a function takes a tensor: PyTorch's TypeError."""

    category = "type"


def expect_tensor(op: str, x, tensor_type) -> None:
    """PyTorch's TypeError for a non-tensor where a function takes a tensor, at the user's
    line."""
    if not isinstance(x, tensor_type):
        from .types import user_loc
        raise ArgumentTypeError(f"{op}(): argument 'input' (position 1) must be Tensor, not "
                                f"{type_name(x)}", loc=user_loc())
