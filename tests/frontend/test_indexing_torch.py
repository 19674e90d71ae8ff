"""Indexing against PyTorch: `x[index]` and `x[index] = v` for seeded mixes of ints, slices,
None, Ellipsis, lists, index tensors and masks (values, shapes, gradients), the index
functions (gather, scatter, index_select, ...), their errors, float64 finite differences and
@kiln.jit against eager."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import kiln
from kiln.frontend import indexing as I
from kiln.frontend.jit import KilnJitWarning

torch = pytest.importorskip("torch")

SHAPE = (3, 4, 5)


# ---- a seeded generator of index tuples --------------------------------------------------------
def _int_entry(rng, size, as_tensor):
    k = int(rng.integers(-size, size))
    return ("tensor0", k) if as_tensor else ("int", k)


def _entry(rng, size):
    """One index entry for a dim of `size`, as a description both libraries can build."""
    kind = rng.choice(["int", "slice", "list", "tensor", "tensor0", "mask"],
                      p=[0.15, 0.3, 0.15, 0.2, 0.05, 0.15])
    if kind in ("int", "tensor0"):
        return _int_entry(rng, size, kind == "tensor0")
    if kind == "slice":
        start, stop = sorted(int(v) for v in rng.integers(-size, size + 1, 2))
        return ("slice", (start, stop, int(rng.integers(1, 3))))
    if kind == "mask":
        return ("mask", rng.random(size) < 0.5)
    shape = [(2,), (1,), (2, 1), (3,)][int(rng.integers(4))]
    return (str(kind), rng.integers(-size, size, shape))


def _random_index(rng) -> list:
    entries = [_entry(rng, n) for n in SHAPE[:int(rng.integers(1, 4))]]
    # NOTE: tensor shapes (2,), (1,), (2, 1) broadcast; (3,) with (2,) does not: keep one kind
    if sum(1 for k, v in entries if k in ("list", "tensor") and v.shape == (3,)) and any(
            k in ("list", "tensor") and v.shape[-1:] == (2,) for k, v in entries):
        entries = [(k, v[..., :2] if k in ("list", "tensor") else v) for k, v in entries]
    at = int(rng.integers(0, len(entries) + 1))
    extra = [None, Ellipsis][int(rng.integers(2))] if rng.random() < 0.4 else "none"
    if extra is Ellipsis and len(entries) < len(SHAPE):
        at = len(entries)   # NOTE: the entries were drawn for the leading dims
    return entries[:at] + ([("special", extra)] if extra != "none" else []) + entries[at:]


def _build(entries, lib):
    out = []
    for kind, v in entries:
        if kind == "int":
            out.append(v)
        elif kind == "slice":
            out.append(slice(*v))
        elif kind == "special":
            out.append(v)
        elif kind == "list":
            out.append(v.tolist())
        elif kind == "tensor0":
            out.append(lib.tensor(v))
        else:   # tensor, mask
            out.append(lib.tensor(v) if lib is kiln else torch.from_numpy(np.array(v)))
    return tuple(out)


INDEXES = [_random_index(np.random.default_rng(seed)) for seed in range(120)]


def _pair(entries):
    return _build(entries, kiln), _build(entries, torch)


@pytest.mark.parametrize("entries", INDEXES, ids=[f"i{k}" for k in range(len(INDEXES))])
def test_getitem_and_setitem_match_pytorch(entries):
    a = np.arange(60, dtype=np.float64).reshape(SHAPE)
    ki, ti = _pair(entries)
    try:
        want = torch.from_numpy(a)[ti]
    except IndexError as e:
        with pytest.raises(IndexError, match=re.escape(str(e).split("\n")[0])):
            kiln.from_numpy(a)[ki]
        return
    got = kiln.from_numpy(a)[ki]
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    # NOTE: writes with values of the result's shape; distinct values catch misplaced dims
    v = np.random.default_rng(1).standard_normal(tuple(want.shape))
    tx, kx = torch.from_numpy(a.copy()), kiln.from_numpy(a.copy())
    tx[ti] = torch.from_numpy(v)
    kx[ki] = kiln.from_numpy(v)
    if not _has_duplicates(ti, a):
        np.testing.assert_array_equal(kx.numpy(), tx.numpy())


def _has_duplicates(ti, a) -> bool:
    """Whether the index names a position twice (then which write wins is unspecified)."""
    pos = torch.arange(a.size).reshape(a.shape)[ti].reshape(-1)
    return len(set(pos.tolist())) != pos.numel()


# ---- gradients against PyTorch --------------------------------------------------------------
def _grads(fn, *arrays, lib):
    if lib is kiln:
        xs = [kiln.from_numpy(a.copy()).requires_grad_() for a in arrays]
    else:
        xs = [torch.from_numpy(a.copy()).requires_grad_() for a in arrays]
    out = fn(lib, *xs)
    out.backward(_cotangent(out, lib))
    return out.detach().numpy(), [x.grad.numpy() for x in xs]


def _cotangent(out, lib):
    c = np.random.default_rng(7).standard_normal(tuple(out.shape))
    return kiln.from_numpy(c) if lib is kiln else torch.from_numpy(c)


def _setitem(index_fn, value_scale=1.0):
    def fn(lib, x, v):
        y = x * 1.0
        y[index_fn(lib)] = v * value_scale
        return y
    return fn


def _iadd_repeated(lib, x, v):
    y = x * 1.0
    idx = lib.tensor([0, 2])
    y[idx] += v
    return y


GRAD_CASES = {
    "embedding-style": (lambda lib, x: x[lib.tensor([[0, 3], [3, 3]])], [(4, 3)]),
    "tensor-pair": (lambda lib, x: x[lib.tensor([0, 2, 2]), :, lib.tensor([1, 1, 0])],
                    [(3, 4, 2)]),
    "int-and-list": (lambda lib, x: x[1, [0, 2, 0]], [(3, 4)]),
    "slice-then-tensor": (lambda lib, x: x[:, 1:, lib.tensor([2, 0])], [(2, 3, 4)]),
    "mask": (lambda lib, x: x[x > 0], [(3, 4)]),
    "mask-of-leading-dims": (lambda lib, x: x[lib.tensor([True, False, True])], [(3, 2)]),
    "setitem-tensor": (_setitem(lambda lib: lib.tensor([2, 0])), [(3, 4), (2, 4)]),
    "setitem-mask-broadcast": (_setitem(lambda lib: lib.tensor([True, False, True])),
                               [(3, 4), (4,)]),
    "setitem-slice": (_setitem(lambda lib: (slice(None), slice(1, 3))), [(3, 4), (3, 2)]),
    "setitem-separated": (_setitem(lambda lib: (lib.tensor([0, 1]), slice(None),
                                                lib.tensor([1, 0]))), [(2, 3, 2), (2, 3)]),
    "iadd": (_iadd_repeated, [(3, 4), (2, 4)]),
    "gather": (lambda lib, x: x.gather(1, lib.tensor([[0, 0, 2], [1, 0, 1]])), [(2, 3)]),
    "scatter": (lambda lib, x, s: x.scatter(0, lib.tensor([[1, 0, 2]]), s), [(3, 3), (1, 3)]),
    "scatter_add": (lambda lib, x, s: x.scatter_add(1, lib.tensor([[0, 0], [2, 2]]), s),
                    [(2, 3), (2, 2)]),
    "index_select": (lambda lib, x: x.index_select(1, lib.tensor([2, 0, 2])), [(2, 3)]),
    "index_add": (lambda lib, x, s: x.index_add(0, lib.tensor([1, 1]), s, alpha=2.0),
                  [(3, 2), (2, 2)]),
    "masked_select": (lambda lib, x: x.masked_select(lib.tensor([[True], [False]])),
                      [(2, 3)]),
    "take_along_dim": (lambda lib, x: x.take_along_dim(lib.tensor([[1], [0]]), 1),
                       [(2, 3)]),
    "take": (lambda lib, x: x.take(lib.tensor([[5, -1], [0, 5]])), [(2, 3)]),
    "index_put-accumulate": (lambda lib, x, v: x.index_put(
        (lib.tensor([0, 0, 1]),), v, accumulate=True), [(2, 3), (3, 3)]),
}


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_values_and_gradients_match_pytorch(name):
    fn, shapes = GRAD_CASES[name]
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s) for s in shapes]
    got, got_grads = _grads(fn, *arrays, lib=kiln)
    want, want_grads = _grads(fn, *arrays, lib=torch)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


def _numeric_grad(fn, arrays, i, cot, eps=1e-6):
    grad = np.zeros(arrays[i].shape)
    for pos in np.ndindex(arrays[i].shape):
        sums = []
        for sign in (1, -1):
            xs = [a.copy() for a in arrays]
            xs[i][pos] += sign * eps
            sums.append(float((fn(kiln, *map(kiln.from_numpy, xs)).numpy() * cot).sum()))
        grad[pos] = (sums[0] - sums[1]) / (2 * eps)
    return grad


FD_CASES = ["tensor-pair", "mask", "setitem-separated", "iadd", "scatter", "index_add",
            "index_put-accumulate"]


@pytest.mark.parametrize("name", FD_CASES)
def test_gradients_match_finite_differences_in_float64(name):
    fn, shapes = GRAD_CASES[name]
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(s) for s in shapes]
    out, grads = _grads(fn, *arrays, lib=kiln)
    cot = np.random.default_rng(7).standard_normal(out.shape)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, _numeric_grad(fn, arrays, i, cot), atol=1e-7)


def test_duplicate_writes_keep_the_last_value_and_give_it_the_gradient():
    # NOTE: PyTorch's values; its gradient gives every duplicate g (the overwritten value
    # changes nothing: finite differences, and Kiln, give it zero)
    x = kiln.zeros(4, dtype=kiln.float64)
    v = kiln.tensor([1.0, 2.0, 3.0], dtype=kiln.float64, requires_grad=True)
    y = x * 1.0
    y[kiln.tensor([1, 1, 2])] = v
    t = torch.zeros(4, dtype=torch.float64)
    t[torch.tensor([1, 1, 2])] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    np.testing.assert_array_equal(y.detach().numpy(), t.numpy())
    (y * kiln.tensor([1.0, 10.0, 100.0, 1000.0], dtype=kiln.float64)).sum().backward()
    assert v.grad.tolist() == [0.0, 10.0, 100.0]


# ---- functions without gradients ------------------------------------------------------------
def test_nonzero_unique_and_friends_match_pytorch():
    a = np.array([[0, 3, 1], [3, 0, 2]])
    x, t = kiln.tensor(a), torch.tensor(a)
    np.testing.assert_array_equal(x.nonzero().numpy(), t.nonzero().numpy())
    for g, w in zip(kiln.frontend.indexing.nonzero(x, as_tuple=True), t.nonzero(as_tuple=True)):
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    np.testing.assert_array_equal(x.argwhere().numpy(), torch.argwhere(t).numpy())
    z = kiln.tensor(5)
    assert tuple(z.nonzero().shape) == tuple(torch.tensor(5).nonzero().shape) == (1, 0)
    for kwargs in [{}, {"return_inverse": True}, {"return_counts": True},
                   {"return_inverse": True, "return_counts": True, "dim": 0},
                   {"return_counts": True, "dim": 1}]:
        got, want = x.unique(**kwargs), torch.unique(t, **kwargs)
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == kiln.int64
            np.testing.assert_array_equal(g.numpy(), w.numpy())
    f = kiln.tensor([2.5, -1.0, 2.5])
    assert f.unique().dtype == kiln.float32 and f.unique().tolist() == [-1.0, 2.5]


@pytest.mark.filterwarnings("ignore:The reduce argument of torch.scatter")
def test_in_place_variants_match_pytorch():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    k, t = kiln.from_numpy(a.copy()), torch.from_numpy(a.copy())
    ki, ti = kiln.tensor([[2, 0, 1, 1]]), torch.tensor([[2, 0, 1, 1]])
    k.scatter_(0, ki, -1.0)
    t.scatter_(0, ti, -1.0)
    k.scatter_add_(0, ki, kiln.ones(1, 4))
    t.scatter_add_(0, ti, torch.ones(1, 4))
    k.scatter_(1, kiln.tensor([[0], [3]]), kiln.full((2, 1), 7.0), reduce="add")
    t.scatter_(1, torch.tensor([[0], [3]]), torch.full((2, 1), 7.0), reduce="add")
    k.index_add_(1, kiln.tensor([0, 0]), kiln.ones(3, 2))
    t.index_add_(1, torch.tensor([0, 0]), torch.ones(3, 2))
    k.index_put_((kiln.tensor([0, 2]), kiln.tensor([1, 1])), kiln.tensor(9.0))
    t.index_put_((torch.tensor([0, 2]), torch.tensor([1, 1])), torch.tensor(9.0))
    np.testing.assert_array_equal(k.numpy(), t.numpy())


# ---- errors ---------------------------------------------------------------------------------
ERRORS = {
    "int out of range": lambda lib, x: x[3],
    "negative int out of range": lambda lib, x: x[:, -5],
    "list out of range": lambda lib, x: x[[0, 5]],
    "second tensor out of range": lambda lib, x: x[lib.tensor([0]), lib.tensor([9])],
    "too many indices": lambda lib, x: x[0, 0, 0],
    "float index tensor": lambda lib, x: x[lib.tensor([1.0])],
    "float index": lambda lib, x: x[1.5],
    "mask shape": lambda lib, x: x[:, lib.tensor([True, False])],
    "not broadcastable": lambda lib, x: x[[0, 1], [0, 1, 2]],
    "index_select range": lambda lib, x: x.index_select(0, lib.tensor([3])),
    "index_select negative": lambda lib, x: x.index_select(0, lib.tensor([-1])),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_are_pytorchs(name):
    fn = ERRORS[name]
    with pytest.raises(Exception) as want:
        fn(torch, torch.zeros(3, 4))
    with pytest.raises(type(want.value)) as got:
        fn(kiln, kiln.zeros(3, 4))
    assert str(want.value).split("\n")[0] in str(got.value)
    assert "test_indexing_torch.py" in str(got.value)     # NOTE: the user's line


def test_a_value_of_the_wrong_shape_is_refused_with_both_shapes():
    with pytest.raises(ValueError, match=r"value tensor of shape \[3, 3\] cannot be broadcast "
                       r"to indexing result of shape \[2, 3\]"):
        y = kiln.zeros(2, 3)
        y[[0, 1]] = kiln.ones(3, 3)


# ---- @kiln.jit against eager ----------------------------------------------------------------
def _program(x, idx, mask):
    y = x * 2.0
    y[idx] = x[idx, 1:2] + 1.0            # a broadcast value, an advanced write
    y[mask] = 0.0                         # where: no break
    y[:, 1:3] += 1.0
    picked = y.gather(1, idx[:, None]) + y.index_select(1, idx).sum()
    return picked + y[idx, idx].reshape(-1, 1)


def test_jit_matches_eager_and_pytorch():
    rng = np.random.default_rng(11)
    a, i, m = rng.standard_normal((4, 4)), np.array([3, 0, 3]), rng.random((4, 4)) < 0.3
    x, idx, mask = kiln.from_numpy(a), kiln.tensor(i), kiln.from_numpy(m)
    jf = kiln.jit(_program)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KilnJitWarning)
        got = jf(x, idx, mask)
    want = _program(torch.from_numpy(a), torch.from_numpy(i), torch.from_numpy(m))
    np.testing.assert_allclose(got.numpy(), _program(x, idx, mask).numpy(), rtol=1e-12)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)


def test_masked_read_under_jit_is_a_graph_break_with_right_results():
    def f(x):
        return (x[x > 0] * 3.0).sum() + x[kiln.tensor([True, False, True])].sum()
    jf = kiln.jit(f)
    for seed in range(3):
        a = np.random.default_rng(seed).standard_normal((3, 2))
        t = torch.from_numpy(a)
        want = (t[t > 0] * 3.0).sum() + t[torch.tensor([True, False, True])].sum()
        np.testing.assert_allclose(jf(kiln.from_numpy(a)).item(), want.item(), rtol=1e-12)
    text = str(kiln.explain(f, kiln.ones(3, 2)))
    # NOTE: both masks are read (the literal one is a graph constant): three graphs
    assert "3 graph(s)" in text and "boolean mask indexing" in text


def test_index_functions_are_tensor_methods():
    x = kiln.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert x.gather(1, kiln.tensor([[1], [0]])).tolist() == I.gather(
        x, 1, kiln.tensor([[1], [0]])).tolist() == [[2.0], [3.0]]
    assert x.take_along_dim(kiln.tensor([[1], [0]]), dim=1).tolist() == [[2.0], [3.0]]
