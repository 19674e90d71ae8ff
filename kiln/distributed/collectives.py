"""The collectives, with torch.distributed's signatures: in place on tensors, every rank
calling the same ones in the same order.

Eagerly a collective is queued on the default group's communication thread (engine.py) and
works on the tensor's own storage (a contiguous copy, written back, for a strided view); the
storage's version counter goes up, as for any in-place op. `async_op=True` returns a `Work`
at once; otherwise the call returns None when the collective has completed. Inside
`@kiln.jit` a collective is a node of the graph (traced.py).
"""
from __future__ import annotations

import numpy as np

from kiln.frontend.tensor import Tensor
from kiln.frontend.trace import current_trace
from kiln.ir.errors import NotSupportedError

from . import process_group as _group
from . import jobs, traced
from .errors import DistError
from .reduce_op import ReduceOp, op_name

_DTYPES = (np.float32, np.float64, np.int32, np.int64, np.bool_)


# ---- checks ---------------------------------------------------------------------------------
def _world(group, what: str):
    if group is not None and group is not _group.WORLD:
        raise NotSupportedError(f"not supported yet: {what} on a process group other than "
                                "the default one (new_group)")
    return _group.require(what)


def _check_tensor(what: str, t, name: str = "tensor") -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"Invalid function argument. Expected parameter `{name}` of type "
                        f"kiln.Tensor but got {type(t)} instead ({what}).")
    if t.is_cuda:
        raise NotSupportedError(f"not supported yet: {what} on a CUDA tensor (NCCL will come "
                                "behind the same interface); move it to the CPU first")
    if t._trace is None and t._data.dtype.type not in _DTYPES:
        raise DistError(f"{what}: unsupported dtype in {_text(t)}")


def _text(t) -> str:
    """`f32[2,3]`: a tensor's dtype and shape as the IR prints them."""
    return f"{t.dtype.value}[{','.join(map(str, t.shape))}]"


def _check_reduce(what: str, op, t) -> str:
    name = op_name(op)
    if name == "avg" and not t.dtype.is_float:
        raise DistError(f"{what}: ReduceOp.AVG needs a floating-point tensor, got {_text(t)}")
    return name


def _check_list(what: str, tensors, like, size: int, name: str) -> list:
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{what}: {name} must be a list of tensors, got "
                        f"{type(tensors).__name__}")
    if len(tensors) != size:
        raise DistError(f"{what}: {name} has {len(tensors)} tensors; it needs one per rank "
                        f"({size})")
    for i, t in enumerate(tensors):
        _check_tensor(what, t, f"{name}[{i}]")
        if tuple(t.shape) != tuple(like.shape) or t.dtype != like.dtype:
            raise DistError(f"{what}: {name}[{i}] is {_text(t)} but the tensor is "
                            f"{_text(like)}; they must match")
    return list(tensors)


# ---- eager buffers --------------------------------------------------------------------------
def _inplace_buffer(t: Tensor):
    """(contiguous array the collective writes, function writing it back into t or None)."""
    from kiln.frontend.views import check_writable
    check_writable(t)
    arr = t._data
    if arr.flags.c_contiguous and arr.flags.writeable:
        return arr, None
    tmp = np.ascontiguousarray(arr)
    return tmp, lambda: np.copyto(arr, tmp)


def _bump(*tensors) -> None:
    for t in tensors:
        t._version[0] += 1


def _finish(work, async_op: bool):
    if async_op:
        return work
    work.wait()
    return None


# ---- the collectives -----------------------------------------------------------------------
def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce `tensor` over all ranks, in place: every rank gets the sum (or average,
    product, min, max) of every rank's values.

    >>> import kiln, kiln.distributed as dist
    >>> dist.init_process_group("mpi")
    >>> t = kiln.tensor([1.0, 2.0]) * (dist.get_rank() + 1)
    >>> dist.all_reduce(t, op=dist.ReduceOp.SUM)
    >>> t.tolist()                               # one process: its own values
    [1.0, 2.0]
    >>> dist.destroy_process_group()
    """
    pg = _world(group, "all_reduce")
    _check_tensor("all_reduce", tensor)
    name = _check_reduce("all_reduce", op, tensor)
    trace = current_trace()
    if trace is not None:
        return traced.all_reduce(trace, tensor, name, async_op)
    buf, back = _inplace_buffer(tensor)
    work = pg.engine.submit(jobs.AllReduce(buf, name, after=back), [tensor])
    _bump(tensor)
    return _finish(work, async_op)


def broadcast(tensor, src: int, group=None, async_op: bool = False):
    """Copy rank `src`'s `tensor` into every rank's `tensor`."""
    pg = _world(group, "broadcast")
    _check_tensor("broadcast", tensor)
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < pg.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {pg.size}), got {src!r}")
    trace = current_trace()
    if trace is not None:
        return traced.broadcast(trace, tensor, src, async_op)
    buf, back = _inplace_buffer(tensor)
    work = pg.engine.submit(jobs.Broadcast(buf, root=src, after=back), [tensor])
    _bump(tensor)
    return _finish(work, async_op)


def all_gather(tensor_list, tensor, group=None, async_op: bool = False):
    """Fill `tensor_list[r]` with rank r's `tensor`, on every rank."""
    pg = _world(group, "all_gather")
    _check_tensor("all_gather", tensor)
    outs = _check_list("all_gather", tensor_list, tensor, pg.size, "tensor_list")
    trace = current_trace()
    if trace is not None:
        return traced.all_gather(trace, outs, tensor, pg.size, async_op)
    part = np.ascontiguousarray(tensor._data)
    gathered = np.empty((pg.size,) + part.shape, part.dtype)

    def scatter_back():
        for out, piece in zip(outs, gathered):
            np.copyto(out._data, piece)
    work = pg.engine.submit(jobs.AllGather(part, gathered, after=scatter_back), outs)
    _bump(*outs)
    return _finish(work, async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op: bool = False):
    """Every rank's `input_tensor`, in rank order, into `output_tensor` (world size times as
    many elements: stacked, or concatenated along the first axis)."""
    what = "all_gather_into_tensor"
    pg = _world(group, what)
    _check_tensor(what, input_tensor, "input_tensor")
    _check_tensor(what, output_tensor, "output_tensor")
    _check_parts(what, output_tensor, input_tensor, pg.size)
    trace = current_trace()
    if trace is not None:
        return traced.gather_into(trace, output_tensor, input_tensor, pg.size, async_op)
    buf, back = _inplace_buffer(output_tensor)
    part = np.ascontiguousarray(input_tensor._data)
    gathered = buf.reshape((pg.size,) + part.shape)
    work = pg.engine.submit(jobs.AllGather(part, gathered, after=back), [output_tensor])
    _bump(output_tensor)
    return _finish(work, async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce `input_list[r]` over all ranks into rank r's `output`."""
    pg = _world(group, "reduce_scatter")
    _check_tensor("reduce_scatter", output, "output")
    parts = _check_list("reduce_scatter", input_list, output, pg.size, "input_list")
    name = _check_reduce("reduce_scatter", op, output)
    trace = current_trace()
    if trace is not None:
        from kiln.frontend.functional import stack
        return traced.reduce_scatter(trace, output, stack(parts), name, pg.size, async_op)
    stacked = np.stack([np.asarray(t._data) for t in parts])
    return _reduce_scatter_eager(pg, output, stacked, name, async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce `input` (world size times as many elements as `output`: one part per rank,
    along the first axis) over all ranks; rank r's `output` gets part r."""
    what = "reduce_scatter_tensor"
    pg = _world(group, what)
    _check_tensor(what, output, "output")
    _check_tensor(what, input, "input")
    _check_parts(what, input, output, pg.size)
    name = _check_reduce(what, op, output)
    shape = (pg.size,) + tuple(output.shape)
    trace = current_trace()
    if trace is not None:
        return traced.reduce_scatter(trace, output, input.reshape(shape), name, pg.size,
                                     async_op)
    stacked = np.ascontiguousarray(input._data).reshape(shape)
    return _reduce_scatter_eager(pg, output, stacked, name, async_op)


def _reduce_scatter_eager(pg, output, stacked, name: str, async_op: bool):
    buf, back = _inplace_buffer(output)
    work = pg.engine.submit(jobs.ReduceScatter(stacked, buf, name, after=back), [output])
    _bump(output)
    return _finish(work, async_op)


def _check_parts(what: str, whole, part, size: int) -> None:
    if whole.dtype != part.dtype or whole.numel() != size * part.numel():
        raise DistError(f"{what}: {_text(whole)} must hold {size} (the world size) parts of "
                        f"{_text(part)}")


def barrier(group=None, async_op: bool = False, device_ids=None):
    """Wait until every rank has called `barrier`."""
    pg = _world(group, "barrier")
    trace = current_trace()
    if trace is not None:
        return traced.barrier(trace, async_op)
    return _finish(pg.engine.submit(jobs.Barrier()), async_op)
