"""`DistributedDataParallel`: the same model on every rank, gradients averaged over ranks."""
from __future__ import annotations

import contextlib
import weakref
import zlib
from collections import OrderedDict

import numpy as np

from kiln.frontend.autograd import is_grad_enabled, no_grad
from kiln.frontend.trace import current_trace
from kiln.ir.errors import NotSupportedError

from ..module import Module
from . import buckets as _buckets
from .proxies import EagerForward, Tables
from .reducer import Reducer


class DistributedDataParallel(Module):
    """Wrap `module` for data-parallel training: construction copies rank 0's parameters
    (frozen ones too) and buffers to every rank; each `backward()` through its forward averages
    the gradients over all ranks, in buckets of about `bucket_cap_mb` (25) MiB, each
    all-reduced as soon as the backward has made its gradients while the rest of the backward
    runs. Use it as PyTorch's: `ddp(x)`, `ddp.module`, `with ddp.no_sync():` for gradient
    accumulation; its state dict has `module.`-prefixed keys, and `load_state_dict` takes
    either form.

    As in PyTorch: ranks may use different parameters (a parameter gets the average over all
    ranks, zeros from those that did not use it), and one no rank used keeps its `.grad`
    (None stays None); several forwards before one backward (a GAN's D(real) + D(fake)),
    outputs in dataclasses, loss terms the module keeps, `kiln.autograd.grad` for the input
    (FGSM) or with `create_graph=True` (gradient penalties) all work, with no
    `find_unused_parameters` needed. `kiln.autograd.grad(loss, params)` and
    `backward(inputs=...)` give this rank's own gradients, unaveraged (PyTorch's
    `autograd.grad` does the same). A parameter frozen after wrapping gets no gradient; one
    replaced (or unfrozen) after wrapping is an error at the next forward: wrap the model
    after changing its parameters. A second backward through the same forward
    (`retain_graph=True`) is not supported yet.

    Under `@kiln.jit`, jit the whole training step (forward, `loss.backward()`, optimizer
    step): the bucket all-reduces are compiled into it. One difference there: a parameter no
    rank used gets a zero `.grad` instead of None (whether another rank used it is known only
    when the compiled step runs); the trace warns (`DDPJitWarning`) when the step leaves
    parameters without a gradient on this rank.

    >>> import kiln, kiln.distributed as dist
    >>> from kiln import nn
    >>> from kiln.nn.parallel import DistributedDataParallel as DDP
    >>> dist.init_process_group("mpi")
    >>> model = DDP(nn.Linear(3, 1))
    >>> model(kiln.ones(2, 3)).sum().backward()
    >>> model.module.weight.grad.shape, list(model.state_dict())
    (kiln.Size([1, 3]), ['module.weight', 'module.bias'])
    >>> dist.destroy_process_group()
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group=None,
                 bucket_cap_mb: float | None = None, find_unused_parameters: bool = False,
                 check_reduction: bool = False, gradient_as_bucket_view: bool = False,
                 static_graph: bool = False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps a kiln.nn.Module, got "
                            f"{type(module).__name__}")
        _check_devices(module, device_ids, output_device)
        _check_group(process_group)
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        # NOTE: Kiln always handles parameters a step leaves unused (every rank sends every
        # bucket, with "used" flags): the flag is accepted for PyTorch's sake
        self.find_unused_parameters = bool(find_unused_parameters)
        self.gradient_as_bucket_view = bool(gradient_as_bucket_view)
        self._sync = True           # NOTE: `require_backward_grad_sync`; see _note_trace
        self._traced_in = None
        cap = _buckets.DEFAULT_CAP_MB if bucket_cap_mb is None else bucket_cap_mb
        if not cap > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb!r}")
        self.bucket_bytes_cap = int(cap * (1 << 20))
        self._params = [p for p in module.parameters() if p.requires_grad]
        # NOTE: every parameter (frozen ones too) and buffer, as PyTorch's _sync_module_states
        state = list(module.parameters()) + [b for b in module.buffers() if b is not None]
        _verify_same_parameters(state)
        _sync_from_rank0(state)
        self._buckets = _buckets.assign(self._params, self.bucket_bytes_cap)
        self._tables = Tables(module, self._params)
        self._reducer = Reducer(self._params, self._buckets, _engine, gradient_as_bucket_view)

    @property
    def require_backward_grad_sync(self) -> bool:
        """Whether a backward through the next forward averages gradients (False inside
        `no_sync()`)."""
        return self._sync

    @require_backward_grad_sync.setter
    def require_backward_grad_sync(self, value: bool) -> None:
        self._note_trace()
        self._sync = bool(value)

    def _note_trace(self) -> None:
        """Inside @kiln.jit, the compiled step depends on whether gradients are averaged:
        its value when the traced function was entered (before a `no_sync()` inside it
        changed it) is a guard of the compiled step."""
        trace = current_trace()
        if trace is not None and (self._traced_in is None or self._traced_in() is not trace):
            self._traced_in = weakref.ref(trace)
            entry = self._sync
            trace.add_guard(lambda: self._sync == entry,
                            f"DistributedDataParallel.require_backward_grad_sync == {entry}")

    def forward(self, *inputs, **kwargs):
        trace = current_trace()
        if trace is not None:
            self._note_trace()
        self._tables.check()
        if self.broadcast_buffers and self.training:
            self._sync_buffers()
        call = lambda: self.module(*inputs, **kwargs)  # noqa: E731
        if not (self.require_backward_grad_sync and is_grad_enabled() and self._params):
            return call()
        if trace is not None:
            from .traced import traced_forward
            return traced_forward(self, trace, call)
        step = self._reducer.open_step([p.requires_grad for p in self._params])
        return EagerForward(self, step).forward(call)

    def _sync_buffers(self) -> None:
        buffers = [b for b in self.module.buffers() if b is not None]
        if buffers and _world_size() > 1:
            _sync_from_rank0(buffers)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside this block, backward accumulates gradients locally (no communication); the
        first backward after it averages the accumulated gradients.

        >>> import kiln, kiln.distributed as dist
        >>> from kiln.nn.parallel import DistributedDataParallel as DDP
        >>> dist.init_process_group("mpi")
        >>> model = DDP(kiln.nn.Linear(2, 1))
        >>> with model.no_sync():
        ...     model(kiln.ones(1, 2)).sum().backward()      # local only
        >>> model(kiln.ones(1, 2)).sum().backward()          # synchronizes both
        >>> model.module.bias.grad.tolist()
        [2.0]
        >>> dist.destroy_process_group()
        """
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a state dict saved from this DDP model (`module.` keys) or from the plain
        model (keys without the prefix): both work."""
        keys = [k for k in state_dict if isinstance(k, str)]
        if keys and not any(k.startswith("module.") for k in keys):
            state_dict = _with_prefix(state_dict, "module.")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _engine():
    from kiln.distributed import process_group
    return process_group.require("DistributedDataParallel").engine


def _world_size() -> int:
    from kiln.distributed import get_world_size
    return get_world_size()


def _check_devices(module, device_ids, output_device) -> None:
    if device_ids not in (None, []) or output_device not in (None, "cpu"):
        raise NotSupportedError(f"not supported yet: DistributedDataParallel on devices "
                                f"{device_ids!r} (CPU tensors over MPI; NCCL for GPUs later)")
    for p in module.parameters():
        if p.is_cuda:
            raise NotSupportedError("not supported yet: DistributedDataParallel of a model on "
                                    "CUDA (NCCL for GPUs will come later); keep it on the CPU")


def _check_group(process_group) -> None:
    from kiln.distributed import group, process_group as pg
    pg.require("DistributedDataParallel")
    if process_group is not None and process_group is not group.WORLD:
        raise NotSupportedError("not supported yet: DistributedDataParallel over a group "
                                "other than the default one")


def _verify_same_parameters(params: list) -> None:
    """Every rank must wrap the same parameter and buffer shapes (else the buckets and the
    broadcasts would not match)."""
    from kiln import distributed as dist
    from kiln.frontend.tensor import Tensor
    shapes = [(str(p.dtype), tuple(p.shape)) for p in params]
    mine = np.array([len(params), zlib.crc32(repr(shapes).encode())], np.int64)
    every = Tensor._wrap(np.zeros((dist.get_world_size(), 2), np.int64))
    dist.all_gather_into_tensor(every, Tensor._wrap(mine))
    rows = every.numpy()
    differ = [r for r in range(len(rows)) if not np.array_equal(rows[r], mine)]
    if differ:
        raise dist.DistError(f"DistributedDataParallel: rank {dist.get_rank()} has "
                             f"{len(params)} parameters and buffers {shapes[:6]}"
                             f"{'...' if len(shapes) > 6 else ''}; rank(s) {differ} have a "
                             "different number or shapes of parameters and buffers",
                             hint="build the same model on every rank")


def _sync_from_rank0(tensors: list) -> None:
    from kiln import distributed as dist
    if dist.get_world_size() == 1:
        return
    with no_grad():
        works = [dist.broadcast(t, src=0, async_op=True) for t in tensors]
        for w in works:
            w.wait()


def _with_prefix(state_dict, prefix: str):
    out = OrderedDict((prefix + k if isinstance(k, str) else k, v)
                      for k, v in state_dict.items())
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = OrderedDict((prefix + k if k else prefix[:-1], v)
                                    for k, v in metadata.items())
    return out


def consume_prefix_in_state_dict_if_present(state_dict, prefix: str) -> None:
    """Strip `prefix` from the keys that have it, in place (PyTorch's helper of the same
    name): a DDP model's state dict loads into the plain model after
    `consume_prefix_in_state_dict_if_present(sd, "module.")`.

    >>> from collections import OrderedDict
    >>> sd = OrderedDict([("module.weight", 1), ("module.bias", 2)])
    >>> consume_prefix_in_state_dict_if_present(sd, "module.")
    >>> list(sd)
    ['weight', 'bias']
    """
    for key in [k for k in state_dict if isinstance(k, str) and k.startswith(prefix)]:
        state_dict[key[len(prefix):]] = state_dict.pop(key)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        for key in [k for k in metadata if k == prefix[:-1] or k.startswith(prefix)]:
            metadata["" if key == prefix[:-1] else key[len(prefix):]] = metadata.pop(key)
