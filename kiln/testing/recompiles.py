"""`no_recompiles`: fail when a jitted function traces again inside a block (JAX's
`chex.assert_max_traces`, for every jitted function at once)."""
from __future__ import annotations

import contextlib
import threading

from kiln.frontend import jit as _jit
from kiln.ir.types import user_loc


class RecompileError(AssertionError):
    """A jitted function traced again inside `no_recompiles()`."""


def no_recompiles(fn=None):
    """A block (`with no_recompiles():`) or a function (`@no_recompiles`) in which no
    jitted function may trace again.

    A function's first trace inside the block is allowed (a test may warm up inside it).
    Recompiles are: a retrace of a jitted function (a guard changed: a shape, a dtype, a
    static argument, a global or closure value...), a graph of a function in replay mode
    compiled again (the values read before it changed the recorded ops), a second trace of
    the same Python function through another `kiln.jit` wrapper (`kiln.jit(step)` called in
    the loop), a trace of a new function object with the same code (`kiln.jit(lambda ...)`
    in the loop), and a call that runs eagerly because the recompile limit was reached
    (inside the block or before it). At the end of the block, RecompileError names each:
    the function, the guard that changed (with the line a global was read at) and the line
    of the call. The block's object keeps them in `.retraces` as (function name, reason,
    call site).

    >>> import kiln
    >>> f = kiln.jit(lambda x, k: x * k)
    >>> with no_recompiles():
    ...     for _ in range(3):
    ...         _ = f(kiln.ones(2), 2.0)
    >>> with no_recompiles():                     # doctest: +ELLIPSIS
    ...     _ = f(kiln.ones(2), 3.0)
    Traceback (most recent call last):
    ...
    kiln.testing.recompiles.RecompileError: 1 recompile inside no_recompiles():
      <lambda> traced again: the argument structure or static values guard failed: ...
        at <doctest ...>:2: _ = f(kiln.ones(2), 3.0)
    """
    if fn is None:
        return NoRecompiles()
    if not callable(fn):
        raise TypeError(f"no_recompiles() takes no argument, or the function it decorates; "
                        f"got {type(fn).__name__}")
    return NoRecompiles()(fn)


class NoRecompiles(contextlib.ContextDecorator):
    """The block `no_recompiles()` makes (see there)."""

    def __init__(self):
        self.retraces: list[tuple[str, str, str]] = []
        self._traced: dict = {}
        self._thread = None

    def _recreate_cm(self):
        return NoRecompiles()      # NOTE: a decorated function gets a fresh block per call

    def __enter__(self):
        self.retraces = []
        self._traced = {}
        self._thread = threading.get_ident()
        _jit.TRACE_LISTENERS.append(self._heard)
        return self

    def __exit__(self, kind, value, tb):
        _jit.TRACE_LISTENERS.remove(self._heard)
        if kind is None and self.retraces:
            raise RecompileError(self.message())
        return False

    def _heard(self, fn, reason: str | None) -> None:
        if threading.get_ident() != self._thread:
            return
        name = getattr(fn, "__name__", type(fn).__name__)
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if reason is None and id(fn) in self._traced:
            reason = ("traced again through a new kiln.jit wrapper of the same function "
                      "(is kiln.jit called inside the loop?)")
        elif reason is None and code is not None and id(code) in self._traced:
            reason = ("a new function object traced again each time (the same code: is "
                      "kiln.jit(lambda ...) or a nested def inside the loop?)")
        # NOTE: held, so that their ids are not reused meanwhile
        self._traced[id(fn)] = fn
        if code is not None:
            self._traced[id(code)] = code
        if reason is not None:
            loc = user_loc()
            where = f"{loc}: {loc.source}" if loc is not None else "?"
            self.retraces.append((name, reason, where))

    def message(self) -> str:
        n = len(self.retraces)
        lines = [f"{n} recompile{'s' if n > 1 else ''} inside no_recompiles():"]
        for name, reason, where in self.retraces:
            lines += [f"  {_phrase(name, reason)}", f"    at {where}"]
        return "\n".join(lines)


def _phrase(name: str, reason: str) -> str:
    """One recompile in words: "f traced again: <guard>", "f runs eagerly: <why>"."""
    if reason.startswith(("runs eagerly", "traced again")):
        return f"{name} {reason}"
    if reason.startswith("recompile limit"):
        return f"{name} runs eagerly: {reason}"
    if reason.startswith("a new function object"):
        return f"{name}: {reason}"
    return f"{name} traced again: {reason}"
