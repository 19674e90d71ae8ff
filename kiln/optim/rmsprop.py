"""RMSprop (Hinton), optionally centered and with momentum, with PyTorch's update rule."""
from __future__ import annotations

from kiln.frontend.creation import zeros, zeros_like
from kiln.frontend.tensor import Tensor
from kiln.ir import dtypes

from .optimizer import Optimizer, addcdiv_, addcmul_, check_range, lerp_


class RMSprop(Optimizer):
    """RMSprop, step for step as PyTorch's single-tensor implementation:

        g = grad + weight_decay * p;  v = v * alpha + (1 - alpha) * g * g
        avg = sqrt(v - gavg**2) with centered (gavg = lerp(gavg, g, 1 - alpha)), else sqrt(v)
        avg = avg + eps
        buf = buf * momentum + g / avg;  p -= lr * buf     (momentum > 0)
        p -= lr * g / avg                                  (otherwise)

    >>> import kiln
    >>> w = kiln.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = kiln.optim.RMSprop([w], lr=0.01)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> [round(v, 4) for v in w.tolist()]
    [0.9, -1.9]
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False):
        check_range("learning rate", lr)
        check_range("epsilon value", eps)
        check_range("momentum value", momentum)
        check_range("weight_decay value", weight_decay)
        check_range("alpha value", alpha)
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                    "momentum": momentum, "centered": centered, "maximize": maximize}
        super().__init__(params, defaults)

    def _update(self, p: Tensor, grad: Tensor, group: dict, state: dict) -> None:
        if group["maximize"]:
            grad = grad.neg()
        state["step"].add_(1)
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        alpha = group["alpha"]
        square_avg = addcmul_(state["square_avg"].mul_(alpha), grad, grad, 1 - alpha)
        if group["centered"]:
            grad_avg = lerp_(state["grad_avg"], grad, 1 - alpha)
            avg = square_avg.sub(grad_avg.mul(grad_avg)).sqrt()
        else:
            avg = square_avg.sqrt()
        avg = avg.add(group["eps"])
        if group["momentum"] > 0:
            buf = addcdiv_(state["momentum_buffer"].mul_(group["momentum"]), grad, avg)
            p.add_(buf, alpha=-self._hyper(group, "lr", p.dtype))
        else:
            addcdiv_(p, grad, avg, -self._hyper(group, "lr", p.dtype))


    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        _init_state(p, state, group)


def _init_state(p: Tensor, state: dict, group: dict) -> None:
    state["step"] = zeros((), dtype=dtypes.float32)
    state["square_avg"] = zeros_like(p)
    if group["momentum"] > 0:
        state["momentum_buffer"] = zeros_like(p)
    if group["centered"]:
        state["grad_avg"] = zeros_like(p)
