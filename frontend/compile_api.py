"""`kiln.compile`: `torch.compile`'s signature over Kiln's tracing JIT, so code written for
`torch.compile` runs unchanged.

`kiln.compile(fn)` is `kiln.jit(fn)`; a module comes back wrapped as PyTorch's does (an
`OptimizedModule` whose `_orig_mod` is the module, so state-dict keys gain `_orig_mod.`).
torch.compile's tuning arguments (`dynamic`, `mode`, `options`, a backend name) are checked
and then ignored: Kiln retraces per shape and has one pipeline. `fullgraph=True` turns what
would otherwise be a warning and an eager (or split) run into an error, as PyTorch raises at a
graph break.
"""
from __future__ import annotations

import warnings

from kiln.ir.errors import NotSupportedError

from .jit import JitFunction, KilnJitWarning

_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile(model=None, *, fullgraph: bool = False, dynamic: bool | None = None,
            backend="inductor", mode: str | None = None, options: dict | None = None,
            disable: bool = False):
    """Compile a function or module with Kiln's JIT, taking `torch.compile`'s arguments.

    Use it as `kiln.compile(fn)`, `@kiln.compile` or `@kiln.compile(fullgraph=True)`;
    `disable=True` returns `model` itself.

    >>> import kiln
    >>> from kiln.frontend.compile_api import compile     # exported as kiln.compile
    >>> @compile(mode="max-autotune")
    ... def f(x):
    ...     return kiln.relu(x) * 2
    >>> f(kiln.tensor([-1.0, 3.0])).tolist()
    [0.0, 6.0]
    >>> lin = kiln.nn.Linear(2, 1)
    >>> list(compile(lin).state_dict())
    ['_orig_mod.weight', '_orig_mod.bias']
    """
    _check_options(backend, mode, options)
    if model is None:
        return lambda fn: compile(fn, fullgraph=fullgraph, dynamic=dynamic, backend=backend,
                                  mode=mode, options=options, disable=disable)
    if not callable(model):
        raise TypeError(f"kiln.compile expects a function or an nn.Module, got "
                        f"{type(model).__name__}")
    if disable:
        return model
    from kiln.nn.module import Module
    if isinstance(model, Module):
        return optimized_module_class()(model, fullgraph)
    return _jitted(model, fullgraph)


def _check_options(backend, mode, options) -> None:
    if mode is not None and options is not None:
        raise RuntimeError("Either mode or options can be specified, but both can't be "
                           "specified at the same time.")
    if mode not in _MODES:
        raise RuntimeError(f"Unrecognized mode={mode}, should be one of: "
                           f"{', '.join(m for m in _MODES if m)}")
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    if backend is not None and not isinstance(backend, str):
        raise NotSupportedError("not supported yet: a custom torch.compile backend (a "
                                f"callable, got {type(backend).__name__}); Kiln compiles with "
                                "its own pipeline: pass a backend name or leave it out")


def _jitted(fn, fullgraph: bool):
    jitted = JitFunction(fn)
    return FullGraphFunction(jitted) if fullgraph else jitted


class FullGraphFunction:
    """A jitted function that raises where Kiln would run it eagerly or split it into several
    graphs (PyTorch's `fullgraph=True`)."""

    def __init__(self, jitted: JitFunction):
        self.jitted = jitted
        self.__wrapped__ = jitted.fn
        self.__name__ = jitted.name
        self.__doc__ = getattr(jitted.fn, "__doc__", None)

    def __call__(self, *args, **kwargs):
        traces = self.jitted.traces
        with warnings.catch_warnings():
            warnings.simplefilter("error", KilnJitWarning)
            try:
                out = self.jitted(*args, **kwargs)
            except KilnJitWarning as w:
                raise NotSupportedError(f"kiln.compile(fullgraph=True): {self.jitted.name} "
                                        f"cannot be compiled as one graph: {w}") from None
        if self.jitted.traces != traces and self._split():
            raise NotSupportedError(f"kiln.compile(fullgraph=True): {self.jitted.name} was "
                                    "split into several graphs around Python that reads "
                                    "tensor values or has side effects (see kiln.explain)")
        return out

    def _split(self) -> bool:
        """Does a cached entry run the Python between compiled pieces (replay mode)?"""
        return any(getattr(entry, "segments", None) is not None
                   for entries in self.jitted.cache.values() for entry in entries)

    def __getattr__(self, name):
        return getattr(self.jitted, name)


_OPTIMIZED_MODULE = []


def optimized_module_class() -> type:
    """`OptimizedModule`, made on first use: kiln.nn imports the frontend, so the frontend
    cannot import kiln.nn while it is being loaded."""
    if _OPTIMIZED_MODULE:
        return _OPTIMIZED_MODULE[0]
    from kiln.nn.module import Module

    class OptimizedModule(Module):
        """A module compiled by `kiln.compile`: calls go through the JIT; the original
        module is `_orig_mod` (its attributes are readable here), as in PyTorch."""

        def __init__(self, mod, fullgraph: bool = False):
            super().__init__()
            self._orig_mod = mod
            object.__setattr__(self, "_compiled_call", _jitted(mod, fullgraph))

        def forward(self, *args, **kwargs):
            return self._compiled_call(*args, **kwargs)

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.__dict__["_modules"]["_orig_mod"], name)

    _OPTIMIZED_MODULE.append(OptimizedModule)
    return OptimizedModule
