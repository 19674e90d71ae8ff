"""`assert_matches_eager`: the jitted function gives what the plain Python gives: the same
outputs, the same writes to every tensor it mutates (arguments, parameters, optimizer state,
`.grad`) and the same gradients, on the call that traces and on the cached graph."""
from __future__ import annotations

import contextlib
import functools
import numbers
import random
import threading
import warnings

import numpy as np

from kiln.frontend import creation
from kiln.frontend.creation import from_numpy
from kiln.frontend.jit import PLAIN_THREADS, JitFunction, KilnJitWarning, _Compiled, _flatten
from kiln.frontend.tensor import Tensor

from .close import compare, to_numpy
from .state import Snapshot, World, bindings_of, roots_of


def assert_matches_eager(fn, *args, grads: bool = True, rtol: float | None = None,
                         atol: float | None = None, equal_nan: bool = True,
                         **kwargs) -> None:
    """Run `fn(*args, **kwargs)` under `@kiln.jit` and eagerly, from the same state, and
    raise AssertionError where they differ.

    `fn` is a plain function (jitted here), a `@kiln.jit` function (its cache is used, so a
    warm function checks its cached graph) or a `kiln.compile`d one. The eager run is plain
    Python all the way down: `@kiln.jit` helpers and `kiln.compile`d modules it calls run
    their Python too. Compared, with `assert_close`'s tolerances (PyTorch's per dtype, or
    `rtol` and `atol`), NaN equal to NaN in the same place unless `equal_nan=False`:
    - the outputs;
    - every tensor reachable from the arguments (a `functools.partial`'s too), the default
      argument values, and the globals and closure variables the function reads (and the
      attributes it reads through a module or class: `ns.buf`): parameters, buffers,
      optimizer state and `.grad`s, by path;
    - with `grads=True`, when the function does not manage `.grad` itself (a training step
      does), the gradients of its outputs, weighted by fixed pseudo-random values, with
      respect to every tensor argument that requires grad and every other reachable leaf
      tensor that requires grad.
    The jitted run must run compiled code (an eager fallback would compare the function with
    itself). A call that traced is followed by a second pair of runs from the same state,
    with the random generators (Kiln's, NumPy's, Python's) where the first eager run left
    them, so the cached graph is compared too: a value baked in at trace time that the
    program would draw or compute anew shows there. Both runs of a pair start from the same
    random state.
    Afterwards the state is the last eager run's: as after one call of the function (the
    random generators as after two calls, when it traced).

    >>> import kiln
    >>> def step(x, w):
    ...     w.add_(x * 0.5)             # an in-place write is compared too
    ...     return kiln.tanh(w).sum()
    >>> assert_matches_eager(step, kiln.ones(3), kiln.zeros(3))
    """
    if (rtol is None) != (atol is None):
        raise ValueError("assert_matches_eager: give rtol and atol together, or neither")
    jitted, plain = _both(fn)
    jf = _jit_function(jitted)
    why = _eager_entry(jf, args, kwargs)
    if why is not None:
        raise AssertionError(f"assert_matches_eager({_name(plain)}): the jitted function "
                             f"runs these arguments eagerly ({why}); comparing would prove "
                             "nothing (kiln.explain says why)")
    before = Snapshot(World(roots_of(plain, args, kwargs)), bindings_of(plain, set()))
    run = functools.partial(_run, plain=plain, args=args, kwargs=kwargs, grads=grads,
                            before=before)
    options = (rtol, atol, equal_nan)
    try:
        rng = _rng_state()
        compiles = _compiles(jf)
        compiled = run(jitted, strict=True)
        traced = _compiles(jf) != compiles
        eager = _from(before, rng, lambda: run(plain, strict=False))
        problem = _differences(compiled, eager, *options)
        if problem is None and traced:
            rng = _rng_state()      # NOTE: where the program's second call would start
            compiled = _from(before, rng, lambda: run(jitted, strict=True))
            eager = _from(before, rng, lambda: run(plain, strict=False))
            problem = _differences(compiled, eager, *options)
            if problem is not None:
                problem = ("on the second call (the cached graph; the first call, which "
                           f"traced, matched): {problem}")
    except BaseException:
        before.restore()
        raise
    if problem is not None:
        raise AssertionError(f"assert_matches_eager({_name(plain)}): {problem}")


def _rng_state() -> tuple:
    return creation.get_rng_state(), np.random.get_state(), random.getstate()


def _from(before: Snapshot, rng: tuple, run):
    """`run()` from the snapshot's state and the random state `rng`."""
    before.restore()
    creation.set_rng_state(rng[0])
    np.random.set_state(rng[1])
    random.setstate(rng[2])
    return run()


def _compiles(jf: JitFunction) -> int:
    """How many graphs `jf` has traced: its traces and its replay entries' segments."""
    segments = sum(len(getattr(e, "segments", None) or ()) for entries in jf.cache.values()
                   for e in entries)
    return jf.traces + segments


@contextlib.contextmanager
def _plain_python():
    """Every jitted function called in this thread runs its Python (nested `@kiln.jit`
    helpers and `kiln.compile`d modules too): the eager reference run."""
    me = threading.get_ident()
    nested = me in PLAIN_THREADS
    PLAIN_THREADS.add(me)
    try:
        yield
    finally:
        if not nested:
            PLAIN_THREADS.discard(me)


def _both(fn):
    """(jitted callable, plain callable) for a plain, jitted or kiln.compile'd function."""
    if isinstance(fn, JitFunction):
        return fn, fn.fn
    jitted = getattr(fn, "jitted", None)        # NOTE: kiln.compile(fn, fullgraph=True)
    if isinstance(jitted, JitFunction):
        return fn, jitted.fn
    if getattr(fn, "_compiled_call", None) is not None:     # NOTE: kiln.compile(module)
        return fn, fn._orig_mod
    if not callable(fn):
        raise TypeError(f"assert_matches_eager expects a function, got {type(fn).__name__}")
    return JitFunction(fn), fn


def _jit_function(jitted) -> JitFunction:
    for attr in ("_compiled_call", "jitted"):   # NOTE: kiln.compile(module), fullgraph=True
        jitted = getattr(jitted, attr, jitted)
    return jitted


def _eager_entry(jf: JitFunction, args, kwargs) -> str | None:
    """Why the cache entry this call would use runs the function eagerly (an earlier call
    fell back and warned then), or None. Read only: the jit's own lookup is not run."""
    key, leaves = jf._key(args, kwargs)
    jf._call = None
    for entry in jf.cache.get(key, ()):
        if isinstance(entry, _Compiled):
            if entry.guards_hold((args, kwargs), leaves):
                return None
            continue
        if getattr(entry, "segments", None) is None:
            return entry.reason         # NOTE: an eager fallback entry
        return getattr(entry, "eager_reason", None)     # NOTE: replay mode, given up or not
    if jf._past_limit is not None:
        return jf._past_limit.reason
    return None


def _name(fn) -> str:
    if isinstance(fn, functools.partial):
        return f"partial({_name(fn.func)})"
    return getattr(fn, "__name__", type(fn).__name__)


def _run(call, *, plain, args, kwargs, grads: bool, before: Snapshot, strict: bool) -> dict:
    """What one run leaves: {"output...": value, "state NAME": values, "gradient ...":
    values}, NumPy copies taken right after the call. `strict`: the jitted run (it must run
    compiled code); else the eager one (plain Python throughout)."""
    with warnings.catch_warnings(), (contextlib.nullcontext() if strict else _plain_python()):
        if strict:
            warnings.simplefilter("error", KilnJitWarning)
        try:
            out = call(*args, **kwargs)
        except KilnJitWarning as w:
            raise AssertionError(f"assert_matches_eager({_name(plain)}): the jitted call did "
                                 f"not run compiled code: {w} (kiln.explain says why)") from None
    leaves: list = []
    found = {f"output{path}": value for path, value in _outputs(out, "", leaves)}
    after = World(roots_of(plain, args, kwargs))
    found.update({f"state {k}": v for k, v in after.named_values().items()})
    if grads and not before.grads_changed(after):
        arguments: list = []
        _flatten((args, kwargs), arguments)
        found.update(_output_grads(leaves, arguments, after))
    return found


def _outputs(value, path: str, leaves: list):
    """(path, NumPy copy or plain value) of everything in an output structure; `leaves`
    gets its tensors."""
    if isinstance(value, Tensor):
        leaves.append(value)
        yield path, to_numpy(value).copy()
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _outputs(item, f"{path}[{i}]", leaves)
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from _outputs(item, f"{path}[{k!r}]", leaves)
    else:
        yield path, value


def _output_grads(outputs: list, arguments: list, world: World) -> dict:
    """The gradients of the outputs that require grad, weighted by fixed pseudo-random
    values, with respect to every tensor argument that requires grad (a leaf or not) and
    every other reachable leaf tensor that requires grad."""
    from kiln.autograd import grad
    outs = [o for o in outputs if o.requires_grad]
    wrt = list({id(t): t for t in arguments if t.requires_grad}.values())
    wrt += [t for t in world.tensors.values()
            if t.requires_grad and t.is_leaf and all(t is not a for a in wrt)]
    if not outs or not wrt:
        return {}
    rng = np.random.default_rng(0)
    weights = [from_numpy(rng.standard_normal(tuple(o.shape)).astype(o.dtype.np)).to(o.device)
               for o in outs]
    got = grad(outs, wrt, weights, allow_unused=True)
    return {f"gradient of the outputs with respect to {world.name(t)}":
            None if g is None else to_numpy(g).copy() for t, g in zip(wrt, got)}


def _differences(compiled: dict, eager: dict, rtol, atol, equal_nan) -> str | None:
    """The first difference (outputs first, then state, then gradients), or None."""
    for key in eager:
        if key not in compiled:
            return f"after the eager run there is {key}; after the jitted run there is not"
    for key in compiled:
        if key not in eager:
            return f"after the jitted run there is {key}; after the eager run there is not"
    for key, want in eager.items():
        got = compiled[key]
        if _comparable(got) and _comparable(want):
            problem = compare(got, want, rtol=rtol, atol=atol, equal_nan=equal_nan)
            if problem is not None:
                return f"{key} differs (actual: jitted, expected: eager)\n\n{problem}"
        elif not (got is want or (type(got) is type(want) and got == want)):
            return f"{key}: jitted {got!r}, eager {want!r}"
    return None


def _comparable(value) -> bool:
    return isinstance(value, (np.ndarray, numbers.Number, np.generic))
