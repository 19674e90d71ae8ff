"""`kiln.Tensor`: an eager NumPy-backed tensor, or a traced one inside `@kiln.jit`.

Every op goes through `Tensor._kiln_apply`, which runs the registry op's reference (eager) or
appends a node to the active trace, and records the op on the autograd tape.
"""
from __future__ import annotations

import numpy as np

from kiln.ir import dtypes
from kiln.ir.dtypes import DType
from kiln.ir.errors import KilnError, NotSupportedError
from kiln.ir.interpreter import run_op
from kiln.ir.registry import get_op
from kiln.ir.types import TensorType, user_loc
from kiln.runtime.profiling import EAGER_HOOK

from kiln.ir.ops.rules import contiguous_strides

from . import autograd, cuda_eager, views
from .cuda_eager import on_cuda
from .trace import GraphBreak, current_trace


class Size(tuple):
    """A tensor's shape: a tuple that prints as `kiln.Size([2, 3])`."""

    def __repr__(self):
        return f"kiln.Size({list(self)})"

    def numel(self) -> int:
        return int(np.prod(self, dtype=np.int64))


class device:
    """Where a tensor lives: `kiln.device("cpu")`, `kiln.device("cuda:0")`, `("cuda", 0)`."""

    def __init__(self, type="cpu", index=None):
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        elif isinstance(type, int) and not isinstance(type, bool):
            type, index = "cuda", type      # NOTE: PyTorch's `to(0)`: GPU 0
        text = str(type)
        if ":" in text:
            text, number = text.split(":", 1)
            index = int(number)
        if text not in ("cpu", "cuda"):
            raise KilnError(f"Expected one of cpu, cuda device type at start of device "
                            f"string: {type}")
        self.type, self.index = text, index

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type,
                                                                         other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"


def _attach_loc(e: KilnError):
    if e.loc is None:
        e.loc = user_loc()
        e.args = (e._render(),)
    return e


class Tensor:
    """A multi-dimensional array with autograd, like `torch.Tensor`.

    >>> import kiln
    >>> kiln.tensor([2.0, 3.0]) + kiln.tensor([4.0, 1.0])
    tensor([6., 4.])
    """

    # NOTE: the storage model is PyTorch's, on NumPy: `_data` is an ndarray, and a view's
    # ndarray is a NumPy view of its base's memory, so in-place writes reach every alias.
    # `_version` is the storage's version counter (a one-item list shared by every alias);
    # `_base` and `_view_ops` link a differentiable view to the tensor it views, for autograd.
    __slots__ = ("_data", "_trace", "_requires_grad", "_grad", "grad_fn", "_out_index",
                 "_version", "_base", "_view_ops", "_view_version", "_strides", "_saved",
                 "_copy_of", "__weakref__")
    __array_priority__ = 1000   # NOTE: make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, *data):
        """PyTorch's legacy constructor: `Tensor([1, 2])` is float32 whatever the data's
        type, `Tensor(2, 3)` an uninitialized (here zeroed) float32 [2, 3], `Tensor()` empty;
        prefer `kiln.tensor(data)`, which keeps the data's dtype."""
        if len(data) == 1 and isinstance(data[0], Tensor):
            other = data[0]
            self._init(other._data, other._trace)   # NOTE: PyTorch's alias of the tensor
            self._version = other._version
            return
        if data and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                        for d in data):
            arr = np.zeros(tuple(int(d) for d in data), np.float32)
        elif len(data) == 1 and isinstance(data[0], (list, tuple, np.ndarray)):
            arr = np.asarray(data[0]).astype(np.float32)
        elif not data:
            arr = np.zeros((0,), np.float32)
        else:
            raise TypeError(f"new(): data must be a sequence (got "
                            f"{', '.join(type(d).__name__ for d in data)})")
        self._init(np.ascontiguousarray(arr), None)

    def _init(self, data, trace):
        self._data = data
        self._trace = trace
        self._requires_grad = False
        self._grad = None
        self.grad_fn = None
        self._out_index = 0
        self._version = [0]
        self._base = None          # the tensor this one is a differentiable view of
        self._view_ops = ()        # the view ops from `_base` to this tensor: (op, attrs)
        self._view_version = 0     # storage version when this view's grad_fn was made
        self._strides = None       # traced tensors: strides in elements (None: row-major)
        self._saved = None         # autograd's saved copies: (version, grad_fn, out_index)
        self._copy_of = None       # CUDA: a copy standing for a view (base version, then)

    @classmethod
    def _wrap(cls, data, trace=None) -> "Tensor":
        t = cls.__new__(cls)
        t._init(data, trace)
        return t

    # ---- dispatch ---------------------------------------------------------------------------
    @staticmethod
    def _kiln_apply(op: str, inputs, attrs: dict, holder):
        opdef = get_op(op)
        stale = None
        for t in inputs:
            if t._saved is not None:
                stale = autograd.check_saved(t) or stale
            elif t._base is not None and t._view_version != t._version[0]:
                views.refresh_grad_fn(t)
        trace = current_trace()
        if trace is not None:
            values = [trace.value_of(t) for t in inputs]
            outs = trace.builder.emit(op, values, attrs, user_loc())
            results = [Tensor._wrap(v, trace) for v in outs]
            if trace.device == "cuda":
                trace.follow_host(values, outs, holder)
            if opdef.view is not None:
                views.link_traced(opdef, inputs[0], results[0], attrs)
        elif EAGER_HOOK[0] is None:
            results = _eager(opdef, inputs, attrs, holder)
        else:   # NOTE: a profiler or KILN_DEBUG=2 times the op (runtime/profiling.py)
            results = EAGER_HOOK[0](_eager, opdef, inputs, attrs, holder)
        if (opdef.differentiable and autograd.is_grad_enabled()
                and any(t._requires_grad for t in inputs)):
            _record(opdef, inputs, results, attrs)
        if stale is not None:
            autograd.mark_stale(results, stale)
        return results[0] if len(results) == 1 else tuple(results)

    def _type(self) -> TensorType:
        if self._trace is not None:
            return self._data.type
        return TensorType(dtypes.from_numpy(self._data.dtype), self._data.shape)

    def _array(self, why: str) -> np.ndarray:
        """The NumPy value; under tracing this needs the data, which a graph cannot give (a
        CUDA tensor's is copied to the host)."""
        if self._trace is not None:
            return self._trace.read_value(self, why)
        if on_cuda(self):
            cuda_eager.check_fresh(self)
            return cuda_eager.host_array(self)
        return self._data

    # ---- properties -------------------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self) -> DType:
        return self._type().dtype

    @property
    def device(self) -> device:
        return device("cuda", 0) if self.is_cuda else device("cpu")

    @property
    def is_cuda(self) -> bool:
        if self._trace is not None:
            return _traced_device(self, self._trace) == "cuda"
        return on_cuda(self)

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return self.shape.numel()

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def _fresh_history(self) -> None:
        """A view whose base was written since its history was made: rebuild it now."""
        if self._base is not None and self._view_version != self._version[0]:
            views.refresh_grad_fn(self)

    @property
    def is_leaf(self) -> bool:
        self._fresh_history()
        return self.grad_fn is None

    @property
    def grad(self):
        """The gradient accumulated by `backward()` (None until then)."""
        trace = current_trace()
        if trace is not None and trace.grads.owns(self):
            return trace.grads.get(self)    # NOTE: inside @kiln.jit: a graph value
        return self._grad

    @grad.setter
    def grad(self, value):
        trace = current_trace()
        if trace is not None and trace.grads.owns(self):
            trace.grads.set(self, value)
            return
        self._grad = value

    @property
    def requires_grad(self) -> bool:
        self._fresh_history()
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool):
        self.requires_grad_(value)

    def requires_grad_(self, value: bool = True) -> "Tensor":
        if not self.is_leaf and not value:
            raise KilnError("you can only change requires_grad flags of leaf variables")
        if value and not self.dtype.is_float:
            raise KilnError(f"only floating point tensors can require gradients, got "
                            f"{self.dtype}")
        self._requires_grad = bool(value)
        return self

    def retain_grad(self) -> None:
        if self.grad_fn is not None:
            autograd.retain(self)

    @property
    def data(self) -> "Tensor":
        return self.detach()

    @data.setter
    def data(self, value: "Tensor"):
        # NOTE: like PyTorch, self now shares value's storage; earlier aliases keep the old one.
        if current_trace() is not None and self._trace is None:
            raise GraphBreak("not supported yet: assigning `.data` of a tensor from outside "
                             "the @kiln.jit function inside it (use `with kiln.no_grad(): "
                             "t.copy_(value)`, which compiles)", loc=user_loc())
        self._data = value._data
        self._trace = value._trace
        self._version = value._version
        self._strides = value._strides
        self._copy_of = value._copy_of
        self._base = None
        self._view_ops = ()

    # ---- conversion -------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        if self._requires_grad:
            raise KilnError("Can't call numpy() on Tensor that requires grad. Use "
                            "tensor.detach().numpy() instead.")
        _refuse_cuda_numpy(self)
        return self._array("numpy()")

    def item(self):
        arr = self._array("item()")
        if arr.size != 1:
            raise KilnError(f"a Tensor with {arr.size} elements cannot be converted to Scalar")
        return arr.reshape(()).item()

    def tolist(self):
        return self._array("tolist()").tolist()

    def __bool__(self):
        arr = self._array("bool()")
        if arr.size != 1:
            raise KilnError(f"Boolean value of Tensor with {arr.size} values is ambiguous")
        return bool(arr.reshape(()))

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.is_float or self.dtype == DType.bool:
            raise TypeError("only integer tensors of a single element can be converted "
                            "to an index")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        _refuse_cuda_numpy(self)
        arr = self._array("conversion to NumPy")
        return arr if dtype is None else arr.astype(dtype)

    def detach(self) -> "Tensor":
        """A tensor outside autograd that shares this one's storage: an in-place op on either
        one is seen by both, as in PyTorch (`p.data.add_(u)` updates p)."""
        if self._trace is not None:
            # NOTE: in a trace, a node: the graph autograd pass must not differentiate through
            with autograd.no_grad():
                return Tensor._kiln_apply("stop_gradient", [self], {}, self)
        return self._alias()

    def _alias(self) -> "Tensor":
        """A new Tensor object over the same storage and version counter, with no history."""
        alias = Tensor._wrap(self._data, self._trace)
        alias._version = self._version
        alias._strides = self._strides
        alias._copy_of = self._copy_of      # NOTE: an alias of a CUDA view's copy is one too
        return alias

    def _elem_strides(self) -> tuple:
        """Strides in elements: NumPy's for eager tensors, tracked ones for traced tensors."""
        if self._trace is None:
            if self._copy_of is not None:
                return self._strides        # NOTE: the strides of the CUDA view it copies
            size = self._data.itemsize
            return tuple(s // size for s in self._data.strides)
        if self._strides is not None:
            return self._strides
        return contiguous_strides(self._data.type.shape)

    def clone(self) -> "Tensor":
        from . import functional as F
        return F.clone(self)

    def to(self, *args, **kwargs) -> "Tensor":
        """`t.to("cuda")`, `t.to(kiln.float64)`, `t.to(device, dtype)`, `t.to(other)`."""
        from . import functional as F
        dtype, dev = kwargs.get("dtype"), kwargs.get("device")
        for a in args:
            if isinstance(a, Tensor):
                dtype, dev = a.dtype, a.device
            elif isinstance(a, (DType, type)) or (isinstance(a, str) and a in ("f32", "f64")):
                dtype = a
            else:
                dev = a
        for key in kwargs:
            if key not in ("dtype", "device", "copy", "non_blocking"):
                raise TypeError(f"to() got an unexpected keyword argument '{key}'")
        out = self if dtype is None else F.cast(self, dtype)
        if dev is not None:
            where = device(dev)
            if where.type == "cuda" and where.index not in (None, 0):
                raise KilnError(f"CUDA error: invalid device ordinal ({where}: Kiln uses one "
                                "GPU, cuda:0)", loc=user_loc())
            out = _to_device(out, where.type)
        return out.clone() if kwargs.get("copy") and out is self else out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, device=None, non_blocking: bool = False) -> "Tensor":
        return self.to("cuda" if device is None else
                       f"cuda:{device}" if isinstance(device, int) else device)

    def type_as(self, other: "Tensor") -> "Tensor":
        return self.to(other.dtype)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool_)

    # ---- autograd ---------------------------------------------------------------------------
    def backward(self, gradient: "Tensor | None" = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs=None) -> None:
        """Accumulate gradients of this tensor into the leaves' `.grad` (or only `inputs`');
        the graph's saved values are freed unless `retain_graph=True` (a second backward
        then raises); `create_graph=True` makes the gradients differentiable."""
        autograd.tensor_backward(self, gradient, retain_graph, create_graph, inputs)

    def __repr__(self) -> str:
        from .format import format_tensor
        return format_tensor(self)

    __str__ = __repr__

    def __hash__(self):
        return id(self)

    def __deepcopy__(self, memo):
        """A new leaf with copied values (no shared data, no alias links), like PyTorch."""
        if self.grad_fn is not None:
            raise KilnError("Only Tensors created explicitly by the user (graph leaves) "
                            "support the deepcopy protocol at the moment")
        if id(self) in memo:
            return memo[id(self)]
        out = Tensor._wrap(self._array("deepcopy").copy())
        if on_cuda(self):
            out = cuda_eager.to_device(out, "cuda")
        out._requires_grad = self._requires_grad
        memo[id(self)] = out
        if self.grad is not None:
            import copy
            out.grad = copy.deepcopy(self.grad, memo)
        return out

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor, (self._array("pickle"), self._requires_grad, on_cuda(self)))

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))


def _rebuild_tensor(array: np.ndarray, requires_grad: bool, cuda: bool = False) -> Tensor:
    t = Tensor._wrap(array)
    if cuda:
        t = cuda_eager.to_device(t, "cuda")
    t._requires_grad = requires_grad
    return t


def _eager(opdef, inputs, attrs, holder=None) -> list[Tensor]:
    try:
        a = opdef.make_attrs(attrs)
        types = opdef.infer([t._type() for t in inputs], a)
    except KilnError as e:
        raise _attach_loc(e) from None
    if cuda_eager.operands_on_cuda(opdef.name, inputs) if inputs else (
            isinstance(holder, Tensor) and on_cuda(holder)):
        return _eager_cuda(opdef, inputs, a)
    arrays = [t._data for t in inputs]
    if opdef.view is not None:
        view = views.eager_view(opdef, inputs[0], a, types[0])
        if view is not None:
            return [view]
    outs = run_op(opdef.name, a, arrays, types)
    return [Tensor._wrap(_fresh(arr, arrays)) for arr in outs]


def _eager_cuda(opdef, inputs, a) -> list[Tensor]:
    """The op on the GPU (frontend/cuda_eager.py); a view op's result is a copy standing for
    the view, checked for staleness where it is used."""
    for t in inputs:
        cuda_eager.check_fresh(t)
    base = inputs[0] if opdef.view is not None else None
    layout = views.view_layout(opdef, base, a) if base is not None else None
    if layout is not None and on_cuda(base):
        view = views.cuda_alias(opdef, base, a, layout, opdef.infer([base._type()], a)[0])
        if view is not None:
            return [view]
    outs = cuda_eager.run_op_cuda(opdef, a, cuda_eager.to_cuda_arrays(inputs),
                                  [t._type() for t in inputs])
    results = [Tensor._wrap(o) for o in outs]
    if layout is not None:
        # NOTE: a view the CPU would make (where it copies, so does this: a new tensor); a
        # copy of a copy stands for a view of the first copy's base
        for r in results:
            r._copy_of = base._copy_of or (base._version, base._version[0])
            r._strides = tuple(layout[0])
    return results


def _to_device(t: Tensor, where: str) -> Tensor:
    trace = t._trace or current_trace()
    if trace is not None:
        here = _traced_device(t, trace)
        if here == where:
            return t
        if here == "cpu" and where == trace.device and t.ndim == 0:
            # NOTE: a CPU scalar moved onto the graph's device: a host value no more
            from . import functional as F
            out = F.clone(t)
            trace.host.discard(out._data)
            return out
        # NOTE: a graph break: moving between devices mid-function runs eagerly
        trace.require_device(here if here != trace.device else where,
                             f"moving a tensor from {here} to {where}")
    if on_cuda(t):
        cuda_eager.check_fresh(t)
    return cuda_eager.to_device(t, where)


def _traced_device(t: Tensor, trace) -> str:
    """Where t is in the user's program, while `trace` is active (t traced or from outside)."""
    if t._trace is None:
        return "cuda" if on_cuda(t) else "cpu"
    return "cpu" if t._data in trace.host else trace.device


def _refuse_cuda_numpy(t: Tensor) -> None:
    if on_cuda(t):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() "
                        "to copy the tensor to host memory first.")


def _fresh(arr: np.ndarray, inputs) -> np.ndarray:
    """`arr` as new, writable, row-major storage: a result that is not a view must never
    share memory with an input (an in-place op on it would reach the input)."""
    if (not arr.flags.c_contiguous or not arr.flags.writeable
            or any(np.may_share_memory(arr, x) for x in inputs)):
        return np.array(arr, order="C", copy=True)
    return arr


def _record(opdef, inputs, results, attrs):
    from kiln.ir.attrs import Attrs
    a = attrs if isinstance(attrs, Attrs) else opdef.make_attrs(attrs)
    saved = [autograd.save(r) for r in results]
    node = autograd.TapeNode(opdef.name, opdef.vjp, list(inputs), saved, a)
    for i, r in enumerate(results):
        if r.dtype.is_float:
            r._requires_grad = True
            r.grad_fn = node
            r._out_index = i
            r._view_version = r._version[0]
