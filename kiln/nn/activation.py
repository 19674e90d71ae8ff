"""Activation layers: each is its `kiln.nn.functional` function as a module.

    >>> import kiln
    >>> from kiln import nn
    >>> nn.ReLU()(kiln.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    >>> nn.Softmax(dim=1)
    Softmax(dim=1)
"""
from __future__ import annotations

from . import functional as F
from .module import Module


class ReLU(Module):
    """max(x, 0).

    >>> ReLU(inplace=True)
    ReLU(inplace=True)
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.relu(input, inplace=self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """x for x > 0, negative_slope * x otherwise.

    >>> LeakyReLU(0.2)
    LeakyReLU(negative_slope=0.2)
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace
                                                            else "")


class GELU(Module):
    """x * Phi(x) (approximate='none'), or its tanh approximation (approximate='tanh').

    >>> GELU()
    GELU(approximate='none')
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """x * sigmoid(x) (also called swish).

    >>> SiLU()
    SiLU()
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.silu(input, inplace=self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    """1 / (1 + exp(-x)).

    >>> Sigmoid()
    Sigmoid()
    """

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    """tanh(x).

    >>> Tanh()
    Tanh()
    """

    def forward(self, input):
        return F.tanh(input)


class Softmax(Module):
    """exp(x) / sum(exp(x)) along `dim`.

    >>> Softmax(dim=-1)
    Softmax(dim=-1)
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.softmax(input, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along `dim`, computed stably.

    >>> LogSoftmax(dim=1)
    LogSoftmax(dim=1)
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.log_softmax(input, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class ELU(Module):
    """x for x > 0, alpha * (exp(x) - 1) otherwise.

    >>> import kiln
    >>> ELU(alpha=0.5)
    ELU(alpha=0.5)
    >>> [round(v, 4) for v in ELU()(kiln.tensor([-1.0, 2.0])).tolist()]
    [-0.6321, 2.0]
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input):
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Softplus(Module):
    """log(1 + exp(beta * x)) / beta, linear where beta * x > threshold.

    >>> import kiln
    >>> Softplus(beta=2.0)
    Softplus(beta=2.0, threshold=20.0)
    >>> [round(v, 4) for v in Softplus()(kiln.tensor([0.0, 25.0])).tolist()]
    [0.6931, 25.0]
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"
