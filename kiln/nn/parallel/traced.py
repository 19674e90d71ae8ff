"""DDP inside `@kiln.jit`: the gradient all-reduce compiled into the training step's graph.

One proxy node per bucket (proxies.py); when the trace records `loss.backward()`, each node's
VJP adds the bucket's gradients to the `.grad` so far (after `no_sync()` steps), flattens
them into one tensor, all-reduces it (a graph node, averaging) and assigns the parts to
`.grad`: the compiled step does the whole reduction, with no Python between steps and no
recompile. The collectives run as the graph reaches them (no overlap with the rest of the
backward: the compiled backward is one call).
"""
from __future__ import annotations

from kiln.frontend import functional as F
from kiln.frontend.trace import current_trace
from kiln.ir.errors import NotSupportedError

from .proxies import proxy_node

_BACKWARD_OUTSIDE = (
    "not supported yet: the backward of a DistributedDataParallel forward traced by "
    "@kiln.jit, run outside that trace (the jitted function returned the loss and "
    "`loss.backward()` ran after it); jit the whole training step (forward, "
    "`loss.backward()`, optimizer step) or call the DDP model outside @kiln.jit")


def traced_forward(ddp, trace, call):
    """Run the module under `trace` with one proxy node per bucket in place of the
    parameters."""
    params = ddp._params
    for p in params:
        trace.value_of(p)   # NOTE: captured first, so the jit re-reads each at its path
    values = {}
    for bucket in ddp._buckets:
        members = bucket.members
        outs, _ = proxy_node("ddp_bucket", [params[i] for i in members], None,
                             _bucket_vjp(params, members))
        values.update(zip(members, outs))
    ddp._tables.swap(values)
    try:
        return call()
    finally:
        ddp._tables.restore()


def _bucket_vjp(params: list, members: list[int]):
    def report(gs):
        trace = current_trace()
        if trace is None or trace.__dict__.get("parent") is not None:
            raise NotSupportedError(_BACKWARD_OUTSIDE)
        pieces = [_total(params[i], g).reshape(-1) for i, g in zip(members, gs)]
        flat = F.cat(pieces) if len(pieces) > 1 else pieces[0].clone()
        from kiln import distributed as dist
        dist.all_reduce(flat, op=dist.ReduceOp.AVG)
        start = 0
        for i in members:
            p = params[i]
            n = p.numel()
            p.grad = flat[start:start + n].reshape(tuple(p.shape)).clone()
            start += n
    return report


def _total(p, g):
    """The gradient this step adds to `p.grad` so far (a `no_sync()` step left one)."""
    old = p.grad
    if g is None:
        return old if old is not None else F.full(tuple(p.shape), 0, p.dtype, like=p)
    return g if old is None else old + g
