"""Gradient clipping with PyTorch's rules, in tensor ops only (no value read back into Python),
so a clipped training step compiles into one graph under `@kiln.jit`."""
from __future__ import annotations

import math

from kiln.frontend import functional as F
from kiln.frontend import reductions as R
from kiln.frontend.autograd import no_grad
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes
from kiln.ir.errors import KilnError


def _grads(parameters) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale the gradients in place so that their joint `norm_type` norm is at most
    `max_norm`; returns the norm before clipping (a 0-d tensor).

    >>> import kiln
    >>> w = kiln.tensor([3.0, 4.0], requires_grad=True)
    >>> (w * w).sum().backward()            # grad [6, 8], norm 10
    >>> norm = kiln.nn.utils.clip_grad_norm_([w], 5.0)
    >>> round(norm.item(), 4), [round(g, 4) for g in w.grad.tolist()]
    (10.0, [3.0, 4.0])
    """
    if error_if_nonfinite:
        raise KilnError("not supported yet: clip_grad_norm_(error_if_nonfinite=True) (it reads "
                        "the norm back into Python)")
    grads = _grads(parameters)
    if not grads:
        return F.full((), 0.0, dtypes.float32)
    with no_grad():
        total = _total_norm(grads, float(norm_type))
        # NOTE: PyTorch's formula: always multiply by the clamped coefficient (no branch on
        # the norm's value, so nothing is read back and a traced step has no graph break)
        coef = F.clamp(float(max_norm) / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(F.cast(coef, g.dtype))
    return total


def _total_norm(grads: list[Tensor], norm_type: float) -> Tensor:
    if math.isinf(norm_type):
        norms = [R.amax(g.abs()) if g.numel() else F.full((), 0.0, g.dtype) for g in grads]
        return R.amax(F.stack(norms))
    norms = [R.sum(F.pow(g.abs(), norm_type)) for g in grads]
    total = norms[0]
    for n in norms[1:]:
        total = total + n
    return F.pow(total, 1.0 / norm_type)


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient in place to [-clip_value, clip_value]."""
    with no_grad():
        for g in _grads(parameters):
            g.clamp_(-float(clip_value), float(clip_value))
