"""Collectives inside `@kiln.jit`: a graph node per call (ir/ops/collective.py), its result
written back into the tensor the program named, like any in-place op under tracing.

Each node takes the previous collective's result of the same graph as an extra operand, so
every schedule keeps the collectives in program order on every rank.
"""
from __future__ import annotations

from kiln.frontend import functional as F
from kiln.frontend.autograd import no_grad
from kiln.frontend.inplace import rebind
from kiln.ir.registry import apply

from .work import CompletedWork

_TOKEN = "_kiln_collective_token"       # NOTE: kept on the Trace: (its builder, last result)


def _emit(trace, op: str, x, attrs: dict):
    held = trace.__dict__.get(_TOKEN)
    after = [held[1]] if held is not None and held[0] is trace.builder else []
    out = apply(op, [x] + after, attrs)
    trace.__dict__[_TOKEN] = (trace.builder, out)
    return out


def _done(async_op: bool, tensors):
    return CompletedWork(tensors) if async_op else None


def all_reduce(trace, tensor, op: str, async_op: bool):
    with no_grad():
        rebind(tensor, _emit(trace, "all_reduce", tensor, {"op": op}))
    return _done(async_op, [tensor])


def broadcast(trace, tensor, src: int, async_op: bool):
    with no_grad():
        rebind(tensor, _emit(trace, "broadcast", tensor, {"src": src}))
    return _done(async_op, [tensor])


def all_gather(trace, outputs: list, tensor, size: int, async_op: bool):
    with no_grad():
        gathered = _emit(trace, "all_gather", tensor, {"world_size": size})
        for r, out in enumerate(outputs):
            rebind(out, F.reshape(gathered[r], tuple(out.shape)))
    return _done(async_op, outputs)


def reduce_scatter(trace, output, parts, op: str, size: int, async_op: bool):
    with no_grad():
        mine = _emit(trace, "reduce_scatter", parts, {"op": op, "world_size": size})
        rebind(output, F.reshape(mine, tuple(output.shape)))
    return _done(async_op, [output])


def barrier(trace, async_op: bool):
    held = trace.__dict__.get(_TOKEN)
    # NOTE: a node needs an operand to dispatch on: the previous collective's result, or a
    # scalar made here
    after = held[1] if held is not None and held[0] is trace.builder else _scalar_zero()
    out = apply("barrier", [after], {})
    trace.__dict__[_TOKEN] = (trace.builder, out)
    return _done(async_op, [])


def _scalar_zero():
    from kiln.frontend.creation import zeros
    from kiln.ir.dtypes import int64
    return zeros((), dtype=int64)


def gather_into(trace, output, tensor, size: int, async_op: bool):
    with no_grad():
        gathered = _emit(trace, "all_gather", tensor, {"world_size": size})
        rebind(output, F.reshape(gathered, tuple(output.shape)))
    return _done(async_op, [output])
