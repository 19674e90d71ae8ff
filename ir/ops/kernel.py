"""`kernel`: a fused group of ops, made by the fusion pass; its body is a Graph.

What a body may hold (checked when the node is built, so the verifier and the parser refuse
anything else), and what codegen relies on:
- elementwise ops, `expand`, `full`, and the reductions in `FUSIBLE_REDUCTIONS`;
- without reductions, every output has one shape, the iteration space, and every value
  broadcasts (NumPy rules, right-aligned) to it;
- with reductions, all of them read the same shape (the iteration space) over the same axes
  (the reduction axes); every value broadcasts to the space, and every output has the
  space's shape (stored per element) or its shape with the reduction axes kept as 1 (stored
  once per row). A reduction with `keepdim=false` may only be an output: no body node reads
  it, since its shape no longer lines up with the space.
"""
from __future__ import annotations

from ..errors import VerifyError
from ..registry import NOT_DIFFERENTIABLE, OpDef, get_op, register

FUSIBLE_REDUCTIONS = ("sum", "mean", "max", "min")


def kernel_space(name: str, body) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(iteration space, reduction axes) of a kernel body; VerifyError when the body is not
    one codegen can run (see the module docstring).

    >>> from kiln.ir.parser import parse
    >>> g = parse('''graph @f(%x: f32[4,8]) {
    ...   %0: f32[4,1] = max %x {axes=[1], keepdim=true}
    ...   return %0
    ... }''')
    >>> kernel_space("k", g)
    ((4, 8), (1,))
    """
    reductions = [n for n in body.nodes if get_op(n.op).kind == "reduce"]
    for n in body.nodes:
        kind = get_op(n.op).kind
        if kind != "elementwise" and n.op not in ("expand", "full") and (
                n.op not in FUSIBLE_REDUCTIONS):
            raise VerifyError(f"kernel {name}: '{n.op}' ({kind}) cannot be part of a kernel "
                              f"body (elementwise ops, expand, full and "
                              f"{'/'.join(FUSIBLE_REDUCTIONS)} can)", node=n, loc=n.loc)
    if not body.outputs:
        raise VerifyError(f"kernel {name} has no outputs")
    if reductions:
        space, axes = _reduction_space(name, reductions)
    else:
        space, axes = tuple(body.outputs[0].shape), ()
    _check_values(name, body, space, axes, reductions)
    return space, axes


def _reduction_space(name, reductions):
    first = reductions[0]
    space, axes = tuple(first.inputs[0].shape), tuple(first.attrs.axes)
    for r in reductions:
        if tuple(r.inputs[0].shape) != space or tuple(r.attrs.axes) != axes:
            raise VerifyError(f"kernel {name}: reductions over different spaces or axes "
                              f"({first.op} of {first.inputs[0].type} over {list(axes)}, "
                              f"{r.op} of {r.inputs[0].type} over {list(r.attrs.axes)})",
                              node=r, loc=r.loc)
        if r.outputs[0].type.dtype.value == "bool" or r.inputs[0].type.dtype.value == "bool":
            raise VerifyError(f"kernel {name}: {r.op} of bool values is not fused", node=r,
                              loc=r.loc)
    if not axes:
        raise VerifyError(f"kernel {name}: a reduction over no axes", node=first,
                          loc=first.loc)
    return space, axes


def _check_values(name, body, space, axes, reductions):
    row = tuple(1 if k in axes else d for k, d in enumerate(space))
    flat = {r.outputs[0] for r in reductions if not r.attrs.keepdim}
    for n in body.nodes:
        for v in n.inputs:
            if v in flat:
                raise VerifyError(f"kernel {name}: '{n.op}' reads the result of a reduction "
                                  "with keepdim=false (only an output may)", node=n,
                                  loc=n.loc)
    values = list(body.inputs) + [o for n in body.nodes for o in n.outputs]
    for v in values:
        if v not in flat and not _broadcasts(v.shape, space):
            raise VerifyError(f"kernel {name}: value {v.type} does not broadcast to the "
                              f"iteration space {list(space)}")
    for v in body.outputs:
        shape = tuple(v.shape)
        if v in flat or shape == space or (axes and shape == row):
            continue
        raise VerifyError(f"kernel {name}: output {v.type} is neither the iteration space "
                          f"{list(space)}" + (f" nor its row shape {list(row)}" if axes else ""))


def _broadcasts(shape, space) -> bool:
    return len(shape) <= len(space) and all(
        s in (1, d) for s, d in zip(reversed(shape), reversed(space)))


def _infer(types, attrs):
    body = attrs.body
    got = [v.type for v in body.inputs]
    if got != list(types):
        raise VerifyError(f"kernel {attrs.name}: operands ({', '.join(map(str, types))}) do not "
                          f"match body inputs ({', '.join(map(str, got))})")
    kernel_space(attrs.name, body)
    return [v.type for v in body.outputs]


def _ref(xs, attrs):
    from ..interpreter import interpret
    return tuple(interpret(attrs.body, xs))


register(OpDef("kernel", "kernel", -1, {"name": "str", "body": "graph"}, _infer, _ref,
               NOT_DIFFERENTIABLE, doc="A fused group of ops compiled as one kernel."))
