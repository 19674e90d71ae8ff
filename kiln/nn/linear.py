"""`Linear`, `Identity`, `Flatten` and `Unflatten`."""
from __future__ import annotations


from kiln.frontend import functional as K
from kiln.frontend.creation import zeros

from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class Identity(Module):
    """Returns its input unchanged (arguments are accepted and ignored, as in PyTorch).

    >>> import kiln
    >>> Identity(54, unused="argument")(kiln.ones(2)).tolist()
    [1.0, 1.0]
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x @ weight.T + bias, weight [out_features, in_features].

    Initialized like PyTorch: weight by kaiming_uniform_(a=sqrt(5)), bias from
    U(-1/sqrt(in_features), 1/sqrt(in_features)); both bounds are 1/sqrt(in_features).

    >>> import kiln
    >>> fc = Linear(3, 2)
    >>> fc
    Linear(in_features=3, out_features=2, bias=True)
    >>> fc(kiln.ones(4, 3)).shape
    kiln.Size([4, 2])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(zeros(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(zeros(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one (keeps the batch dim by default).

    >>> import kiln
    >>> Flatten()(kiln.zeros(2, 3, 4)).shape
    kiln.Size([2, 12])
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return K.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Splits dimension `dim` into `unflattened_size`.

    >>> import kiln
    >>> Unflatten(1, (2, 5))(kiln.zeros(3, 10)).shape
    kiln.Size([3, 2, 5])
    """

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        if not isinstance(unflattened_size, (tuple, list)):
            raise TypeError("unflattened_size must be tuple of ints, but found type "
                            f"{type(unflattened_size).__name__}")
        self.dim = dim
        self.unflattened_size = unflattened_size

    def forward(self, input):
        d = K.norm_dim(self.dim, input.ndim, "unflatten")
        shape = tuple(input.shape[:d]) + tuple(self.unflattened_size) + \
            tuple(input.shape[d + 1:])
        return K.reshape(input, shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
