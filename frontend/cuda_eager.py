"""Eager ops on CUDA tensors: each op, with its attributes and input types, becomes a one-op
graph compiled once for the GPU (fusion, schedule, memory plan, PTX) and cached, then runs on
the process's CUDA device (kiln.cuda). A CUDA tensor's storage is a DeviceArray.

Views are copies on the GPU for now (a DeviceArray is one contiguous block): a view op's
result remembers its base's version counter, and reading it after the base was written in
place, or writing into it, raises instead of giving PyTorch-different results. Views that
are a contiguous block of their base (reshapes, leading-row slices) alias it, as on the CPU
(frontend/views.py, cuda_alias). tests/frontend/test_cuda_tensors.py runs all of this on the
simulated GPU (KILN_FAKE_CUDA=1).
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import numpy as np

from kiln.ir.errors import KilnError, NotSupportedError
from kiln.ir.types import user_loc
from kiln.runtime.cuda.array import DeviceArray

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 1024
_LOCK = threading.Lock()


def on_cuda(t) -> bool:
    return type(t._data) is DeviceArray


def cuda_device():
    import kiln.cuda
    return kiln.cuda._device()


def operands_on_cuda(op: str, inputs) -> bool:
    """Whether op runs on the GPU: every tensor input on it (a 0-d CPU tensor is moved, as
    PyTorch does), or none; else PyTorch's error, naming both devices."""
    cuda = [type(t._data) is DeviceArray for t in inputs]
    if not any(cuda):
        return False        # NOTE: the CPU's case: every eager op asks
    if all(cuda):
        return True
    cpu = [t for t, c in zip(inputs, cuda) if not c and t._data.ndim > 0]
    if cpu:
        raise KilnError(f"{op}: Expected all tensors to be on the same device, but found at "
                        "least two devices, cuda:0 and cpu!", loc=user_loc())
    return True


def to_cuda_arrays(inputs) -> list:
    dev = cuda_device()
    return [t._data if on_cuda(t) else dev.from_host(t._data) for t in inputs]


def run_op_cuda(opdef, attrs, arrays: list, in_types) -> list:
    """The op's results, as DeviceArrays, computed on the GPU."""
    exe = _executable(opdef.name, attrs, tuple(in_types))
    outs = exe(arrays)
    inputs = {a.ptr for a in arrays if a.nbytes}
    # NOTE: a result must never share memory with an input (an in-place op on it would reach
    # the input): an op whose output is its input (a no-op cast) gets a copy
    return [o.copy() if o.nbytes and o.ptr in inputs else o for o in outs]


def _executable(op: str, attrs, in_types: tuple):
    key = (op, attrs, in_types)
    with _LOCK:
        exe = _CACHE.get(key)
        if exe is not None:
            _CACHE.move_to_end(key)
            return exe
    exe = _compile(op, attrs, in_types)
    with _LOCK:
        _CACHE[key] = exe
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return exe


def _compile(op: str, attrs, in_types: tuple):
    from kiln.frontend.compile import plan_graph
    from kiln.ir.builder import GraphBuilder
    from kiln.passes.fusion import fuse_elementwise
    from kiln.runtime.executable import build_executable
    g = GraphBuilder(op)
    xs = [g.add_input(t) for t in in_types]
    graph = g.finish(list(g.emit(op, xs, attrs)))
    schedule, _ = plan_graph(fuse_elementwise(graph))
    return build_executable(schedule, cuda_device(), cuda_renderer())


@functools.cache
def cuda_renderer():
    from kiln.codegen.cuda import CudaRenderer
    return CudaRenderer()


# ---- transfers ------------------------------------------------------------------------------
def to_device(t, device: str):
    """A copy of eager tensor `t` on `device` ("cuda" or "cpu"); `t` itself when it is there.
    Differentiable, as PyTorch's: the gradient goes back to `t`'s device."""
    from . import autograd
    from .tensor import Tensor
    there = on_cuda(t)
    if (device == "cuda") == there:
        return t
    data = cuda_device().from_host(t._data) if device == "cuda" else t._data.to_host()
    out = Tensor._wrap(data)
    if t._requires_grad and autograd.is_grad_enabled():
        back = "cuda" if there else "cpu"
        node = autograd.TapeNode("to_copy", lambda ctx, g: [to_device(g, back)], [t],
                                 [autograd.save(out)], None)
        out._requires_grad, out.grad_fn, out._out_index = True, node, 0
        out._view_version = out._version[0]
    return out


def host_array(t) -> np.ndarray:
    """The values of a CUDA tensor, copied to the host (printing, item, tolist)."""
    return t._data.to_host()


# ---- views are copies -----------------------------------------------------------------------
def check_fresh(t) -> None:
    """Raise when CUDA tensor `t`, a copy standing for a view, is older than its base."""
    copy_of = t._copy_of
    if copy_of is not None and copy_of[0][0] != copy_of[1]:
        raise NotSupportedError("not supported yet: a view of a CUDA tensor used after its "
                                "base was written in place (views of CUDA tensors are copies "
                                "for now; take the view again after the write)",
                                loc=user_loc())


def refuse_write(t) -> None:
    if t._copy_of is not None:
        raise NotSupportedError("not supported yet: writing in place into a view of a CUDA "
                                "tensor (views of CUDA tensors are copies for now); write "
                                "into the base tensor", loc=user_loc())


def device_write(dst: DeviceArray, src) -> None:
    """dst[...] = src, src a DeviceArray of the same shape (or a host array)."""
    dev = cuda_device()
    if not isinstance(src, DeviceArray):
        src = dev.from_host(np.array(src, dtype=dst.dtype, order="C"))  # NOTE: keeps 0-d
    if src.shape != dst.shape or src.dtype != dst.dtype:
        raise KilnError(f"in-place write of {src.dtype}{list(src.shape)} into "
                        f"{dst.dtype}{list(dst.shape)} on cuda")
    dev.copy(dst, src)
