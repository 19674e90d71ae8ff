"""The tensor ops of issue 9 against PyTorch: values, dtypes and gradients (float64), plus
PyTorch's error types. Kiln functions are called from their modules (the `kiln.X` exports are
listed in the report of the change that added them)."""
import math

import numpy as np
import pytest

import kiln
from kiln.frontend import composite as C
from kiln.frontend import functional as F
from kiln.frontend import reductions as R

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(9)
X = RNG.standard_normal((3, 4))
SQUARE = RNG.standard_normal((4, 4))


def _pair(a: np.ndarray, grad: bool = False):
    k = kiln.from_numpy(a.copy())
    t = torch.from_numpy(a.copy())
    if grad:
        k.requires_grad_()
        t.requires_grad_()
    return k, t


def _same(k, t, rtol=1e-7, atol=1e-12):
    if isinstance(t, (tuple, list)):
        assert len(k) == len(t)
        for a, b in zip(k, t):
            _same(a, b, rtol, atol)
        return
    got = k.detach().numpy()
    want = t.detach().numpy()
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _check_grad(kfn, tfn, *arrays):
    """Values and the gradients of sum(out * w) for every float64 input."""
    ks, ts = zip(*[_pair(a, grad=True) for a in arrays])
    kout, tout = kfn(*ks), tfn(*ts)
    _same(kout, tout)
    w = RNG.standard_normal(tuple(tout.shape))
    (kout * kiln.from_numpy(w)).sum().backward()
    (tout * torch.from_numpy(w)).sum().backward()
    for k, t in zip(ks, ts):
        _same(k.grad, t.grad, rtol=1e-6, atol=1e-10)


# ---- elementwise --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sin", "cos", "log1p", "expm1"])
def test_unary_math_values_and_gradients(name):
    x = np.abs(X) if name == "log1p" else X
    _check_grad(getattr(F, name), getattr(torch, name), x)
    small = np.array([1e-10, -1e-12, 3e-8], np.float32)   # where log(1+x), exp(x)-1 fail
    k, t = _pair(small)
    _same(getattr(F, name)(k), getattr(torch, name)(t), rtol=1e-6)


def test_unary_math_of_integers_is_float32():
    k, t = _pair(np.array([0, 1, 2]))
    _same(F.sin(k), torch.sin(t), rtol=1e-6)


A_INT = np.array([7, -7, 7, -7, 0, 5, -1, 9])
B_INT = np.array([2, 2, -2, -2, 3, -5, 4, -4])


@pytest.mark.parametrize("op", ["__floordiv__", "__mod__"])
def test_floor_divide_and_remainder_follow_pythons_signs(op):
    (ka, ta), (kb, tb) = _pair(A_INT), _pair(B_INT)
    _same(getattr(ka, op)(kb), getattr(ta, op)(tb))
    _same(getattr(ka, op)(3), getattr(ta, op)(3))
    _same(getattr(ka, op)(2.5), getattr(ta, op)(2.5))
    rop = op.replace("__", "__r", 1)
    _same(getattr(kb, rop)(10), getattr(tb, rop)(10))
    fa = np.array([5.5, -5.5, 5.5, -5.5, 0.0, 1.0, 7.0, -0.0])
    fb = np.array([2.0, 2.0, -2.0, -2.0, -3.0, 0.1, 0.0, 2.0])
    (ka, ta), (kb, tb) = _pair(fa), _pair(fb)
    with np.errstate(all="ignore"):
        _same(getattr(ka, op)(kb), getattr(ta, op)(tb))


def test_integer_division_by_zero_raises_like_pytorch():
    k, t = _pair(A_INT)
    for fn in (lambda a: a // 0, lambda a: a % (a - a)):
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            fn(t)
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            fn(k)


def test_remainder_gradient_matches_pytorch():
    a = np.array([5.5, -5.3, 2.2, -7.1])
    b = np.array([2.0, 1.5, -0.7, -2.5])
    _check_grad(lambda x, y: x % y, lambda x, y: x % y, a, b)


def test_inplace_floor_divide_and_mod():
    k, t = _pair(A_INT)
    k //= 2
    t //= 2
    _same(k, t)
    k %= 3
    t %= 3
    _same(k, t)


@pytest.mark.parametrize("op", ["__and__", "__or__", "__xor__"])
def test_bitwise_operators_on_ints_and_bools(op):
    (ka, ta), (kb, tb) = _pair(A_INT), _pair(B_INT)
    _same(getattr(ka, op)(kb), getattr(ta, op)(tb))
    _same(getattr(ka, op)(6), getattr(ta, op)(6))
    (ka, ta), (kb, tb) = _pair(A_INT > 0), _pair(B_INT > 0)
    _same(getattr(ka, op)(kb), getattr(ta, op)(tb))


def test_invert_and_logical_ops():
    k, t = _pair(A_INT)
    _same(~k, ~t)
    kb, tb = _pair(A_INT > 0)
    _same(~kb, ~tb)
    kf, tf = _pair(np.array([0.0, 1.5, -2.0, 0.0]))
    for name in ("logical_and", "logical_or", "logical_xor"):
        _same(getattr(F, name)(kf, kb[:4]), getattr(torch, name)(tf, tb[:4]))
    _same(F.logical_not(kf), torch.logical_not(tf))


def test_bitwise_ops_refuse_floats():
    k = kiln.tensor([1.0])
    with pytest.raises(TypeError, match="bitwise_and"):
        k & 1


def test_integer_power_is_int64_like_pytorch():
    k, t = _pair(np.array([1, 2, 3, -2]))
    _same(2 ** k, 2 ** t)
    _same(k ** 2, t ** 2)
    _same(k ** 2.5, t ** 2.5, rtol=1e-6)
    _same(2.5 ** k, 2.5 ** t, rtol=1e-6)
    _same(F.pow(k, kiln.tensor([-1, -2, 0, -3])), torch.pow(t, torch.tensor([-1, -2, 0, -3])))
    with pytest.raises(RuntimeError, match="negative integer powers"):
        k ** -1


def test_clamp_with_tensor_bounds_and_clamp_min_max():
    lo, hi = X[0] - 0.5, X[1] + 0.5
    _check_grad(lambda x, a, b: F.clamp(x, a, b), lambda x, a, b: torch.clamp(x, a, b),
                X, np.minimum(lo, hi - 1), np.maximum(hi, lo + 1))
    k, t = _pair(X)
    _same(k.clamp_min(0.1), t.clamp_min(0.1))
    _same(k.clamp_max(0.1), t.clamp_max(0.1))


def test_type_and_as_tensor():
    k, t = _pair(A_INT)
    assert k.type() == "kiln.LongTensor" and t.type() == "torch.LongTensor"
    _same(k.type(kiln.float64), t.type(torch.float64))
    same = F.as_tensor(k)
    assert same is k
    _same(F.as_tensor([1, 2], dtype=kiln.float32), torch.as_tensor([1, 2],
                                                                    dtype=torch.float32))


# ---- reductions and scans -----------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"dim": 1}, {"dim": 0, "keepdim": True},
                                    {"dim": (0, 1), "unbiased": False},
                                    {"dim": 1, "correction": 2}])
@pytest.mark.parametrize("name", ["std", "var"])
def test_std_var(name, kwargs):
    _check_grad(lambda x: getattr(x, name)(**kwargs), lambda x: getattr(x, name)(**kwargs), X)


@pytest.mark.parametrize("name", ["any", "all"])
def test_any_all(name):
    a = np.array([[0, 1, 2], [0, 0, 0]])
    k, t = _pair(a)
    _same(getattr(k, name)(), getattr(t, name)())
    _same(getattr(k, name)(1), getattr(t, name)(1))
    _same(getattr(k, name)(0, keepdim=True), getattr(t, name)(0, keepdim=True))
    k, t = _pair(np.zeros((0, 3)))
    _same(getattr(k, name)(), getattr(t, name)())


@pytest.mark.parametrize("p,dim", [(2, None), ("fro", None), (1, 1), (math.inf, 0),
                                   (-math.inf, 1), (3, 1), (0, None)])
def test_norm(p, dim):
    if p == 0:
        k, t = _pair(np.where(X > 0, X, 0.0))
        _same(k.norm(p, dim), t.norm(p, dim))
        return
    _check_grad(lambda x: x.norm(p, dim), lambda x: x.norm(p, dim), X)


def test_logsumexp():
    big = X * 300
    _check_grad(lambda x: R.logsumexp(x, 1), lambda x: torch.logsumexp(x, 1), big)
    k, t = _pair(np.full((2, 3), -np.inf))
    _same(R.logsumexp(k, 1, keepdim=True), torch.logsumexp(t, 1, keepdim=True))


@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
def test_scans(name):
    with_zeros = X.copy()
    with_zeros[0, 1] = with_zeros[2, 2] = with_zeros[2, 3] = 0.0
    for dim in (0, 1, -1):
        _check_grad(lambda x: getattr(x, name)(dim), lambda x: getattr(x, name)(dim),
                    with_zeros)
    k, t = _pair(np.array([[True, False, True]]))
    _same(getattr(k, name)(1), getattr(t, name)(1))
    k, t = _pair(np.array([1, 2, 3], np.int32))
    _same(getattr(k, name)(0), getattr(t, name)(0))


def test_sort_argsort_topk():
    x = np.array([[3.0, 1.0, 3.0, 2.0, -1.0], [0.5, 0.5, np.nan, -2.0, 0.5]])
    k, t = _pair(x)
    for desc in (False, True):
        _same(k.sort(dim=1, descending=desc, stable=True),
              t.sort(dim=1, descending=desc, stable=True))
        _same(k.argsort(0, descending=desc), t.argsort(dim=0, descending=desc, stable=True))
    ints = np.array([4, 1, 4, 2, 1, 0])
    k, t = _pair(ints)
    _same(k.sort(descending=True), t.sort(descending=True, stable=True))
    _same(k.topk(3), t.topk(3))
    _same(k.topk(2, largest=False), t.topk(2, largest=False))


def test_sort_and_topk_gradients():
    _check_grad(lambda x: x.sort(1, descending=True).values,
                lambda x: x.sort(1, descending=True).values, X)
    _check_grad(lambda x: x.topk(2, dim=0).values, lambda x: x.topk(2, dim=0).values, X)
    with pytest.raises(ValueError, match="out of range"):
        kiln.tensor([1.0, 2.0]).topk(3)


# ---- shape ops ----------------------------------------------------------------------------
@pytest.mark.parametrize("diagonal", [0, 1, -1, 5])
def test_tril_triu(diagonal):
    _check_grad(lambda x: C.tril(x, diagonal), lambda x: torch.tril(x, diagonal), X)
    _check_grad(lambda x: x.triu(diagonal), lambda x: x.triu(diagonal), X)


def test_flip_roll_repeat_interleave():
    _check_grad(lambda x: x.flip(0), lambda x: x.flip(0), X)
    _check_grad(lambda x: x.flip((0, 1)), lambda x: x.flip((0, 1)), X)
    _check_grad(lambda x: x.roll(1, 0), lambda x: x.roll(1, 0), X)
    _check_grad(lambda x: x.roll((-1, 6), (0, 1)), lambda x: x.roll((-1, 6), (0, 1)), X)
    _check_grad(lambda x: x.roll(5), lambda x: x.roll(5), X)
    _check_grad(lambda x: x.repeat(2, 1, 3), lambda x: x.repeat(2, 1, 3), X)
    _check_grad(lambda x: x.repeat_interleave(2, 1), lambda x: x.repeat_interleave(2, 1), X)
    _check_grad(lambda x: x.repeat_interleave(3), lambda x: x.repeat_interleave(3), X)


@pytest.mark.parametrize("args", [(2,), (2, 1), (3, 1), (5, 0)])
def test_chunk(args):
    k, t = _pair(X)
    _same(k.chunk(*args), t.chunk(*args))


@pytest.mark.parametrize("args", [(2,), (3, 1), ([1, 2], 0), ([2, 0, 2], 1)])
def test_split(args):
    k, t = _pair(X)
    _same(k.split(*args), t.split(*args))
    with pytest.raises(ValueError, match="sum exactly"):
        k.split([1, 1], 0)


@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid(indexing):
    (ka, ta), (kb, tb), (kc, tc) = _pair(X[0]), _pair(X[1, :3]), _pair(X[2, :2])
    _same(C.meshgrid(ka, kb, indexing=indexing), torch.meshgrid(ta, tb, indexing=indexing))
    _same(C.meshgrid(ka, kb, kc, indexing=indexing),
          torch.meshgrid(ta, tb, tc, indexing=indexing))


def test_outer_and_bmm():
    _check_grad(C.outer, torch.outer, X[0], X[1])
    a, b = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((2, 4, 5))
    _check_grad(C.bmm, torch.bmm, a, b)
    with pytest.raises(ValueError, match="3D"):
        C.bmm(kiln.from_numpy(X), kiln.from_numpy(X))


@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ii->", [(4, 4)]), ("ii->i", [(4, 4)]), ("ij->ji", [(3, 4)]), ("i,j->ij", [(3,), (4,)]),
    ("ij,ij->", [(3, 4), (3, 4)]), ("ij,kj->ik", [(3, 4), (5, 4)]), ("ij->j", [(3, 4)]),
    ("ij,jk", [(3, 4), (4, 2)]), ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("i,i->", [(4,), (4,)]),
    ("iij->j", [(3, 3, 2)])])
def test_einsum(equation, shapes):
    arrays = [RNG.standard_normal(s) for s in shapes]
    _check_grad(lambda *xs: C.einsum(equation, *xs),
                lambda *xs: torch.einsum(equation, *xs), *arrays)


def test_einsum_errors():
    x = kiln.from_numpy(X)
    with pytest.raises(NotImplementedError, match="ellipsis"):
        C.einsum("...ij->...ji", x)
    with pytest.raises(ValueError, match="labels"):
        C.einsum("ijk->i", x)
    with pytest.raises(ValueError, match="label 'j'"):
        C.einsum("ij,jk->ik", x, x)


@pytest.mark.parametrize("args", [(0, 1, 5), (-3.5, 10, 7), (2, -2, 1), (0, 1, 0),
                                  (0.1, 0.9, 100)])
def test_linspace(args):
    _same(C.linspace(*args), torch.linspace(*args), rtol=0, atol=0)
    # NOTE: PyTorch's float64 kernel fuses start + step * i into one fma (1 ulp apart)
    _same(C.linspace(*args, dtype=kiln.float64), torch.linspace(*args, dtype=torch.float64),
          rtol=3e-16, atol=0)
