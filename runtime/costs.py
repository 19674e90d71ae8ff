"""What a step or an op moves and computes: the bytes and flops the profiler and `KILN_DEBUG=2`
divide by its time. A cost model, like tinygrad's: it counts the work a step must do, not the
instructions a machine runs.

- bytes: each buffer a step reads or writes, once. A kernel's access touches the elements its
  strides reach over the iteration space (a broadcast operand, stride 0, is read once, not
  once per use); a library call or a host step reads its operands and writes its results
  whole. Caches are not modelled: a kernel that reads a row twice is counted once.
- flops: one per element for each elementwise op (a transcendental such as `exp` counts one,
  like `add`; `cast`, `copy` and `stop_gradient` count none), one per element read for each
  reduction, 2·M·N·K for a matmul (per batch matrix), 2 per multiply-add of a convolution,
  one per window element for pooling; movement, source and random ops count none.

    >>> from kiln.ir.types import TensorType
    >>> from kiln.ir import dtypes
    >>> a = TensorType(dtypes.float32, (64, 32)); b = TensorType(dtypes.float32, (32, 16))
    >>> op_cost("matmul", None, [a, b], [TensorType(dtypes.float32, (64, 16))])
    (14336, 65536)
"""
from __future__ import annotations

import math

from kiln.ir.registry import get_op
from kiln.ir.schedule import Call, Launch

_NO_FLOPS = frozenset({"cast", "copy", "stop_gradient"})


def type_text(types) -> str:
    """`f32[64,128], f32[128]`: the types of some operands, as the IR prints them."""
    return ", ".join(str(t) for t in types)


def signature_text(types_in, types_out) -> str:
    """`f32[4], f32[4] -> f32[4]` (`-> f32[4]` for an op with no operands)."""
    return f"{type_text(types_in)} -> {type_text(types_out)}".strip()


def step_cost(step) -> tuple[int, int]:
    """(bytes, flops) of one schedule step (Launch, Call or Run)."""
    if isinstance(step, Launch):
        return launch_cost(step)
    types_in = step.operand_types() if isinstance(step, Call) else [b.type for b in step.ins]
    return op_cost(step.op, step.attrs, types_in, [b.type for b in step.outs])


def launch_cost(step: Launch) -> tuple[int, int]:
    """(bytes, flops) of a kernel launch, from its accesses and its body (module docstring)."""
    k = step.kernel
    nbytes = 0
    for buf, access in list(zip(step.ins, k.loads)) + list(zip(step.outs, k.stores)):
        touched = math.prod(d for d, s in zip(k.space, access.strides) if s != 0)
        nbytes += min(touched, buf.type.numel) * buf.type.dtype.itemsize
    flops = 0
    for node in k.body.nodes:
        kind = get_op(node.op).kind
        if kind == "elementwise" and node.op not in _NO_FLOPS:
            flops += sum(o.type.numel for o in node.outputs)
        elif kind == "reduce":
            flops += node.inputs[0].type.numel
    return nbytes, flops


def op_cost(op: str, attrs, types_in, types_out) -> tuple[int, int]:
    """(bytes, flops) of registry op `op` reading `types_in` and writing `types_out` whole."""
    nbytes = sum(t.nbytes for t in types_in) + sum(t.nbytes for t in types_out)
    return nbytes, op_flops(op, attrs, types_in, types_out)


def op_flops(op: str, attrs, types_in, types_out) -> int:
    kind = get_op(op).kind
    if kind == "elementwise":
        return 0 if op in _NO_FLOPS else sum(t.numel for t in types_out)
    if op == "matmul":
        # NOTE: a's last axis is the one contracted, whatever the operands' ranks
        return 2 * types_out[0].numel * types_in[0].shape[-1]
    if op in ("conv2d", "conv2d_grad_input"):
        # NOTE: (x, w) -> y and (g, w) -> dx: one multiply-add per output (of y, or of g)
        # element and weight element of its group
        per = math.prod(types_in[1].shape[1:])
        big = types_out[0] if op == "conv2d" else types_in[0]
        return 2 * big.numel * per
    if op == "conv2d_grad_weight":
        return 2 * types_in[1].numel * math.prod(types_out[0].shape[1:])
    if kind == "reduce":
        window = getattr(attrs, "kernel_size", None) if attrs is not None else None
        if window:
            return max(t.numel for t in list(types_in) + list(types_out)) * math.prod(window)
        return types_in[0].numel if types_in else 0
    return 0
