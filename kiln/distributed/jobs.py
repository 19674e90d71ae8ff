"""One collective as the communication thread runs it: a signature check, then MPI.

Before moving any data, every rank's job contributes its signature (which collective, reduce
op, dtype, shape, root) to one small all-reduce of (max, -min): when the ranks disagree, they
all learn it at once, exchange descriptions and raise the same DistError; MPI never sees
buffers of different sizes (which it would silently truncate or overrun).
"""
from __future__ import annotations

import zlib

import numpy as np

from .errors import DistError

_NAMES = ("all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier")
_OPS = ("", "sum", "avg", "product", "min", "max")
_SHAPE_SLOTS = 6


def short_type(a: np.ndarray) -> str:
    """`f32[4,3]`: an array's dtype and shape as the IR prints them."""
    from kiln.ir.dtypes import from_numpy
    return f"{from_numpy(a.dtype).value}[{','.join(map(str, a.shape))}]"


class Job:
    """A collective: `run(comm, MPI)` on the communication thread, then `after()`.
    `check` says whether the signature check runs first (DDP skips it for the buckets after
    the first of a step: their layout is checked once, when the model is wrapped)."""

    name = ""
    check = True

    def __init__(self, array: np.ndarray, op: str = "", root: int = -1, after=None):
        self.array = array          # the array whose type the signature describes
        self.op = op
        self.root = root
        self.after = after          # NOTE: runs on the communication thread once MPI is done

    def describe(self) -> str:
        parts = [short_type(self.array)] if self.array is not None else []
        if self.op:
            parts.append(self.op)
        if self.root >= 0:
            parts.append(f"src={self.root}")
        return f"{self.name}({', '.join(parts)})"

    def signature(self) -> np.ndarray:
        a = self.array
        shape = () if a is None else a.shape
        dims = list(shape[:_SHAPE_SLOTS]) + [-1] * (_SHAPE_SLOTS - len(shape))
        if len(shape) > _SHAPE_SLOTS:
            dims[-1] = zlib.crc32(repr(shape).encode())
        dtype = 0 if a is None else zlib.crc32(a.dtype.str.encode())
        head = [_NAMES.index(self.name), _OPS.index(self.op), dtype, len(shape), self.root]
        return np.array(head + dims, np.int64)

    def check_signature(self, comm, MPI, seq: int) -> None:
        mine = self.signature()
        both = np.concatenate([mine, -mine])
        comm.Allreduce(MPI.IN_PLACE, both, op=MPI.MAX)
        if np.array_equal(both[:len(mine)], -both[len(mine):]):
            return
        seen = comm.allgather(self.describe())
        table = "; ".join(f"rank {r}: {d}" for r, d in enumerate(seen))
        raise DistError(f"the ranks called different collectives at collective #{seq}: "
                        f"{table}", hint="every rank must call the same collectives, in the "
                        "same order, with tensors of the same shape and dtype")

    def run(self, comm, MPI, size: int) -> None:
        self.transfer(comm, MPI, size)
        if self.after is not None:
            self.after()

    def transfer(self, comm, MPI, size: int) -> None:
        raise NotImplementedError


def _average(a: np.ndarray, size: int) -> None:
    np.divide(a, size, out=a, casting="unsafe")


class AllReduce(Job):
    name = "all_reduce"

    def transfer(self, comm, MPI, size):
        from .mpi import reduce_op
        comm.Allreduce(MPI.IN_PLACE, self.array, op=reduce_op(MPI, self.op,
                                                               self.array.dtype == bool))
        if self.op == "avg":
            _average(self.array, size)


class Broadcast(Job):
    name = "broadcast"

    def transfer(self, comm, MPI, size):
        comm.Bcast(self.array, root=self.root)


class AllGather(Job):
    """`array` is this rank's part; `out` gets every rank's, stacked."""

    name = "all_gather"

    def __init__(self, array, out, after=None):
        super().__init__(array, after=after)
        self.out = out

    def transfer(self, comm, MPI, size):
        comm.Allgather(self.array, self.out)


class ReduceScatter(Job):
    """`array` holds `size` equal parts; `out` gets the reduction of every rank's part r."""

    name = "reduce_scatter"

    def __init__(self, array, out, op, after=None):
        super().__init__(array, op, after=after)
        self.out = out

    def transfer(self, comm, MPI, size):
        from .mpi import reduce_op
        comm.Reduce_scatter_block(self.array, self.out,
                                  op=reduce_op(MPI, self.op, self.array.dtype == bool))
        if self.op == "avg":
            _average(self.out, size)


class Barrier(Job):
    """The signature check is itself a barrier: an all-reduce every rank must join."""

    name = "barrier"

    def __init__(self, what: str = ""):
        super().__init__(None)
        self.what = what

    def describe(self) -> str:
        return f"barrier({self.what})" if self.what else "barrier()"

    def transfer(self, comm, MPI, size):
        pass
