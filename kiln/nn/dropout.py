"""`Dropout`: inverted dropout in training mode, the identity in eval mode."""
from __future__ import annotations

from . import functional as F
from .module import Module


class Dropout(Module):
    """Zeroes each element with probability p in training mode and scales the others by
    1/(1-p), so eval mode (the identity) sees activations of the same expected size.

    >>> import kiln
    >>> drop = Dropout(p=0.5)
    >>> drop
    Dropout(p=0.5, inplace=False)
    >>> y = drop(kiln.ones(1000))
    >>> sorted(set(y.tolist()))
    [0.0, 2.0]
    >>> drop.eval()(kiln.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
