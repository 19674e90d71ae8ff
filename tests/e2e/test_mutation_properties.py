"""Views and in-place ops: random programs agree under @kiln.jit, eagerly, and in PyTorch.

Hypothesis draws short programs over views (of the arguments, of a captured global, of a
captured closure tensor, of intermediates), in-place ops that write through them (`add_`,
`copy_`, `+=`, `t[idx] = v`, ...), elementwise ops and reductions. One interpreter,
`run_program`, runs a program with Kiln or torch tensors alike (it calls only methods both
define), so the runs cannot drift apart. Each program is called twice (the jitted function
compiles on the first call and runs the cached code on the second) on fresh copies of the
arguments, while the captured tensors carry their state from call to call; after each call
every output is written into (`out.add_(k)`), so an output that should alias an argument, a
captured tensor or another output must do so. The gradient variant returns a scalar loss of
a program whose in-place ops write only into intermediates; where PyTorch refuses the backward
(a value autograd saved was written in place), Kiln must raise too.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from itertools import permutations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import kiln
from kiln.frontend.jit import KilnJitWarning

try:
    import torch
except ImportError:     # NOTE: the torch comparisons skip, with the reason, where it is missing
    torch = None

RTOL_VALUES, RTOL_GRADS = 1e-9, 1e-7
NEEDS_TORCH = "PyTorch is not installed; the Kiln-vs-PyTorch comparison needs it"

# ---- the instruction set ------------------------------------------------------------------
VIEWS = ("t", "transpose", "permute", "slice", "select", "index", "narrow", "unsqueeze",
         "squeeze", "view", "reshape", "expand", "detach", "data")
UNARY = ("tanh", "sigmoid", "neg", "abs", "relu", "exp_tanh", "mul2", "add_half", "clamp",
         "clone")
BINARY = ("add", "sub", "mul", "maximum", "minimum", "div_safe")
REDUCE = ("sum", "mean", "amax", "sum_all")
INPLACE = ("add_", "sub_", "mul_", "div_", "iadd", "isub", "imul", "copy_", "clamp_",
           "relu_", "neg_", "fill_", "zero_")
SCALARS = (0.5, -2.0, 3.0, 1.25)


@dataclass(frozen=True)
class Meta:
    """What the interpreter knows of a slot, the same for Kiln and torch: which storage it
    views (0-3 the inputs, higher an intermediate), whether it may be written (not an
    expanded view; in the gradient variant not an argument or captured tensor) and whether
    it is contiguous (so `.view` is legal)."""
    storage: int
    writable: bool
    contiguous: bool = True


def _slice_index(shape, d, p1, p2, p3) -> tuple:
    d %= len(shape)
    n = shape[d]
    start = p1 % n
    stop = start + 1 + p2 % (n - start)
    return (slice(None),) * d + (slice(start, stop, 1 + p3 % 2),)


def _index(shape, kind, p1, p2, p3):
    """A basic index for `x[...]` / `x[...] = v`; never empty, never out of bounds."""
    if kind == 0:
        return p1 % shape[0] - (shape[0] if p3 % 2 else 0)            # x[i], x[-i]
    if kind == 1:
        return _slice_index(shape, p1, p2, p3, p1 + p3)             # x[:, a:b:s]
    if kind == 2:
        return (Ellipsis, p1 % shape[-1])                           # x[..., i]
    if len(shape) >= 2:
        return (p1 % shape[0],) + _slice_index(shape[1:], p2, p3, p1, p2)   # x[i, a:b]
    return slice(None)                                              # x[:]


def _view(x, meta: Meta, kind: str, p):
    """(view of x, its Meta), or None where the view does not apply to x's shape."""
    shape, nd = tuple(x.shape), x.ndim
    keep = replace(meta, contiguous=False)
    if kind == "t":
        return (x.t(), meta if nd < 2 else keep) if nd <= 2 else None
    if kind in ("transpose", "permute") and nd >= 2:
        if kind == "transpose":
            return x.transpose(p[0] % nd, p[1] % nd), keep
        perms = list(permutations(range(nd)))
        return x.permute(perms[(p[0] * 6 + p[1]) % len(perms)]), keep
    if nd == 0:
        return (x.unsqueeze(0), meta) if kind == "unsqueeze" else None
    if kind == "slice":
        return x[_slice_index(shape, *p)], keep
    if kind == "select":
        d = p[0] % nd
        return x.select(d, p[1] % shape[d]), meta if d == 0 else keep
    if kind == "index":
        return x[_index(shape, p[0] % 4, *p[1:])], keep
    if kind == "narrow":
        d = p[0] % nd
        start = p[1] % shape[d]
        return x.narrow(d, start, 1 + p[2] % (shape[d] - start)), meta if d == 0 else keep
    if kind == "unsqueeze":
        return x.unsqueeze(p[0] % (nd + 1)), meta
    if kind == "squeeze":
        ones = [d for d, s in enumerate(shape) if s == 1]
        return (x.squeeze(ones[p[0] % len(ones)]), meta) if ones else None
    if kind in ("view", "reshape"):
        new = (-1,) if p[0] % 2 or nd < 2 else (shape[0] * shape[1],) + shape[2:]
        if kind == "view":
            return (x.view(new), meta) if meta.contiguous else None
        return x.reshape(new), meta
    if kind == "expand":
        new = tuple(3 if s == 1 else s for s in shape) if 1 in shape else (2,) + shape
        return x.expand(new), replace(meta, writable=False, contiguous=False)
    if kind == "detach":
        return x.detach(), meta
    if kind == "data":
        return x.data, meta
    return None


def _unary(x, name: str):
    if name == "exp_tanh":
        return x.tanh().exp()
    if name == "mul2":
        return x * 2.0
    if name == "add_half":
        return 0.5 + x
    if name == "clamp":
        return x.clamp(-0.5, 0.75)
    return getattr(x, name)()


def _binary(a, b, name: str):
    if name == "add":
        return a + b
    if name == "sub":
        return a - b
    if name == "mul":
        return a * b
    if name == "div_safe":
        return a / (b.abs() + 1.0)
    return getattr(a, name)(b)


def _reduce(x, name: str, dim: int, keepdim: bool):
    if name == "sum_all" or x.ndim == 0:
        return x.sum()
    return getattr(x, name)(dim % x.ndim, keepdim=keepdim)


def _fits(src_shape, dst_shape) -> bool:
    try:
        return np.broadcast_shapes(tuple(src_shape), tuple(dst_shape)) == tuple(dst_shape)
    except ValueError:
        return False


def _inplace(dst, name: str, src, scalar):
    """One in-place update of dst; src is a tensor that broadcasts into dst, or None."""
    operand = scalar if src is None else src
    if name in ("add_", "sub_", "mul_"):
        getattr(dst, name)(operand)
    elif name == "div_":
        dst.div_(scalar if src is None else src.abs() + 1.0)
    elif name == "iadd":
        dst += operand
    elif name == "isub":
        dst -= operand
    elif name == "imul":
        dst *= operand
    elif name == "copy_":
        dst.copy_(src) if src is not None else dst.fill_(scalar)
    elif name == "clamp_":
        dst.clamp_(-abs(scalar), abs(scalar) * 0.5)
    elif name == "fill_":
        dst.fill_(scalar)
    else:                                           # relu_, neg_, zero_
        getattr(dst, name)()


def _source(slots, metas, dst_meta, i, dst_shape):
    """Slot i as the source of a write into dst_shape, or None (use a scalar): a clone where
    it shares dst's storage (an overlapping in-place op is an error in PyTorch)."""
    if i is None:
        return None
    src = slots[i % len(slots)]
    if not _fits(src.shape, dst_shape):
        return None
    return src.clone() if metas[i % len(slots)].storage == dst_meta.storage else src


def _step(step, slots, metas):
    """Run one instruction: new (tensor, Meta) for a value it makes, else None."""
    kind, at = step[0], step[2] % len(slots)
    x, meta = slots[at], metas[at]
    fresh = Meta(storage=len(slots) + 4, writable=True)
    if kind == "view":
        return _view(x, meta, step[1], step[3:])
    if kind == "unary":
        return _unary(x, step[1]), fresh
    if kind == "binary":
        b = slots[step[3] % len(slots)]
        return (_binary(x, b, step[1]), fresh) if _broadcastable(x.shape, b.shape) else None
    if kind == "reduce":
        return _reduce(x, step[1], step[3], step[4]), fresh
    writable = [i for i, m in enumerate(metas) if m.writable]
    if not writable:
        return None
    at = writable[step[2] % len(writable)]          # NOTE: writes pick among writable slots
    x, meta = slots[at], metas[at]
    # NOTE: PyTorch rebuilds the history of a view whose base was written only when it is
    # asked for (`is_leaf` asks); without this, its in-place check takes such a view for a
    # leaf that requires grad and refuses the write (Kiln rebuilds it before the check)
    x.is_leaf
    if kind == "inplace":
        _inplace(x, step[1], _source(slots, metas, meta, step[3], x.shape), step[4])
    else:                                           # "setitem"
        if x.ndim == 0:
            return None
        index = _index(tuple(x.shape), step[1] % 4, *step[3:6])
        target_shape = tuple(x[index].shape)
        src = _source(slots, metas, meta, step[6], target_shape)
        x[index] = step[7] if src is None else src
    return None


def _broadcastable(a, b) -> bool:
    try:
        np.broadcast_shapes(tuple(a), tuple(b))
        return True
    except ValueError:
        return False


def run_program(program, outs, inputs, writable, loss: bool = False):
    """(outputs, their Metas): the program run on `inputs` (arguments a, b, the captured
    global, the captured closure tensor); with `loss`, outputs start with a scalar loss."""
    slots = list(inputs)
    metas = [Meta(storage=i, writable=w) for i, w in enumerate(writable)]
    for step in program:
        made = _step(step, slots, metas)
        if made is not None:
            slots.append(made[0])
            metas.append(made[1])
    chosen = [i % len(slots) for i in outs] + [len(slots) - 1]
    results = [slots[i] for i in chosen]
    if loss:
        total = results[0].sum() * 0.0
        for r in results:
            total = total + (r * r).sum()
        results = [total] + results
    return tuple(results), [metas[i] for i in chosen]


_MUT_GLOBAL = None     # the captured global: each run binds its own tensor here


def make_fn(program, outs, closure_tensor, writable, loss: bool = False):
    """The function under test: it reads the captured global and closure tensor itself, so
    `@kiln.jit` sees them as captured (and writes back what the program changes in them)."""
    def fn(a, b):
        return run_program(program, outs, (a, b, _MUT_GLOBAL, closure_tensor), writable,
                           loss)[0]
    return fn


# ---- strategies ---------------------------------------------------------------------------
_slot = st.integers(0, 15)
_param = st.integers(0, 5)
_scalar = st.sampled_from(SCALARS)
_PARAMS = (_param,) * 4
_VIEW = st.tuples(st.just("view"), st.sampled_from(VIEWS), _slot, *_PARAMS)
_INPLACE = st.tuples(st.just("inplace"), st.sampled_from(INPLACE), _slot,
                     st.one_of(st.none(), _slot), _scalar)
_SETITEM = st.tuples(st.just("setitem"), st.integers(0, 3), _slot, _param, _param, _param,
                     st.one_of(st.none(), _slot), _scalar)
_UNARY = st.tuples(st.just("unary"), st.sampled_from(UNARY), _slot)
_BINARY = st.tuples(st.just("binary"), st.sampled_from(BINARY), _slot, _slot)
_REDUCE = st.tuples(st.just("reduce"), st.sampled_from(REDUCE), _slot, _param, st.booleans())
STEPS = st.one_of(_VIEW, _INPLACE, _SETITEM, _VIEW, _INPLACE, _UNARY, _BINARY, _REDUCE)
# NOTE: no `.data` in the gradient variant: PyTorch's `.data` has its own version counter (a
# write through it into a saved value is never refused); Kiln's is `detach()`, which shares it
GRAD_VIEWS = tuple(v for v in VIEWS if v != "data")
GRAD_STEPS = st.one_of(
    st.tuples(st.just("view"), st.sampled_from(GRAD_VIEWS), _slot, *_PARAMS),
    _INPLACE, _SETITEM, _UNARY, _INPLACE, _BINARY, _UNARY, _REDUCE)

# (a, b, captured global, captured closure tensor) shapes: few, so compiles are alike
SHAPES = st.sampled_from([
    ((2, 3), (3,), (2, 3), (3,)), ((3, 3), (3, 3), (3, 3), (3,)),
    ((2, 1, 3), (1, 3), (2, 1, 3), (3,)), ((4,), (4,), (4,), (1,)),
    ((2, 3, 2), (3, 2), (2, 3, 2), (2, 3, 2)), ((1, 3), (1, 3), (1, 3), (3,)),
])
PROGRAMS = st.lists(STEPS, min_size=1, max_size=10)
GRAD_PROGRAMS = st.lists(GRAD_STEPS, min_size=1, max_size=10)
OUTS = st.lists(_slot, min_size=0, max_size=3)
SEEDS = st.integers(0, 2**16)


# ---- running a program with one library -------------------------------------------------
class Lib:
    """Tensor creation for one library; everything else is the tensors' own methods."""

    def __init__(self, name: str):
        self.name = name

    def tensor(self, arr: np.ndarray, requires_grad: bool = False):
        t = (kiln if self.name.startswith("kiln") else torch).from_numpy(arr.copy())
        return t.requires_grad_() if requires_grad else t

    def wrap(self, fn):
        if self.name == "kiln-jit":
            return kiln.jit(fn)
        if self.name == "torch-snapshots":
            return _with_snapshots(fn)
        return fn


def _with_snapshots(fn):
    """fn with autograd saving copies: a later in-place write cannot reach what backward
    reads, so PyTorch gives the gradient of the values the program computed, never the
    "modified by an inplace operation" refusal."""
    def run(*args):
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: t):
            return fn(*args)
    return run


KILN, KILN_JIT = Lib("kiln"), Lib("kiln-jit")
TORCH = Lib("torch") if torch is not None else None
TORCH_SNAPSHOTS = Lib("torch-snapshots") if torch is not None else None


def _data(shapes, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    draw = rng.standard_normal
    return {"a": [draw(shapes[0]) for _ in range(2)], "b": [draw(shapes[1]) for _ in range(2)],
            "g": draw(shapes[2]), "c": draw(shapes[3])}


def _arrays(*tensors) -> list:
    return [np.array(t.detach().numpy(), copy=True) for t in tensors]


def _calls(lib: Lib, fn):
    """`fn` as `lib` runs it; KilnJitWarning (ran eagerly instead of compiled) is an error."""
    jitted = lib.wrap(fn)

    def call(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("error", KilnJitWarning)
            return jitted(*args)
    return call, jitted


def _assert_compiled_once(jitted) -> None:
    """Both calls ran compiled code: one trace, and no replay or eager entry."""
    if not isinstance(jitted, kiln.frontend.jit.JitFunction):
        return
    entries = [e for es in jitted.cache.values() for e in es]
    kinds = [type(e).__name__ for e in entries]
    assert jitted.traces == 1 and kinds == ["_Compiled"], (jitted.traces, kinds)


def run_forward(lib: Lib, program, outs, shapes, seed: int) -> list:
    """Two calls; after each, the values of outputs, arguments and captured tensors, then
    the same after writing into every writable output (aliasing shows as changed values)."""
    global _MUT_GLOBAL
    data = _data(shapes, seed)
    g, c = lib.tensor(data["g"]), lib.tensor(data["c"])
    _MUT_GLOBAL = g
    fn = make_fn(program, outs, c, writable=(True,) * 4)
    call, jitted = _calls(lib, fn)
    metas = _metas(program, outs, shapes, data, writable=(True,) * 4)
    records = []
    for k in range(2):
        a, b = lib.tensor(data["a"][k]), lib.tensor(data["b"][k])
        out = call(a, b)
        records.append(("call", k, _arrays(*out, a, b, g, c)))
        for j, (o, meta) in enumerate(zip(out, metas)):
            if meta.writable:
                o.add_(100.0 * (j + 1))
        records.append(("after writing into the outputs of call", k, _arrays(*out, a, b, g, c)))
    _assert_compiled_once(jitted)
    return records


def _metas(program, outs, shapes, data, writable, loss: bool = False) -> list:
    inputs = [KILN.tensor(data[k][0] if k in "ab" else data[k]) for k in "abgc"]
    return run_program(program, outs, inputs, writable, loss)[1]


# ---- the gradient variant -----------------------------------------------------------------
GRAD_WRITABLE = (False,) * 4     # NOTE: in-place ops only on intermediates, as PyTorch allows
# NOTE: intermediates to write into from the first step: a * b saves a and b (leaves, never
# written), tanh(a * b) saves its output (a write into it must be refused), g * c
GRAD_PREFIX = (("binary", "mul", 0, 1), ("unary", "tanh", 4), ("binary", "mul", 2, 3))
AUTOGRAD_REFUSAL = "modified by an inplace operation"


def run_grad(lib: Lib, program, outs, shapes, seed: int, flags) -> list:
    """Two calls, each followed by `loss.backward()`: loss, outputs and the gradients of a,
    b and the captured global (which accumulates over the calls); or the autograd refusal."""
    global _MUT_GLOBAL
    b_grad, g_grad = flags
    data = _data(shapes, seed)
    g, c = lib.tensor(data["g"], g_grad), lib.tensor(data["c"])
    _MUT_GLOBAL = g
    fn = make_fn(GRAD_PREFIX + tuple(program), outs, c, GRAD_WRITABLE, loss=True)
    call, jitted = _calls(lib, fn)
    records = []
    for k in range(2):
        a, b = lib.tensor(data["a"][k], True), lib.tensor(data["b"][k], b_grad)
        try:
            out = call(a, b)
            if out[0].requires_grad:
                out[0].backward()
        except (RuntimeError, kiln.KilnError) as e:
            if AUTOGRAD_REFUSAL not in str(e):
                raise
            return records + [("error", k, str(e))]
        grads = [t.grad if t.grad is not None else t.detach() * 0.0 for t in (a, b, g)]
        records.append(("call", k, _arrays(*out, *grads, c)))
    _assert_compiled_once(jitted)
    return records


def check_grads(program, outs, shapes, seed, flags, with_jit: bool = True) -> None:
    eager = run_grad(KILN, program, outs, shapes, seed, flags)
    if with_jit:
        assert_same(run_grad(KILN_JIT, program, outs, shapes, seed, flags), eager,
                    RTOL_GRADS, "gradients: @kiln.jit vs eager Kiln")
    if TORCH is None:
        return
    want = run_grad(TORCH, program, outs, shapes, seed, flags)
    if want[-1][0] == "error" and eager[-1][0] != "error":
        # NOTE: Kiln may compute a gradient PyTorch refuses only when it is the true one: a
        # write that replaces a saved value whole cuts its history (frontend/inplace.py)
        want = run_grad(TORCH_SNAPSHOTS, program, outs, shapes, seed, flags)
        what = "gradients: eager Kiln (PyTorch refuses) vs PyTorch saving copies"
    else:
        what = "gradients: eager Kiln vs PyTorch"
    assert_same(eager, want, RTOL_GRADS, what)


def assert_same(got: list, want: list, rtol: float, what: str) -> None:
    """Records agree: same steps, same errors, values within rtol (relative to each array's
    largest magnitude, so that a sum which cancels to ~0 is held to the same precision)."""
    assert [r[:2] for r in got] == [r[:2] for r in want], (what, got, want)
    for g, w in zip(got, want):
        if g[0] == "error":
            continue
        assert len(g[2]) == len(w[2]), (what, g[:2])
        for i, (x, y) in enumerate(zip(g[2], w[2])):
            where = f"{what}: {g[0]} {g[1]}, array {i}"
            assert x.shape == y.shape, (where, x.shape, y.shape)
            scale = max(1.0, float(np.abs(y).max(initial=0.0)))
            np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * scale, err_msg=where)


def check_forward(program, outs, shapes, seed, with_jit: bool = True) -> None:
    eager = run_forward(KILN, program, outs, shapes, seed)
    if with_jit:
        assert_same(run_forward(KILN_JIT, program, outs, shapes, seed), eager, RTOL_VALUES,
                    "@kiln.jit vs eager Kiln")
    if TORCH is not None:
        assert_same(eager, run_forward(TORCH, program, outs, shapes, seed), RTOL_VALUES,
                    "eager Kiln vs PyTorch")


@settings(max_examples=60)
@given(PROGRAMS, OUTS, SHAPES, SEEDS)
def test_views_and_inplace_jit_matches_eager(program, outs, shapes, seed):
    """@kiln.jit (compiled, then cached) = eager Kiln (= PyTorch where installed)."""
    check_forward(program, outs, shapes, seed)


@settings(max_examples=150)
@given(PROGRAMS, OUTS, SHAPES, SEEDS)
def test_views_and_inplace_eager_matches_torch(program, outs, shapes, seed):
    if TORCH is None:
        pytest.skip(NEEDS_TORCH)
    check_forward(program, outs, shapes, seed, with_jit=False)


GRAD_FLAGS = st.tuples(st.booleans(), st.booleans())   # b, the captured global require grad


# NOTE: tanh(a * b) (slot 5, saved by tanh) scaled in place, then in the loss: refused
_REFUSED = ([("inplace", "mul_", 1, None, 0.5)], [5], ((2, 3), (3,), (2, 3), (3,)), 0,
            (False, False))


@settings(max_examples=50)
@given(GRAD_PROGRAMS, OUTS, SHAPES, SEEDS, GRAD_FLAGS)
@example(*_REFUSED)
def test_gradients_jit_matches_eager(program, outs, shapes, seed, flags):
    """loss.backward() after @kiln.jit = eagerly (= PyTorch where installed); where PyTorch
    refuses the backward (a saved value written in place), both Kiln runs refuse it too."""
    check_grads(program, outs, shapes, seed, flags)


@settings(max_examples=150)
@given(GRAD_PROGRAMS, OUTS, SHAPES, SEEDS, GRAD_FLAGS)
@example(*_REFUSED)
def test_gradients_eager_matches_torch(program, outs, shapes, seed, flags):
    if TORCH is None:
        pytest.skip(NEEDS_TORCH)
    check_grads(program, outs, shapes, seed, flags, with_jit=False)


# ---- the same properties, longer (`make test-slow`) ---------------------------------------
@pytest.mark.slow
@settings(max_examples=400)
@given(PROGRAMS, OUTS, SHAPES, SEEDS)
def test_views_and_inplace_jit_matches_eager_slow(program, outs, shapes, seed):
    check_forward(program, outs, shapes, seed)


@pytest.mark.slow
@settings(max_examples=300)
@given(GRAD_PROGRAMS, OUTS, SHAPES, SEEDS, GRAD_FLAGS)
def test_gradients_jit_matches_eager_slow(program, outs, shapes, seed, flags):
    check_grads(program, outs, shapes, seed, flags)


@pytest.mark.slow
@settings(max_examples=3000)
@given(PROGRAMS, OUTS, SHAPES, SEEDS)
def test_views_and_inplace_eager_matches_torch_slow(program, outs, shapes, seed):
    if TORCH is None:
        pytest.skip(NEEDS_TORCH)
    check_forward(program, outs, shapes, seed, with_jit=False)


@pytest.mark.slow
@settings(max_examples=3000)
@given(GRAD_PROGRAMS, OUTS, SHAPES, SEEDS, GRAD_FLAGS)
def test_gradients_eager_matches_torch_slow(program, outs, shapes, seed, flags):
    if TORCH is None:
        pytest.skip(NEEDS_TORCH)
    check_grads(program, outs, shapes, seed, flags, with_jit=False)
