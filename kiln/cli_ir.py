"""`kiln ir`: choose what to differentiate, collect the stages (kiln/cli_stages.py), pick a
stage or a kernel, and print them as text or JSON.

    kiln ir examples/demo.py:step --arg f32[1024] --stage backward
    kiln ir examples/demo.py:step --arg f32[1024] --kernel 0 --json
"""
from __future__ import annotations

import json

from kiln import cli
from kiln.cli import (CommandError, SpecError, TensorSpec, check_arguments, describe_exception,
                      format_stage, load_function, one_line, parse_target, select_stages,
                      unwrap)
from kiln.cli_stages import BACKWARD, collect, graph_json


def run_ir(ns) -> int:
    fn = unwrap(load_function(*parse_target(ns.target)))
    args = cli.make_inputs(ns.arg, ns.seed)    # NOTE: through the module: tests replace it
    check_arguments(fn, args, ns.arg)
    grad = grad_positions(ns)
    for i in grad or ():
        args[i].requires_grad_(True)
    try:
        listing = collect_listing(fn, args, ns.device)
    except Exception as e:
        raise CommandError(describe_exception(e)) from e
    graphs = [s.graph for s in listing.stages if s.part == "forward" and s.graph is not None]
    if graphs and not graphs[-1].nodes and not graphs[-1].outputs:
        # NOTE: after the passes: what is left when nothing is returned or written
        raise CommandError(f"nothing to compile: {getattr(fn, '__name__', 'the function')}() "
                           "returned no tensor and computed none (a missing `return`?)")
    if grad is not None:
        check_backward(listing, fn, grad, ns.arg)
    kernel = pick_kernel(listing, ns.kernel)
    stages = listing.stages
    if kernel is not None:
        stages = [s for s in stages if s.part == kernel.part and s.kernels
                  and kernel.name in s.kernels]
    chosen = _choose(stages, ns.stage, kernel)
    if ns.json and (ns.list_kernels or ns.list_stages):
        print(json.dumps(list_json(ns, listing, chosen), indent=1))
    elif ns.json:
        out = to_json(ns, fn, grad, listing, chosen, kernel)
        print(json.dumps(out, indent=1))
    else:
        print(render(ns, listing, chosen, kernel))
    return 0


def collect_listing(fn, args, device):
    """The stages of `fn(*args)` (a seam for tests)."""
    return collect(fn, args, device)


def wants_backward(ns) -> bool:
    return ns.grad is not None or (ns.stage or "").split(".")[0] == BACKWARD


def grad_positions(ns) -> list[int] | None:
    """The arguments to differentiate: `--grad`, else every floating-point tensor argument
    when a backward stage is asked for, else None (no argument requires grad)."""
    specs = ns.arg
    floats = [i for i, s in enumerate(specs) if isinstance(s, TensorSpec)
              and s.dtype.startswith("f")]
    if ns.grad is None:
        return floats if wants_backward(ns) else None
    for i in ns.grad:
        if i >= len(specs):
            raise SpecError(f"--grad {i}: there are {len(specs)} --arg (positions 0 to "
                            f"{len(specs) - 1})" if specs else f"--grad {i}: there is no --arg")
        if i not in floats:
            raise SpecError(f"--grad {i}: argument {i} is {specs[i]}; only floating-point "
                            "tensors (f32, f64) have gradients")
    return ns.grad


def check_backward(listing, fn, grad: list[int], specs: list) -> None:
    """Gradients were asked for: say why there is no backward graph, if there is none."""
    name = getattr(fn, "__name__", "the function")
    if listing.grads_in_forward and not any(s.part == BACKWARD for s in listing.stages):
        why = f": {one_line(listing.backward_error)}" if listing.backward_error else ""
        raise CommandError(f"no backward graph: {name} calls backward() itself, so its "
                           "gradients are computed in the forward graph (stages traced to "
                           f"asm); a backward from its outputs fails{why}")
    if listing.backward_error is not None:
        raise CommandError(f"the backward graph cannot be built: "
                           f"{one_line(listing.backward_error)}")
    if any(s.part == BACKWARD for s in listing.stages):
        return
    wrt = ", ".join(f"{i} ({specs[i]})" for i in grad)
    raise CommandError(
        f"no backward graph: no output of {name} requires grad (arguments requiring grad: "
        f"{wrt or 'none'}; an output must be a floating-point tensor computed from them or "
        "from parameters that require grad)")


def pick_kernel(listing, n: int | None):
    if n is None:
        return None
    kernels = listing.kernels
    if 0 <= n < len(kernels):
        return kernels[n]
    names = ", ".join(f"{k.index}: {k.name}" + (f" ({k.part})" if k.part != "forward" else "")
                      for k in kernels)
    more = "" if any(s.part == BACKWARD for s in listing.stages) else \
        "; --grad adds the backward graph's kernels"
    raise SpecError(f"--kernel {n} is out of range: there are {len(kernels)} kernels"
                    f"{' (' + names + ')' if names else ''}{more}")


def _choose(stages, name, kernel) -> list:
    """(name, Stage) pairs: all of `stages`, or the one called `name`."""
    pairs = [(s.name, s) for s in stages]
    if name is None:
        return pairs
    if kernel is None:
        return select_stages(pairs, name)
    chosen = [p for p in pairs if p[0] == name]
    if not chosen:
        held = ", ".join(s.name for s in stages)
        raise SpecError(f"kernel {kernel.index} ({kernel.name}) is not at stage {name!r}; "
                        f"it is at: {held}")
    return chosen


def _text(stage, kernel) -> str:
    return (stage.kernels[kernel.name] if kernel is not None else stage.text).rstrip("\n")


def render(ns, listing, chosen, kernel) -> str:
    if ns.list_kernels:
        return "\n".join(f"{k.index}\t{k.part}\t{k.name}" for k in listing.kernels) or \
            "(no generated kernels)"
    if ns.list_stages:
        return "\n".join(dict.fromkeys(n for n, _ in chosen))
    if ns.stage is not None:
        # NOTE: one stage prints bare, with no header, so it can be piped (`> kernel.ll`).
        return "\n".join(_text(s, kernel) for _, s in chosen)
    body = "\n\n".join(format_stage(n, _text(s, kernel)) for n, s in chosen)
    if kernel is None:
        return body
    return (f"# kernel {kernel.index} of {len(listing.kernels)}: {kernel.name} "
            f"({kernel.part} graph)\n\n{body}")


def list_json(ns, listing, chosen) -> list:
    """`--list-kernels --json`: [{index, graph, name}]; `--list-stages --json`: [name]."""
    if ns.list_kernels:
        return [{"index": k.index, "graph": k.part, "name": k.name} for k in listing.kernels]
    return list(dict.fromkeys(n for n, _ in chosen))


def to_json(ns, fn, grad, listing, chosen, kernel) -> dict:
    """The stages as a JSON object: per stage its name, graph (forward or backward), text
    and, for graph stages, the graph as data (`ir`: inputs, nodes with op, dtype, shape,
    inputs and location, outputs; kiln/cli_stages.graph_json)."""
    out = {"target": ns.target, "function": getattr(fn, "__name__", None),
           "args": [str(a) for a in ns.arg], "device": ns.device, "grad": grad,
           "kernels": [{"index": k.index, "graph": k.part, "name": k.name}
                       for k in listing.kernels]}
    if kernel is not None:
        out["kernel"] = {"index": kernel.index, "graph": kernel.part, "name": kernel.name}
    out["stages"] = [_stage_json(s, kernel) for _, s in chosen]
    return out


def _stage_json(stage, kernel) -> dict:
    item = {"name": stage.name, "graph": stage.part, "text": _text(stage, kernel) + "\n"}
    if stage.graph is not None:
        ir = graph_json(stage.graph)
        if kernel is not None:
            ir["nodes"] = [n for n in ir["nodes"] if n.get("kernel") == kernel.name]
        item["ir"] = ir
    if stage.kernels is not None and kernel is None:
        item["kernels"] = list(stage.kernels)
    return item
