"""Collectives: all_reduce, broadcast, all_gather, reduce_scatter, barrier across the ranks of
the default process group (`kiln.distributed`), as graph ops for `@kiln.jit`.

Eagerly, kiln.distributed runs collectives in place on the tensors' storage; inside a trace
each call becomes one of these nodes (its result written back into the tensor by a `copy_`),
run by the executable as a reference step that hands the data to the communication thread and
waits. They are `effectful`: canonicalize never folds, merges or drops them, so each runs
exactly once per call. Every operand after the first is an ordering dependency only (the
previous collective's result): no schedule can reorder two collectives, so all ranks run
them in program order. Not differentiable (as in torch.distributed).
"""
from __future__ import annotations

from ..dtypes import DType
from ..errors import DTypeError, ShapeError
from ..registry import NOT_DIFFERENTIABLE, OpDef, register
from ..types import TensorType

REDUCE_OPS = ("sum", "avg", "product", "min", "max")


def _check_reduce(op: str, name: str, t: TensorType) -> None:
    if name not in REDUCE_OPS:
        raise ShapeError(f"{op}: unknown reduce op '{name}' (one of {', '.join(REDUCE_OPS)})")
    if name == "avg" and not t.dtype.is_float:
        raise DTypeError(f"{op}: op=avg needs a floating-point tensor, got {t}")


def _need_data(op: str, types) -> TensorType:
    if not types:
        raise ShapeError(f"{op}: needs the tensor to communicate as its first operand")
    return types[0]


def _all_reduce_infer(types, attrs):
    t = _need_data("all_reduce", types)
    _check_reduce("all_reduce", attrs.op, t)
    return [t]


def _broadcast_infer(types, attrs):
    t = _need_data("broadcast", types)
    if attrs.src < 0:
        raise ShapeError(f"broadcast: src must be a rank (>= 0), got {attrs.src}")
    return [t]


def _all_gather_infer(types, attrs):
    t = _need_data("all_gather", types)
    if attrs.world_size < 1:
        raise ShapeError(f"all_gather: world_size must be >= 1, got {attrs.world_size}")
    return [t.with_shape((attrs.world_size,) + tuple(t.shape))]


def _reduce_scatter_infer(types, attrs):
    t = _need_data("reduce_scatter", types)
    _check_reduce("reduce_scatter", attrs.op, t)
    if t.rank == 0 or t.shape[0] != attrs.world_size:
        raise ShapeError(f"reduce_scatter: the input's first axis must be the world size "
                         f"{attrs.world_size} (one part per rank), got {t}")
    return [t.with_shape(tuple(t.shape[1:]))]


def _barrier_infer(types, attrs):
    return [TensorType(DType.int64, ())]


def _graph_ops():
    from kiln.distributed import graph_ops
    return graph_ops


def _doc(text: str) -> str:
    return text + " Operands after the first only order it after earlier collectives."


register(OpDef("all_reduce", "collective", -1, {"op": "str"}, _all_reduce_infer,
               lambda xs, a: _graph_ops().all_reduce(xs[0], a.op), NOT_DIFFERENTIABLE,
               effectful=True, doc=_doc("The elementwise reduction (op) of x over all ranks.")))
register(OpDef("broadcast", "collective", -1, {"src": "int"}, _broadcast_infer,
               lambda xs, a: _graph_ops().broadcast(xs[0], a.src), NOT_DIFFERENTIABLE,
               effectful=True, doc=_doc("Rank src's x, on every rank.")))
register(OpDef("all_gather", "collective", -1, {"world_size": "int"}, _all_gather_infer,
               lambda xs, a: _graph_ops().all_gather(xs[0], a.world_size),
               NOT_DIFFERENTIABLE, effectful=True,
               doc=_doc("Every rank's x, stacked along a new first axis (rank order).")))
register(OpDef("reduce_scatter", "collective", -1, {"op": "str", "world_size": "int"},
               _reduce_scatter_infer,
               lambda xs, a: _graph_ops().reduce_scatter(xs[0], a.op, a.world_size),
               NOT_DIFFERENTIABLE, effectful=True,
               doc=_doc("Part r (of the first axis) of the reduction over all ranks, on "
                        "rank r.")))
register(OpDef("barrier", "collective", -1, {}, _barrier_infer,
               lambda xs, a: _graph_ops().barrier(), NOT_DIFFERENTIABLE, effectful=True,
               doc="Wait until every rank reaches it; a 0-d int64 zero (an ordering token). "
                   "Its operands only order it after earlier collectives."))
