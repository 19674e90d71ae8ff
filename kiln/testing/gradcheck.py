"""`gradcheck` and `gradgradcheck`: PyTorch's names and defaults (eps=1e-6, atol=1e-5,
rtol=1e-3), central finite differences against the gradients autograd computes.

Every Jacobian entry d output[i] / d input[j] is compared: autograd's from one backward per
output element, the numerical one from `(f(x + eps) - f(x - eps)) / (2 eps)` per input
element. The inputs that require grad are checked in their own dtype, as in PyTorch: give
float64 inputs (at eps=1e-6 float32 differences are noise); any other dtype gets PyTorch's
warning and is used as given, so a function whose parameters are float32 still runs.
Outputs are the tensors anywhere in the result (nested tuples, lists and dicts too),
numbered by their position in the flattened result. A failure names the output, the input
(by its parameter name where the function has one) and the element that disagree.
"""
from __future__ import annotations

import inspect
import warnings

import numpy as np

from kiln.frontend.creation import from_numpy
from kiln.frontend.tensor import Tensor

from .close import to_numpy


class GradcheckError(AssertionError, RuntimeError):
    """Analytical and numerical gradients disagree (an AssertionError for test runners, and a
    RuntimeError like PyTorch's GradcheckError)."""


def gradcheck(func, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True) -> bool:
    """Check the gradients of `func(*inputs)` against finite differences.

    `inputs` is a tensor or a tuple of arguments; the tensors among them that require grad
    are the ones checked, in their dtype (float64 expected: another one is warned about, as
    PyTorch does). Returns True, or raises GradcheckError (False instead when
    `raise_exception=False`) naming the output, input and element that disagree.

    >>> import kiln
    >>> x = kiln.tensor([0.5, -1.0, 2.0], dtype=kiln.float64, requires_grad=True)
    >>> gradcheck(lambda t: (t * kiln.tanh(t)).sum(), (x,))
    True
    """
    inputs = _as_tuple(inputs)
    work, wrt = _leaf_inputs(inputs, "gradcheck")
    problem = _check(func, work, wrt, _input_names(func, len(work)), eps, atol, rtol)
    return _verdict("gradcheck", problem, raise_exception)


def gradgradcheck(func, inputs, grad_outputs=None, *, eps: float = 1e-6, atol: float = 1e-5,
                  rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """Check second derivatives: `gradcheck` of the function that maps (inputs,
    grad_outputs) to autograd's gradients of `func` (computed with `create_graph=True`).

    `grad_outputs` default to fixed pseudo-random tensors of each output's dtype (seeded, so
    a failure repeats), one per floating-point output that requires grad, in the order of
    the flattened result.

    >>> import kiln
    >>> x = kiln.tensor([0.5, -1.0], dtype=kiln.float64, requires_grad=True)
    >>> gradgradcheck(lambda t: t ** 3, (x,))
    True
    """
    inputs = _as_tuple(inputs)
    work, wrt = _leaf_inputs(inputs, "gradgradcheck")
    outputs = [o for _, o in _float_outputs(func(*work)) if o.requires_grad]
    grad_outs = _grad_outputs(outputs, grad_outputs)
    n = len(work)

    def first_derivatives(*args):
        outs = [o for _, o in _float_outputs(func(*args[:n])) if o.requires_grad]
        grads = _grad(outs, [args[k] for k in wrt], list(args[n:]), create_graph=True)
        return tuple(g for g in grads if g is not None)

    names = _input_names(func, n) + [(f"grad_outputs[{i}]",) * 2 for i in range(len(grad_outs))]
    problem = _check(first_derivatives, work + grad_outs, wrt + list(range(n, len(names))),
                     names, eps, atol, rtol)
    return _verdict("gradgradcheck", problem, raise_exception)


# ---- inputs and outputs ---------------------------------------------------------------------
def _as_tuple(inputs) -> list:
    if isinstance(inputs, Tensor):
        return [inputs]
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    raise TypeError(f"inputs must be a Tensor or a tuple of arguments, got "
                    f"{type(inputs).__name__}")


def _leaf_inputs(inputs: list, who: str) -> tuple[list, list]:
    """(arguments with leaf copies of the tensors that require grad, in their dtype, their
    positions); PyTorch's warning for each such input that is not float64."""
    work, wrt = [], []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad:
            if x.dtype.np != np.float64:
                warnings.warn(f"Input #{i} requires gradient and is not a double precision "
                              "floating point or complex. This check will likely fail if all "
                              "the inputs are not of double precision floating point or "
                              f"complex. ({who}: input #{i} is {x.dtype.value})",
                              stacklevel=3)
            work.append(_leaf_like(x))
            wrt.append(i)
        else:
            work.append(x)
    if not wrt:
        raise ValueError(f"{who} expects at least one input tensor to require gradient, but "
                         "none of them have requires_grad=True")
    return work, wrt


def _leaf_like(x: Tensor, values: np.ndarray | None = None) -> Tensor:
    """A new leaf that requires grad, of `x`'s dtype, shape and device, holding `values`
    (or `x`'s values): the caller's tensors are never written or given a `.grad`."""
    data = to_numpy(x) if values is None else values
    t = from_numpy(np.array(data, dtype=x.dtype.np).reshape(tuple(x.shape)))
    if x.device.type != "cpu":
        t = t.to(x.device)
    return t.requires_grad_(True)


def _float_outputs(result) -> list:
    """(label, tensor) of the floating-point tensors of a result, at any depth of tuples,
    lists and dicts; an output is numbered by its position in the flattened result (every
    value counts), with its path when it is nested: "output 2 ([1]['aux'])"."""
    if isinstance(result, Tensor):
        return [("output", result)] if result.dtype.is_float else []
    leaves: list = []
    _flatten_result(result, "", leaves)
    out = []
    for k, (path, value) in enumerate(leaves):
        if isinstance(value, Tensor) and value.dtype.is_float:
            out.append((f"output {k}" if path == f"[{k}]" else f"output {k} ({path})", value))
    return out


def _flatten_result(value, path: str, leaves: list) -> None:
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _flatten_result(item, f"{path}[{i}]", leaves)
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten_result(item, f"{path}[{key!r}]", leaves)
    else:
        leaves.append((path, value))


def _grad_outputs(outputs: list, given) -> list:
    if given is None:
        rng = np.random.default_rng(0)
        return [_leaf_like(o, rng.standard_normal(tuple(o.shape))) for o in outputs]
    given = _as_tuple(given)
    if len(given) != len(outputs):
        raise ValueError(f"gradgradcheck: {len(given)} grad_outputs given for "
                         f"{len(outputs)} outputs that require grad")
    return [_leaf_like(g) for g in given]


def _input_names(func, n: int) -> list[tuple[str, str]]:
    """Per input, (label, short name): ("input 1 (w)", "w"), or ("input 1", "input 1")."""
    try:
        params = [p.name for p in inspect.signature(func).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [(f"input {i}", f"input {i}") for i in range(n)]
    for i, name in enumerate(params[:n]):
        names[i] = (f"input {i} ({name})", name)
    return names


def _grad(outputs, inputs, grad_outputs, create_graph=False) -> list:
    from kiln.autograd import grad
    if not outputs:
        return [None] * len(inputs)
    return list(grad(outputs, inputs, grad_outputs, retain_graph=True,
                     create_graph=create_graph, allow_unused=True))


# ---- the Jacobians --------------------------------------------------------------------------
def _check(func, work, wrt, names, eps, atol, rtol) -> str | None:
    labelled = _float_outputs(func(*work))
    if not labelled:
        return "the function returned no floating-point tensor to check"
    outputs = [o for _, o in labelled]
    analytical, problem = _analytical(outputs, [work[k] for k in wrt],
                                      [names[k][0] for k in wrt])
    if problem is not None:
        return problem
    for col, k in enumerate(wrt):
        numerical = _numerical(func, work, k, eps, [o.numel() for o in outputs])
        for o, (label, out) in enumerate(labelled):
            problem = _compare(analytical[o][col], numerical[o], label, tuple(out.shape),
                               names[k], tuple(work[k].shape), eps, atol, rtol)
            if problem is not None:
                return problem
    return None


def _analytical(outputs, inputs, names) -> tuple[list, str | None]:
    """Per output, per input, the Jacobian autograd gives: one backward per output element
    with a one-hot grad_output (zeros for an output that does not require grad)."""
    out = []
    for o, y in enumerate(outputs):
        rows = [np.zeros((y.numel(), x.numel())) for x in inputs]
        for i in range(y.numel() if y.requires_grad else 0):
            onehot = np.zeros(y.numel(), dtype=y.dtype.np)
            onehot[i] = 1
            seed = from_numpy(onehot.reshape(tuple(y.shape))).to(y.device)
            for k, g in enumerate(_grad([y], inputs, [seed])):
                if g is None:
                    continue
                if tuple(g.shape) != tuple(inputs[k].shape):
                    return out, (f"the gradient with respect to {names[k]} has shape "
                                 f"{list(g.shape)}, but the input has shape "
                                 f"{list(inputs[k].shape)}")
                rows[k][i] = to_numpy(g).astype(np.float64).ravel()
        out.append(rows)
    return out, None


def _numerical(func, work, k, eps, sizes) -> list[np.ndarray]:
    """Per output, d output / d work[k] by central differences, perturbing one element at
    a time (a new tensor per evaluation: the caller's tensors are never written)."""
    x = work[k]
    base = to_numpy(x).astype(np.float64).ravel()
    cols = [np.zeros((n, base.size)) for n in sizes]
    for j in range(base.size):
        sides = []
        for step in (eps, -eps):
            values = base.copy()
            values[j] += step
            args = list(work)
            args[k] = _leaf_like(x, values)
            sides.append([to_numpy(o).astype(np.float64).ravel()
                          for _, o in _float_outputs(func(*args))])
        for o, (plus, minus) in enumerate(zip(*sides)):
            cols[o][:, j] = (plus - minus) / (2 * eps)
    return cols


def _compare(a, n, out_name, out_shape, in_names, in_shape, eps, atol, rtol) -> str | None:
    with np.errstate(all="ignore"):
        allowed = atol + rtol * np.abs(n)
        diff = np.abs(a - n)
        bad = ~(diff <= allowed)        # NOTE: a NaN on either side disagrees
    if not bad.any():
        return None
    excess = np.where(bad, np.nan_to_num(diff / allowed, nan=np.inf), -1.0)
    i, j = np.unravel_index(int(np.argmax(excess)), excess.shape)
    short = out_name.split(" (")[0]     # NOTE: "output 2 ([1]['aux'])" -> "output 2"
    return (f"Jacobian mismatch for {out_name} with respect to {in_names[0]}:\n"
            f"  d {short}{_at(i, out_shape)} / d {in_names[1]}{_at(j, in_shape)}: "
            f"analytical {a[i, j]:.6g}, numerical {n[i, j]:.6g} "
            f"(central differences, eps={eps:g})\n"
            f"  |difference| {diff[i, j]:.3g} > allowed {allowed[i, j]:.3g} "
            f"(atol {atol:g} + rtol {rtol:g} * |numerical|)\n"
            f"  {int(bad.sum())} of {bad.size} entries of this Jacobian disagree")


def _at(flat: int, shape: tuple) -> str:
    if not shape:
        return ""
    return str(list(int(i) for i in np.unravel_index(int(flat), shape)))


def _verdict(who: str, problem: str | None, raise_exception: bool) -> bool:
    if problem is None:
        return True
    if raise_exception:
        raise GradcheckError(f"{who}: {problem}")
    return False
