"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""
from __future__ import annotations

from kiln.frontend.creation import zeros_like
from kiln.frontend.tensor import Tensor

from .optimizer import Optimizer, check_range


class SGD(Optimizer):
    """SGD, with PyTorch's update rule (its single-tensor implementation, step for step):

        g = -grad if maximize else grad;  g = g + weight_decay * p
        buf = g (first step) | buf * momentum + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf;  p = p - lr * g

    >>> import kiln
    >>> w = kiln.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = kiln.optim.SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.zero_grad()
    ...     (w * w).sum().backward()
    ...     opt.step()
    >>> [round(v, 4) for v in w.tolist()]
    [0.46, -0.92]
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        check_range("learning rate", lr)
        check_range("momentum value", momentum)
        check_range("weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults)

    def _update(self, p: Tensor, grad: Tensor, group: dict, state: dict) -> None:
        if group["maximize"]:
            grad = grad.neg()
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            elif state.pop("first_step", False):
                buf.copy_(grad)
            else:
                buf.mul_(self._hyper(group, "momentum", p.dtype)).add_(
                    grad, alpha=1 - group["dampening"])
            grad = grad.add(buf, alpha=self._hyper(group, "momentum", p.dtype)) \
                if group["nesterov"] else buf
        p.add_(grad, alpha=-self._hyper(group, "lr", p.dtype))

    def _init_state(self, p: Tensor, group: dict, state: dict) -> None:
        if group["momentum"] == 0:
            return
        # NOTE: a zero buffer: `buf * momentum + grad` is then exactly `grad`, PyTorch's first
        # step, so a traced step is the same graph from the first call on. With dampening the
        # first step differs (`buf = grad`): it says so once, and the next step retraces.
        state["momentum_buffer"] = zeros_like(p)
        if group["dampening"] != 0:
            state["first_step"] = True
