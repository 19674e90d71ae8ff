"""`ReduceOp`: how a reducing collective combines the ranks' values, PyTorch's names."""
from __future__ import annotations


class ReduceOp:
    """`ReduceOp.SUM`, `AVG`, `PRODUCT`, `MIN`, `MAX` (as `torch.distributed.ReduceOp`).

    >>> from kiln.distributed import ReduceOp
    >>> ReduceOp.AVG, str(ReduceOp.SUM)
    (<ReduceOp.AVG: 'avg'>, 'sum')
    """

    __slots__ = ("name",)
    SUM: "ReduceOp"
    AVG: "ReduceOp"
    PRODUCT: "ReduceOp"
    MIN: "ReduceOp"
    MAX: "ReduceOp"

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"<ReduceOp.{self.name.upper()}: '{self.name}'>"

    def __str__(self):
        return self.name

    def __eq__(self, other):
        return isinstance(other, ReduceOp) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


NAMES = ("sum", "avg", "product", "min", "max")
for _name in NAMES:
    setattr(ReduceOp, _name.upper(), ReduceOp(_name))


def op_name(op) -> str:
    """'sum', 'avg', ... for a ReduceOp or its name; a clear error for anything else."""
    if isinstance(op, ReduceOp):
        return op.name
    if isinstance(op, str) and op.lower() in NAMES:
        return op.lower()
    raise ValueError(f"unknown reduce op {op!r}; use kiln.distributed.ReduceOp."
                     f"{{{', '.join(n.upper() for n in NAMES)}}}")
