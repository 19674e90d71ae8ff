"""`kiln.distributed`: data-parallel training across processes and machines over MPI, with
torch.distributed's names.

Start the processes with `kiln run -n 4 train.py` (or `mpiexec -n 4 python train.py`); in
each, `init_process_group("mpi")` joins the group, and the collectives (`all_reduce`,
`broadcast`, `all_gather`, `reduce_scatter`, `barrier`) work on tensors in place, with
`async_op=True` returning a `Work` to `wait()` on. `kiln.nn.parallel.DistributedDataParallel`
averages gradients over the ranks during `backward()`, and
`kiln.utils.data.DistributedSampler` gives each rank its shard of a dataset.

    >>> import kiln, kiln.distributed as dist
    >>> dist.init_process_group("mpi")           # alone: a world of one process
    >>> t = kiln.arange(4.0)
    >>> dist.all_reduce(t, op=dist.ReduceOp.AVG)
    >>> t.tolist(), dist.get_world_size()
    ([0.0, 1.0, 2.0, 3.0], 1)
    >>> dist.destroy_process_group()

A rank that dies, raises or leaves early makes the others fail with a DistError naming it
(within a second on one machine); every collective is bounded by the group's timeout; ranks
that call collectives with different shapes all get an error saying which rank had which.
"""
from __future__ import annotations

from . import process_group as _process_group
from .collectives import (all_gather, all_gather_into_tensor, all_reduce, barrier, broadcast,
                          reduce_scatter, reduce_scatter_tensor)
from .errors import DistError
from .reduce_op import ReduceOp
from .lifecycle import (destroy_process_group, get_backend, get_rank, get_world_size,
                    init_process_group, is_available, is_gloo_available, is_initialized,
                    is_mpi_available, is_nccl_available)
from .work import Work


class group:
    """`kiln.distributed.group.WORLD`: the default group (the only one so far)."""

    WORLD = _process_group.WORLD


DistBackendError = DistError

__all__ = ["DistBackendError", "DistError", "ReduceOp", "Work", "all_gather",
           "all_gather_into_tensor", "all_reduce", "barrier", "broadcast",
           "destroy_process_group", "get_backend", "get_rank", "get_world_size", "group",
           "init_process_group", "is_available", "is_gloo_available", "is_initialized",
           "is_mpi_available", "is_nccl_available", "reduce_scatter", "reduce_scatter_tensor"]
