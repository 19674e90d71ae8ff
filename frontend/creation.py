"""Tensor factories (`kiln.tensor`, `zeros`, `randn`, ...) and the global random seed."""
from __future__ import annotations

import numpy as np

from kiln.ir import dtypes
from kiln.ir.errors import KilnError
from kiln.ir.types import TensorType, user_loc
from kiln.ir.registry import apply

from .functional import SOURCE, full as _full_op
from .tensor import Tensor, device as _device
from .trace import current_trace
from .torch_rng import default_generator, fill, impl_of

_CONSTANT_LIMIT = 64   # NOTE: larger literals inside a trace are captured as inputs instead


def _shape_arg(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _finish(t: Tensor, requires_grad: bool, device=None) -> Tensor:
    """A factory's result: made on the CPU, moved to `device` (as a leaf), then marked."""
    if t._trace is not None:
        # NOTE: made inside a trace: on its device, or the function runs eagerly
        trace = t._trace
        if trace.require_device("cpu" if device is None else _device(device).type,
                                "a tensor made", scalar=t.ndim == 0):
            trace.host.add(t._data)
    elif device is not None:
        t = t.to(device)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _default_dtype(arr: np.ndarray):
    if arr.dtype.kind == "f":
        return dtypes.DEFAULT_FLOAT
    if arr.dtype.kind in "iu":
        return dtypes.DEFAULT_INT
    if arr.dtype.kind == "b":
        return dtypes.bool_
    raise KilnError(f"kiln.tensor: cannot make a tensor from data of NumPy dtype {arr.dtype}")


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor from Python data or a NumPy array (floats default to float32).

    >>> import kiln
    >>> kiln.tensor([[1, 2], [3, 4]]).shape
    kiln.Size([2, 2])
    """
    if isinstance(data, Tensor):
        if device is None and data._trace is None:
            device = data.device        # NOTE: a copy where the data is, as PyTorch's
        data = data.detach().cpu().numpy()
    if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in data):
        data = [x.item() if isinstance(x, Tensor) else x for x in data]
    arr = np.asarray(data)
    dt = dtypes.as_dtype(dtype) if dtype is not None else (
        dtypes.from_numpy(arr.dtype) if isinstance(data, np.ndarray) and arr.dtype.kind != "u"
        else _default_dtype(arr))
    arr = np.require(arr.astype(dt.np), requirements="C")
    trace = current_trace()
    if trace is not None and arr.size <= _CONSTANT_LIMIT:
        t = apply("constant", [], {"data": arr.tolist(), "shape": arr.shape, "dtype": dt},
                  like=SOURCE)
        return _finish(t, requires_grad, device)
    return _finish(Tensor._wrap(arr), requires_grad, device)


def from_numpy(arr: np.ndarray) -> Tensor:
    """Wrap a NumPy array (bool, int32, int64, float32, float64)."""
    dtypes.from_numpy(arr.dtype)
    return Tensor._wrap(np.require(arr, requirements="C"))


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if dtype is None:
        dtype = dtypes.result_dtype([dtypes.bool_], [fill_value])
    t = _full_op(_shape_arg((size,)),
                 fill_value, dtypes.as_dtype(dtype))
    return _finish(t, requires_grad, device)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_shape_arg(size), 0, dtype or dtypes.DEFAULT_FLOAT, device=device,
                requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_shape_arg(size), 1, dtype or dtypes.DEFAULT_FLOAT, device=device,
                requires_grad=requires_grad)


def _device_of(x: Tensor, device):
    return device if device is not None else x.device


def zeros_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(tuple(x.shape), dtype=dtype or x.dtype, device=_device_of(x, device),
                 requires_grad=requires_grad)


def ones_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(tuple(x.shape), dtype=dtype or x.dtype, device=_device_of(x, device),
                requires_grad=requires_grad)


def full_like(x: Tensor, fill_value, dtype=None, device=None) -> Tensor:
    return full(tuple(x.shape), fill_value, dtype=dtype or x.dtype,
                device=_device_of(x, device))


def arange(start, end=None, step=1, dtype=None, device=None,
           requires_grad: bool = False) -> Tensor:
    """`arange(5)`, `arange(1, 4)`, `arange(0, 1, 0.25)` like PyTorch."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = dtypes.result_dtype([dtypes.bool_], [start, end, step])
    t = apply("arange", [], {"start": start, "stop": end, "step": step,
                             "dtype": dtypes.as_dtype(dtype)}, like=SOURCE)
    return _finish(t, requires_grad, device)


# ---- random ---------------------------------------------------------------------------------
# NOTE: every random function draws from PyTorch's CPU generator (frontend/torch_rng.py) with
# PyTorch's rules, so after `kiln.manual_seed(s)` the numbers are `torch.manual_seed(s)`'s.
# Inside @kiln.jit a random tensor is a graph input drawn at every call, in program order,
# exactly as eager mode draws it: jitted and eager code give the same numbers.

class RandomArgumentError(KilnError, RuntimeError):
    """A random function's argument PyTorch refuses (a RuntimeError, as PyTorch's)."""


def manual_seed(seed):
    """Seed the default generator: Kiln's random functions then give the numbers PyTorch's
    CPU functions give after `torch.manual_seed(seed)`. Returns the default generator.

    >>> import kiln
    >>> _ = kiln.manual_seed(0)
    >>> kiln.rand(2).tolist()              # torch.manual_seed(0); torch.rand(2)
    [0.49625658988952637, 0.7682217955589294]
    """
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the default generator from the operating system's randomness; returns the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    """The seed the default generator started from."""
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    """The default generator's state (PyTorch's 5056 bytes, as an int64 tensor of 0..255).

    >>> state = get_rng_state()
    >>> a = randn(3)
    >>> set_rng_state(state)
    >>> bool((randn(3) == a).all())
    True
    """
    return default_generator.get_state()


def set_rng_state(new_state) -> None:
    """Restore a state from `get_rng_state()` (or PyTorch's `torch.get_rng_state()`)."""
    default_generator.set_state(new_state)


def _size_arg(size, keyword) -> tuple[int, ...]:
    if keyword is not None:
        if size:
            raise TypeError("random functions take the size either as arguments or as size=")
        size = (keyword,)
    return _shape_arg(size)


def _float_dtype(dtype, what: str):
    dt = dtypes.as_dtype(dtype or dtypes.DEFAULT_FLOAT)
    if not dt.is_float:
        raise RandomArgumentError(f"{what}: dtype must be floating point, got {dt}",
                                  loc=user_loc())
    return dt


def _random_tensor(shape, dt, device, requires_grad: bool, draw) -> Tensor:
    """A tensor of `shape` and dtype `dt` whose values `draw()` makes (a NumPy array): drawn
    now, or, inside @kiln.jit, a graph input drawn at every call at this point of the
    program. CUDA tensors are drawn on the host and uploaded (not PyTorch's CUDA numbers)."""
    def values() -> np.ndarray:
        return np.require(np.asarray(draw()).reshape(shape), dt.np, "C")
    trace = current_trace()
    if trace is None:
        return _finish(Tensor._wrap(values()), requires_grad, device)
    where = "cpu" if device is None else _device(device).type
    host = trace.require_device(where, "a random tensor made", scalar=len(shape) == 0)
    if where == "cuda":
        from kiln.runtime.cuda.device import cuda_device
        value = trace.random_input(lambda: cuda_device().from_host(values()),
                                   TensorType(dt, shape), "rand")
    else:
        value = trace.random_input(values, TensorType(dt, shape), "rand")
    if host:
        trace.host.add(value)
    t = Tensor._wrap(value, trace)
    return t.requires_grad_(True) if requires_grad else t


def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False,
         **kw) -> Tensor:
    """Uniform numbers in [0, 1), PyTorch's for the same seed.

    >>> import kiln
    >>> _ = kiln.manual_seed(0)
    >>> kiln.rand(2, 3).shape
    kiln.Size([2, 3])
    """
    shape, dt = _size_arg(size, kw.pop("size", None)), _float_dtype(dtype, "rand")
    gen = impl_of(generator)
    return _random_tensor(shape, dt, device, requires_grad,
                          lambda: gen.uniform(_numel(shape), dt.np))


def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False,
          **kw) -> Tensor:
    """Standard normal numbers, PyTorch's for the same seed (`kiln.manual_seed`)."""
    shape, dt = _size_arg(size, kw.pop("size", None)), _float_dtype(dtype, "randn")
    gen = impl_of(generator)
    return _random_tensor(shape, dt, device, requires_grad,
                          lambda: gen.normal(_numel(shape), dt.np))


def _numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def randint(*args, generator=None, dtype=None, device=None, requires_grad: bool = False,
            **kw) -> Tensor:
    """Integers in [low, high): `randint(high, size)` or `randint(low, high, size)`.

    >>> _ = manual_seed(0)
    >>> randint(0, 10, (5,)).tolist()   # torch.randint(0, 10, (5,)) after seed 0
    [4, 9, 3, 0, 3]
    """
    low, high, size = _randint_args(args, kw)
    dt = dtypes.as_dtype(dtype or dtypes.int64)
    _check_range(low, high, dt, "randint")
    gen, shape = impl_of(generator), _shape_arg((size,))
    return _random_tensor(shape, dt, device, requires_grad,
                          lambda: gen.random_range(_numel(shape), dt.np, low, high))


def _randint_args(args, kw):
    names = ("low", "high", "size")
    given = dict(zip(names[3 - len(args):] if len(args) < 3 else names, args))
    for key in names:
        if key in kw:
            given[key] = kw.pop(key)
    if kw:
        raise TypeError(f"randint() got an unexpected keyword argument '{next(iter(kw))}'")
    if "high" not in given or "size" not in given:
        raise TypeError("randint() needs high and size: randint(high, size) or "
                        "randint(low, high, size)")
    return int(given.get("low", 0)), int(given["high"]), given["size"]


def _check_range(low: int, high: int, dt, what: str) -> None:
    if low >= high:
        raise RandomArgumentError(f"{what}: random_ expects 'from' to be less than 'to', but "
                                  f"got from={low} >= to={high}", loc=user_loc())
    if dt.is_float:
        return
    lo, hi = (0, 1) if dt == dtypes.bool_ else (np.iinfo(dt.np).min, np.iinfo(dt.np).max)
    if low < lo or high - 1 > hi:
        raise RandomArgumentError(f"{what}: [from, to) = [{low}, {high}) does not fit "
                                  f"{dt}, whose range is [{lo}, {hi}]", loc=user_loc())


def randperm(n: int, *, generator=None, dtype=None, device=None,
             requires_grad: bool = False) -> Tensor:
    """A random permutation of 0..n-1, PyTorch's for the same seed.

    >>> _ = manual_seed(0)
    >>> randperm(5).tolist()
    [4, 0, 1, 3, 2]
    """
    n = int(n)
    if n < 0:
        raise RandomArgumentError(f"randperm: n must be non-negative, got {n}", loc=user_loc())
    gen, dt = impl_of(generator), dtypes.as_dtype(dtype or dtypes.int64)
    return _random_tensor((n,), dt, device, requires_grad, lambda: gen.randperm(n))


def randn_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return randn(tuple(x.shape), dtype=dtype or x.dtype, device=_device_of(x, device),
                 requires_grad=requires_grad)


def rand_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return rand(tuple(x.shape), dtype=dtype or x.dtype, device=_device_of(x, device),
                requires_grad=requires_grad)


def randint_like(x: Tensor, low: int = 0, high: int | None = None, *, dtype=None,
                 device=None, requires_grad: bool = False) -> Tensor:
    """`randint_like(x, high)` or `randint_like(x, low, high)`: x's shape and dtype."""
    if high is None:
        low, high = 0, low
    return randint(low, high, tuple(x.shape), dtype=dtype or x.dtype,
                   device=_device_of(x, device), requires_grad=requires_grad)


def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, device=None,
           requires_grad: bool = False) -> Tensor:
    """Normal numbers: `normal(mean, std, size)` with numbers, or tensors `mean` and/or
    `std` (broadcast; PyTorch's order: standard normals * std + mean)."""
    if not isinstance(mean, Tensor) and not isinstance(std, Tensor):
        if size is None:
            raise TypeError("normal() with a number mean and std needs a size")
        shape, dt = _shape_arg((size,)), _float_dtype(dtype, "normal")
        gen = impl_of(generator)
        _check_std(std)
        return _random_tensor(shape, dt, device, requires_grad,
                              lambda: gen.normal(_numel(shape), dt.np, mean, std))
    like = mean if isinstance(mean, Tensor) else std
    shape = np.broadcast_shapes(tuple(getattr(mean, "shape", ())),
                                tuple(getattr(std, "shape", ())))
    if isinstance(std, Tensor):
        out = randn(tuple(shape), generator=generator, dtype=like.dtype, device=like.device)
        return out * std + mean
    _check_std(std)
    return normal(0.0, std, tuple(shape), generator=generator, dtype=like.dtype,
                  device=like.device) + mean


def _check_std(std) -> None:
    if not std >= 0.0:
        raise RandomArgumentError(f"normal expects std >= 0.0, but found std {std}",
                                  loc=user_loc())


def bernoulli(input: Tensor, p=None, *, generator=None) -> Tensor:
    """0/1 draws: with probability `input` (per element), or `p` when given; input's dtype."""
    out = zeros(tuple(input.shape), dtype=input.dtype, device=input.device)
    return bernoulli_(out, input if p is None else p, generator=generator)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator=None) -> Tensor:
    """Indices drawn from the rows of `input` (weights, not necessarily summing to one),
    PyTorch's for the same seed: int64, shape [num_samples] or [rows, num_samples].

    >>> _ = manual_seed(0)
    >>> multinomial(tensor([0.0, 1.0, 3.0]), 4, replacement=True).tolist()
    [2, 2, 2, 2]
    """
    probs = _multinomial_probs(input, int(num_samples), replacement)
    gen = impl_of(generator)
    shape = (num_samples,) if input.ndim == 1 else (input.shape[0], num_samples)
    return _random_tensor(shape, dtypes.int64, input.device, False,
                          lambda: gen.multinomial(probs, int(num_samples), replacement))


def _multinomial_probs(input: Tensor, k: int, replacement: bool) -> np.ndarray:
    if input.ndim not in (1, 2) or not input.dtype.is_float:
        raise RandomArgumentError(f"multinomial: prob_dist must be a 1 or 2 dim float tensor, "
                                  f"got {input.dtype}{list(input.shape)}", loc=user_loc())
    if k <= 0:
        raise RandomArgumentError(f"multinomial: cannot sample n_sample <= 0 samples (got {k})",
                                  loc=user_loc())
    if not replacement and k > input.shape[-1]:
        raise RandomArgumentError(f"multinomial: cannot sample n_sample > prob_dist.size(-1) "
                                  f"samples without replacement ({k} > {input.shape[-1]})",
                                  loc=user_loc())
    if input._trace is not None:
        raise KilnError("not supported yet: multinomial on a tensor computed inside "
                        "@kiln.jit (its probabilities must be known when it draws)",
                        loc=user_loc())
    probs = np.atleast_2d(input.detach().cpu().numpy())
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise RandomArgumentError("multinomial: probability tensor contains either `inf`, "
                                  "`nan` or element < 0", loc=user_loc())
    if np.any(probs.sum(axis=-1) <= 0):
        raise RandomArgumentError("multinomial: invalid multinomial distribution (sum of "
                                  "probabilities <= 0)", loc=user_loc())
    return probs


# ---- in-place random fills (Tensor.uniform_, normal_, ...) ----------------------------------
def _fill_(x: Tensor, draw, dt=None) -> Tensor:
    """Write draws into x in the order PyTorch's TensorIterator visits x's memory;
    `draw(gen_n, contiguous)` -> flat values."""
    from .inplace import rebind
    shape, strides = tuple(x.shape), x._elem_strides()
    dense = strides == _contiguous_strides(shape)
    n = _numel(shape)
    t = _random_tensor(shape, dt or x.dtype, x.device, False,
                       lambda: fill(draw(n, dense), shape, None if dense else strides))
    return rebind(x, t)


def _contiguous_strides(shape) -> tuple:
    out, step = [], 1
    for d in reversed(shape):
        out.append(step)
        step *= max(d, 1)
    return tuple(reversed(out))


def uniform_(x: Tensor, a: float = 0.0, b: float = 1.0, *, generator=None, **kw) -> Tensor:
    """Fill x with U(a, b) numbers, PyTorch's for the same seed."""
    a, b = kw.pop("from", a), kw.pop("to", b)
    _float_dtype(x.dtype, "uniform_")
    if not a <= b:
        raise RandomArgumentError(f"uniform_ expects to return a [from, to) range, but found "
                                  f"from={a} > to={b}", loc=user_loc())
    gen = impl_of(generator)
    return _fill_(x, lambda n, dense: gen.uniform(n, x.dtype.np, a, b))


def normal_(x: Tensor, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
    """Fill x with N(mean, std**2) numbers, PyTorch's for the same seed."""
    _float_dtype(x.dtype, "normal_")
    _check_std(std)
    gen = impl_of(generator)
    return _fill_(x, lambda n, dense: gen.normal(n, x.dtype.np, mean, std, contiguous=dense))


def bernoulli_(x: Tensor, p=0.5, *, generator=None) -> Tensor:
    """Fill x with 0/1: 1 with probability p (a number, or a float tensor broadcast to x).
    PyTorch's rule: a uniform < p, the uniform a float64 one for a number p, and in p's
    precision for a tensor p (so `rand(..., dtype) < p` draws the same numbers)."""
    from .inplace import rebind
    from . import functional as F
    shape = tuple(x.shape)
    dense = x._elem_strides() == _contiguous_strides(shape)
    if isinstance(p, Tensor):
        if not p.dtype.is_float:
            raise RandomArgumentError(f"bernoulli_: the probabilities must be a float tensor, "
                                      f"got {p.dtype}", loc=user_loc())
        if not dense:
            return _bernoulli_strided_(x, p, impl_of(generator))
        u = rand(shape, generator=generator, dtype=p.dtype, device=x.device)
        return rebind(x, F.cast(F.lt(u, p), x.dtype))
    from .torch_rng import check_probability
    p = check_probability(p)
    if not dense:
        gen = impl_of(generator)
        return _fill_(x, lambda n, dense: gen.bernoulli_scalar(n, p))
    u = rand(shape, generator=generator, dtype=dtypes.float64, device=x.device)
    return rebind(x, F.cast(F.lt(u, p), x.dtype))


def _bernoulli_strided_(x: Tensor, p: Tensor, gen) -> Tensor:
    if p._trace is not None or x._trace is not None:
        raise KilnError("not supported yet: bernoulli_ with a probability tensor into a "
                        "non-contiguous tensor inside @kiln.jit", loc=user_loc())
    probs = np.broadcast_to(p.detach().cpu().numpy(), tuple(x.shape))
    return _fill_(x, lambda n, dense: gen.bernoulli_tensor(_memory_order(probs, x)))


def _memory_order(values: np.ndarray, x: Tensor) -> np.ndarray:
    """values (x's shape) flattened in the order x's memory is filled."""
    from .torch_rng import draw_order
    shape, strides = tuple(x.shape), x._elem_strides()
    if strides == _contiguous_strides(shape):
        return values.reshape(-1)
    permuted, inverse = draw_order(shape, strides)
    axes = tuple(int(i) for i in np.argsort(inverse))
    return np.ascontiguousarray(values.transpose(axes)).reshape(-1)


def random_(x: Tensor, low=None, high=None, *, generator=None, **kw) -> Tensor:
    """`random_()`: integers in [0, 2**mantissa] (floats) or [0, max]; `random_(to)`,
    `random_(from, to)`: integers in [from, to)."""
    low, high = kw.pop("from", low), kw.pop("to", high)
    gen = impl_of(generator)
    if low is None and high is None:
        return _fill_(x, lambda n, dense: gen.random_bits(n, x.dtype.np))
    if high is None:
        low, high = 0, low
    low, high = int(low), int(high)
    _check_range(low, high, x.dtype, "random_")
    return _fill_(x, lambda n, dense: gen.random_range(n, x.dtype.np, low, high))


def exponential_(x: Tensor, lambd: float = 1.0, *, generator=None) -> Tensor:
    """Fill x with Exp(lambd) numbers, PyTorch's for the same seed."""
    _float_dtype(x.dtype, "exponential_")
    if not lambd > 0:
        raise RandomArgumentError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}",
                                  loc=user_loc())
    gen = impl_of(generator)
    return _fill_(x, lambda n, dense: gen.exponential(n, x.dtype.np, lambd))


def _bernoulli_method(x: Tensor, p=None, *, generator=None) -> Tensor:
    return bernoulli(x, p, generator=generator)


RANDOM_METHODS = {
    "uniform_": uniform_, "normal_": normal_, "bernoulli_": bernoulli_, "random_": random_,
    "exponential_": exponential_, "bernoulli": _bernoulli_method, "multinomial": multinomial,
}


def install() -> None:
    """Bind the random fills as Tensor methods (over inplace.py's older uniform_/normal_)."""
    from .inplace import INPLACE
    for name, fn in RANDOM_METHODS.items():
        if name.endswith("_"):
            INPLACE[name] = fn      # NOTE: methods.install() copies INPLACE onto Tensor
        setattr(Tensor, name, fn)


install()
