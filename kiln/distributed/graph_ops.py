"""What the collective graph ops (ir/ops/collective.py) do when a compiled function runs:
hand a copy of the operand to the default group's communication thread and wait for it.

The copy matters: a reference step's operand may be a graph input or a value other nodes
still read, and the result is a new array (the graph writes it back where the program said).
"""
from __future__ import annotations

import numpy as np

from . import process_group as _group
from . import jobs
from .errors import DistError


def _world(what: str, world_size: int | None = None):
    pg = _group.require(f"{what} inside a compiled function")
    if world_size is not None and world_size != pg.size:
        raise DistError(f"{what}: compiled for a world of {world_size} processes, running in "
                        f"one of {pg.size}")
    return pg


def all_reduce(x: np.ndarray, op: str) -> np.ndarray:
    pg = _world("all_reduce")
    out = np.array(x, order="C", copy=True)
    pg.engine.run(jobs.AllReduce(out, op))
    return out


def broadcast(x: np.ndarray, src: int) -> np.ndarray:
    pg = _world("broadcast")
    if src >= pg.size:
        raise DistError(f"broadcast: src={src} is not a rank of a world of {pg.size}")
    out = np.array(x, order="C", copy=True)
    pg.engine.run(jobs.Broadcast(out, root=src))
    return out


def all_gather(x: np.ndarray, world_size: int) -> np.ndarray:
    pg = _world("all_gather", world_size)
    part = np.ascontiguousarray(x)
    out = np.empty((pg.size,) + part.shape, part.dtype)
    pg.engine.run(jobs.AllGather(part, out))
    return out


def reduce_scatter(x: np.ndarray, op: str, world_size: int) -> np.ndarray:
    pg = _world("reduce_scatter", world_size)
    parts = np.ascontiguousarray(x)
    out = np.empty(parts.shape[1:], parts.dtype)
    pg.engine.run(jobs.ReduceScatter(parts, out, op))
    return out


def barrier() -> np.ndarray:
    _world("barrier").engine.run(jobs.Barrier())
    return np.zeros((), np.int64)
