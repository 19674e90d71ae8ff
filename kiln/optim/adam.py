"""Adam and AdamW (Kingma & Ba; Loshchilov & Hutter), with PyTorch's update rule."""
from __future__ import annotations

from kiln.frontend import functional as F
from kiln.frontend.creation import zeros, zeros_like
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes

from .optimizer import Optimizer, addcdiv_, addcmul_, check_range, lerp_


class Adam(Optimizer):
    """Adam, step for step as PyTorch's single-tensor implementation:

        g = grad (+ weight_decay * p, an L2 term, for Adam; AdamW decays p itself)
        m = lerp(m, g, 1 - beta1);  v = v * beta2 + (1 - beta2) * g * g
        vmax = max(vmax, v) with amsgrad
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps;  p -= lr / (1 - beta1**t) * m / denom

    >>> import kiln
    >>> w = kiln.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = kiln.optim.Adam([w], lr=0.1)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> [round(v, 4) for v in w.tolist()]
    [0.9, -1.9]
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False):
        check_range("learning rate", lr)
        check_range("epsilon value", eps)
        check_range("beta parameter at index 0", betas[0], 0.0, 1.0)
        check_range("beta parameter at index 1", betas[1], 0.0, 1.0)
        check_range("weight_decay value", weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize}
        super().__init__(params, defaults)

    def _update(self, p: Tensor, grad: Tensor, group: dict, state: dict) -> None:
        beta1, beta2 = (self._hyper(group, "betas", dtypes.float64, i) for i in (0, 1))
        if group["maximize"]:
            grad = grad.neg()
        state["step"].add_(1)
        lr, wd = self._hyper(group, "lr", dtypes.float64), group["weight_decay"]
        if wd != 0 and self._decoupled:
            p.mul_(F.cast(1 - lr * wd, p.dtype) if isinstance(lr, Tensor) else 1 - lr * wd)
        elif wd != 0:
            grad = grad.add(p, alpha=wd)
        # NOTE: as PyTorch's Python floats, rounded once to the parameter's dtype
        lerp_(state["exp_avg"], grad, _as(1 - beta1, p))
        addcmul_(state["exp_avg_sq"].mul_(_as(beta2, p)), grad, grad, _as(1 - beta2, p))
        step_size, bias_correction2_sqrt = _bias_corrections(state["step"], beta1, beta2, lr)
        second = state["exp_avg_sq"]
        if group["amsgrad"]:
            second = state["max_exp_avg_sq"].copy_(F.maximum(state["max_exp_avg_sq"], second))
        denom = second.sqrt().div(F.cast(bias_correction2_sqrt, p.dtype)).add_(group["eps"])
        addcdiv_(p, state["exp_avg"], denom, F.cast(step_size.neg(), p.dtype))

    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        _init_state(p, state, group["amsgrad"])


class AdamW(Adam):
    """Adam with decoupled weight decay: `p *= 1 - lr * weight_decay` before the Adam step.

    >>> import kiln
    >>> w = kiln.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = kiln.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> [round(v, 4) for v in w.tolist()]
    [0.85, -1.8]
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


def _as(value, p: Tensor):
    """A Python float as is; a traced float64 option cast to p's dtype."""
    return F.cast(value, p.dtype) if isinstance(value, Tensor) else value


def _init_state(p: Tensor, state: dict, amsgrad: bool) -> None:
    # NOTE: the step counter is a float32 tensor, as in PyTorch's state dicts.
    state["step"] = zeros((), dtype=dtypes.float32)
    state["exp_avg"] = zeros_like(p)
    state["exp_avg_sq"] = zeros_like(p)
    if amsgrad:
        state["max_exp_avg_sq"] = zeros_like(p)


def _bias_corrections(step: Tensor, beta1: float, beta2: float, lr: float):
    """`lr / (1 - beta1**t)` and `sqrt(1 - beta2**t)` as float64 tensors.

    NOTE: PyTorch computes these in Python floats from the step count. Float64 tensor ops
    agree with those to about 1e-14 relative (NumPy's `pow` is not always C's), far below
    float32's resolution, and they need no read of the step's value back into Python: a
    traced step has no graph break and no guard on the step count, so it compiles once.
    """
    t = F.cast(step, dtypes.float64)
    bias_correction1 = 1 - beta1 ** t
    bias_correction2 = 1 - beta2 ** t
    return lr / bias_correction1, bias_correction2 ** 0.5
