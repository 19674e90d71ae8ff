"""Kiln's graph IR: dtypes, types, the op registry, Graph/Node/Value, printer, parser,
verifier and interpreter."""
from .dtypes import DType  # noqa: F401
from .graph import Graph, Node, Value  # noqa: F401
from .registry import NOT_DIFFERENTIABLE, P, OpDef, all_ops, apply, get_op  # noqa: F401
from .types import Loc, TensorType  # noqa: F401
