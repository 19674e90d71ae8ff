"""Every collective across the ranks of the job, eagerly and inside @kiln.jit; each rank
checks its own results (an AssertionError fails the job) and prints `OK` at the end.

    python -m kiln.distributed.launch -n 2 collectives.py
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np

import kiln
import kiln.distributed as dist


def check(got, want, what: str) -> None:
    got = np.asarray(got.tolist() if hasattr(got, "tolist") else got)
    assert np.array_equal(got, np.asarray(want)), f"{what}: got {got}, want {want}"


def reductions(r: int, n: int) -> None:
    ranks = np.arange(n)
    for op, want in (("SUM", ranks.sum() + n), ("AVG", ranks.mean() + 1),
                     ("MAX", n), ("MIN", 1), ("PRODUCT", np.prod(ranks + 1))):
        t = kiln.full((3,), float(r + 1))
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
        check(t, [want] * 3, f"all_reduce {op}")
    t = kiln.tensor([r, -r], dtype=kiln.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    check(t, [n - 1, 0], "all_reduce int64 MAX")
    b = kiln.tensor([r == 0, False])
    dist.all_reduce(b)
    check(b, [True, False], "all_reduce bool (or)")
    view = (kiln.arange(6.0).reshape(2, 3) * (r + 1)).t()      # NOTE: a strided view
    dist.all_reduce(view)
    check(view, np.arange(6.0).reshape(2, 3).T * (n * (n + 1) / 2), "all_reduce of a view")


def in_flight(r: int, n: int) -> None:
    """Several async collectives at once, waited for in reverse order."""
    tensors = [kiln.full((1000,), float(k + r)) for k in range(4)]
    works = [dist.all_reduce(t, async_op=True) for t in tensors]
    for w in reversed(works):
        assert w.wait() is True and w.is_completed() and w.is_success()
    for k, t in enumerate(tensors):
        check(t[:2], [k * n + n * (n - 1) / 2] * 2, f"async all_reduce {k}")


def data_movement(r: int, n: int) -> None:
    t = kiln.full((2,), float(r))
    dist.broadcast(t, src=n - 1)
    check(t, [n - 1.0] * 2, "broadcast")
    parts = [kiln.zeros(2) for _ in range(n)]
    dist.all_gather(parts, kiln.tensor([r, 10.0 * r]))
    check(kiln.stack(parts), [[k, 10.0 * k] for k in range(n)], "all_gather")
    whole = kiln.zeros(2 * n)
    dist.all_gather_into_tensor(whole, kiln.tensor([r, 10.0 * r]))
    check(whole, [v for k in range(n) for v in (k, 10.0 * k)], "all_gather_into_tensor")
    out = kiln.zeros(2)
    dist.reduce_scatter(out, [kiln.full((2,), float(k + r)) for k in range(n)])
    check(out, [n * r + n * (n - 1) / 2] * 2, "reduce_scatter")
    out = kiln.zeros(2)
    dist.reduce_scatter_tensor(out, kiln.arange(2.0 * n) + r, op=dist.ReduceOp.AVG)
    check(out, [2 * r + (n - 1) / 2, 2 * r + 1 + (n - 1) / 2], "reduce_scatter_tensor")
    dist.barrier()


def mismatch(r: int, n: int) -> None:
    """Different shapes on different ranks: every rank gets the same error, no data moves,
    and the group still works afterwards."""
    t = kiln.ones(3 + r)
    try:
        dist.all_reduce(t)
    except dist.DistError as e:
        text = str(e)
        assert "rank 0: all_reduce(f32[3], sum)" in text and "rank 1: all_reduce(f32[4]" \
            in text, text
    else:
        raise AssertionError("mismatched shapes were not reported")
    check(t, [1.0] * (3 + r), "a refused all_reduce leaves the tensor alone")
    ok = kiln.ones(2)
    dist.all_reduce(ok)
    check(ok, [float(n)] * 2, "all_reduce after a mismatch")


def jitted(r: int, n: int) -> None:
    """all_reduce and broadcast inside @kiln.jit: one trace for every call, each collective
    run exactly once per call (two equal-looking ones are not merged), results as eager."""
    engine = dist.process_group.current().engine

    @kiln.jit
    def f(x):
        a, b = x * 1, x * 1
        dist.all_reduce(a)
        dist.all_reduce(b, op=dist.ReduceOp.MAX)
        c = x + 1
        dist.broadcast(c, src=0)
        return a + b + c
    for step in range(3):
        x = kiln.full((4,), float(r + step))
        before = engine.completed
        got = f(x)
        assert engine.completed - before == 3, engine.completed - before
        want = sum(k + step for k in range(n)) + (n - 1 + step) + (step + 1)
        check(got, [want] * 4, f"jitted collectives, call {step}")
    assert f.traces == 1, f.traces


def ddp_buffers(r: int, n: int) -> None:
    """DDP gives every rank rank 0's buffers at each training forward (BatchNorm's running
    statistics), eagerly and inside a jitted step."""
    from kiln import nn
    from kiln.nn.parallel import DistributedDataParallel as DDP
    for jit in (False, True):
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
        ddp = DDP(model)

        def step(x):
            ddp(x).square().mean().backward()
        run = kiln.jit(step) if jit else step
        x = kiln.arange(24.0).reshape(6, 4)
        for i in range(2):
            with kiln.no_grad():
                model[1].running_mean.fill_(float(100 * r + i))    # NOTE: ranks disagree
            run(x)
        means = [kiln.zeros(8) for _ in range(n)]
        dist.all_gather(means, model[1].running_mean)
        for m in means[1:]:
            check(m, means[0].tolist(), f"running_mean after DDP steps (jit={jit})")


def main() -> int:
    warnings.simplefilter("error", kiln.KilnJitWarning)
    dist.init_process_group("mpi")
    r, n = dist.get_rank(), dist.get_world_size()
    # NOTE: kiln run sets PyTorch's launcher variables before the script starts
    env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK",
                                          "LOCAL_WORLD_SIZE")}
    assert env == {"RANK": str(r), "WORLD_SIZE": str(n), "LOCAL_RANK": str(r),
                   "LOCAL_WORLD_SIZE": str(n)}, env
    for part in (reductions, in_flight, data_movement, mismatch, jitted, ddp_buffers):
        part(r, n)
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
