"""`kernel`: a fused group of ops, made by the fusion pass; its body is a Graph."""
from __future__ import annotations

from ..errors import VerifyError
from ..registry import NOT_DIFFERENTIABLE, OpDef, register


def _infer(types, attrs):
    body = attrs.body
    got = [v.type for v in body.inputs]
    if got != list(types):
        raise VerifyError(f"kernel {attrs.name}: operands ({', '.join(map(str, types))}) do not "
                          f"match body inputs ({', '.join(map(str, got))})")
    return [v.type for v in body.outputs]


def _ref(xs, attrs):
    from ..interpreter import interpret
    return tuple(interpret(attrs.body, xs))


register(OpDef("kernel", "kernel", -1, {"name": "str", "body": "graph"}, _infer, _ref,
               NOT_DIFFERENTIABLE, doc="A fused group of ops compiled as one kernel."))
