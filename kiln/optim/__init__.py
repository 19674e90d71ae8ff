"""`kiln.optim`: optimizers (`SGD`, `Adam`, `AdamW`, `RMSprop`) and `lr_scheduler`.

    >>> import kiln
    >>> w = kiln.tensor([3.0], requires_grad=True)
    >>> opt = kiln.optim.SGD([w], lr=0.25)
    >>> opt.zero_grad()
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w.tolist()
    [1.5]
"""
from kiln.optim import lr_scheduler
from kiln.optim.adam import Adam, AdamW
from kiln.optim.optimizer import Optimizer
from kiln.optim.rmsprop import RMSprop
from kiln.optim.sgd import SGD

__all__ = ["Adam", "AdamW", "Optimizer", "RMSprop", "SGD", "lr_scheduler"]
