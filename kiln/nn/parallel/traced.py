"""DDP inside `@kiln.jit`: the gradient all-reduce compiled into the training step's graph.

One proxy node per bucket (proxies.py) collects the gradients the traced backward gives the
bucket's parameters; every proxy also takes the step's sentinel as an input, so the tape
runs the sentinel after all of them. The sentinel then emits, for every bucket in index
order (on every rank, whatever its own backward reached), the bucket's all-reduce: the
gradients (on top of the `.grad` so far, after `no_sync()` steps; zeros for a parameter this
rank's backward did not reach) divided by the world size, and the "used" flags, in the
eager layout (buckets.py); then it assigns the averages to `.grad`. The compiled step does
the whole reduction, with no Python between steps and no recompile. The collectives run
as the graph reaches them (no overlap with the rest of the backward: the compiled backward
is one call).

Not as eagerly: a parameter that no rank used in the step gets a zero `.grad` (eagerly,
and in PyTorch, its `.grad` stays None): whether another rank used it is known only when the
compiled step runs, and a compiled step cannot decide then whether `.grad` is None. The
trace warns (DDPJitWarning) when this rank's step leaves a parameter without a gradient.
"""
from __future__ import annotations

import warnings
import weakref

from kiln.frontend import functional as F
from kiln.frontend.trace import current_trace
from kiln.ir.errors import NotSupportedError

from .proxies import proxy_node
from .reducer import _SECOND_BACKWARD, ReductionError, _sentinel

_BACKWARD_OUTSIDE = (
    "not supported yet: the backward of a DistributedDataParallel forward traced by "
    "@kiln.jit, run outside that trace (the jitted function returned the loss and "
    "`loss.backward()` ran after it); jit the whole training step (forward, "
    "`loss.backward()`, optimizer step) or call the DDP model outside @kiln.jit")


class DDPJitWarning(UserWarning):
    """A DistributedDataParallel step under @kiln.jit that may differ from the eager one."""


def traced_forward(ddp, trace, call):
    """Run the module under `trace` with one proxy node per bucket in place of the
    parameters."""
    params = ddp._params
    for p in params:
        trace.value_of(p)   # NOTE: captured first, so the jit re-reads each at its path
    step = _open_step(ddp, trace)
    values = {}
    for bucket in ddp._buckets:
        members = [i for i in bucket.members if params[i].requires_grad]
        if not members:
            continue
        step.live.update(members)
        outs, _ = proxy_node("ddp_bucket", [params[i] for i in members], None, step.sentinel,
                             step.reporter(members), _traced_zero)
        values.update(zip(members, outs))
    ddp._tables.swap(values)
    try:
        return call()
    finally:
        ddp._tables.restore()


def _open_step(ddp, trace) -> "TracedStep":
    held = ddp.__dict__.get("_traced_step")
    step = held() if held is not None else None
    if step is None or step.trace() is not trace or step.done:
        step = TracedStep(ddp, trace)
        ddp.__dict__["_traced_step"] = weakref.ref(step)
    return step


def _traced_zero():
    from kiln.frontend.creation import zeros
    return zeros(())


class TracedStep:
    """The gradients one traced backward gives the DDP parameters, until the sentinel."""

    def __init__(self, ddp, trace):
        self.ddp = ddp
        self.trace = weakref.ref(trace)
        self.live: set = set()
        self.collected: dict = {}       # param index -> [traced gradients]
        self.done = False
        self.sentinel = _sentinel(self.finish)

    def reporter(self, members: list[int]):
        def report(gs):
            trace = current_trace()
            if trace is None or trace.__dict__.get("parent") is not None:
                raise NotSupportedError(_BACKWARD_OUTSIDE)
            if self.done:
                raise ReductionError(_SECOND_BACKWARD)
            for i, g in zip(members, gs):
                if g is not None:
                    self.collected.setdefault(i, []).append(g)
        return report

    def finish(self) -> None:
        if self.done:
            raise ReductionError(_SECOND_BACKWARD)
        self.done = True
        from kiln import distributed as dist
        scale = 1.0 / dist.get_world_size()
        unreached = []
        for b in self.ddp._buckets:
            pieces, flags = [], []
            for i in b.members:
                total, used = self._total(i)
                pieces.append(total.reshape(-1) * scale)
                flags.append(1.0 if used else 0.0)
                if i in self.live and not used:
                    unreached.append(i)
            flat = F.cat(pieces + [_constant(flags + [0.0] * b.late_count, pieces[0])])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            start = 0
            for i, n in zip(b.members, b.sizes):
                p = self.ddp._params[i]
                if i in self.live:
                    p.grad = flat[start:start + n].reshape(tuple(p.shape)).clone()
                start += n
        if unreached:
            _warn_unreached(self.ddp, unreached)

    def _total(self, i: int):
        """(The gradient this step adds to `.grad` so far, whether this rank has one)."""
        p = self.ddp._params[i]
        old = p.grad if i in self.live else None
        gs = self.collected.get(i, [])
        total = old
        for g in gs:
            total = g if total is None else total + g
        if total is None:
            return F.full(tuple(p.shape), 0, p.dtype, like=p), False
        return total, True


def _constant(values: list, like):
    from kiln.frontend.creation import tensor
    return tensor(values, dtype=like.dtype)


def _warn_unreached(ddp, unreached: list[int]) -> None:
    names = {id(p): n for n, p in ddp.module.named_parameters()}
    which = [names.get(id(ddp._params[i]), f"#{i}") for i in sorted(unreached)]
    shown = ", ".join(which[:6]) + (", ..." if len(which) > 6 else "")
    warnings.warn(
        f"DistributedDataParallel under @kiln.jit: this rank's step gives no gradient to "
        f"{shown}; they get the average of the other ranks' gradients, and zeros where no "
        "rank gives one (not supported yet under jit: eagerly, as in PyTorch, a parameter no "
        "rank used keeps .grad None, so weight decay and momentum leave it alone). Give "
        "them a gradient (`opt.zero_grad(set_to_none=False)`) or run the step eagerly if "
        "that matters", DDPJitWarning, stacklevel=2)
