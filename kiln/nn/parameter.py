"""`Parameter`: a tensor that a `Module` registers as one of its learnable parameters."""
from __future__ import annotations

from kiln.frontend.creation import zeros
from kiln.frontend.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that, assigned as a `Module` attribute, joins `module.parameters()`.

    It shares the given tensor's data (like PyTorch's) and requires grad by default.

    >>> import kiln
    >>> from kiln.nn import Parameter
    >>> p = Parameter(kiln.tensor([1.0, 2.0]))
    >>> p
    Parameter containing:
    tensor([1., 2.], requires_grad=True)
    >>> (p * 3).sum().backward(); p.grad
    tensor([3., 3.])
    """

    # NOTE: no `__slots__` here, so a Parameter has a `__dict__` and users may tag it with
    # their own attributes, as they can in PyTorch.

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            data = zeros(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter expects a kiln.Tensor as data, got "
                            f"{type(data).__name__}")
        self._init(data._data, data._trace)
        self._version = data._version       # NOTE: shares data's storage, like PyTorch
        self._strides = data._strides
        self._copy_of = data._copy_of
        self.requires_grad_(requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        # NOTE: like PyTorch: the value (new storage) and the flag; the gradient is not copied.
        copied = Tensor._wrap(self._array("deepcopy").copy())
        if self._trace is None and self.is_cuda:
            copied = copied.to("cuda")
        result = type(self)(copied, self.requires_grad)
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, protocol):
        return (type(self), (self._alias(), self.requires_grad))
