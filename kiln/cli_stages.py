"""The stages `kiln ir` prints, as objects: each stage's text, its graph (for `--json`), and
per kernel the block of text that belongs to it (for `--kernel N`).

The forward stages are the traced graph, the graph after each pass, the schedule before and
after memory planning and each kernel's MLIR, LLVM IR and assembly (PTX for cuda). When an
output requires grad, the backward graph the jit builds for it (frontend/jit_grad.py) follows
as `backward`, then `backward.<stage>` for each later stage of its compilation.

    >>> import kiln
    >>> def f(x): return (kiln.exp(x) * 2).sum()
    >>> x = kiln.ones(4).requires_grad_()
    >>> listing = collect(f, [x])
    >>> [s.name for s in listing.stages][-9:-6]
    ['backward', 'backward.functionalize', 'backward.canonicalize']
    >>> [(k.index, k.part, k.name) for k in listing.kernels][:1]
    [(0, 'forward', 'fused_0')]
"""
from __future__ import annotations

import dataclasses
import platform
import re
import struct

import numpy as np

BACKWARD = "backward"


@dataclasses.dataclass
class Stage:
    """One stage: its name, text and (graph stages) graph; `kernels` maps a kernel's name to
    its block at this stage, for stages that hold kernels (None for the others)."""

    name: str
    text: str
    part: str = "forward"
    graph: object = None
    kernels: dict | None = None


@dataclasses.dataclass(frozen=True)
class KernelRef:
    """Kernel `index` of the listing (forward kernels first, then backward ones)."""

    index: int
    part: str
    name: str


@dataclasses.dataclass
class Listing:
    stages: list
    kernels: list
    backward_error: str | None = None     # why the backward graph could not be built
    grads_in_forward: bool = False        # the function ran backward() itself


def collect(fn, args: list, device: str = "cpu", kwargs: dict | None = None) -> Listing:
    """Trace `fn(*args, **kwargs)` as `@kiln.jit` would and compile it for `device` (cuda
    needs no GPU); the backward graph is there when an output requires grad (an argument or
    a parameter the function reads requires grad)."""
    from kiln.frontend.jit import trace_function
    trace, _ = trace_function(fn, list(args), dict(kwargs or {}))
    forward = trace.builder.graph
    stages, kernels = graph_stages(forward, device, "forward")
    backward = getattr(trace, "backward", None)
    error = None
    if backward is not None and backward.error is not None:
        error = str(backward.error)
    elif backward is not None and backward.graph is not None:
        more, more_kernels = graph_stages(backward.graph, device, BACKWARD,
                                          _backward_note(backward, forward))
        stages += more
        kernels += more_kernels
    refs = [KernelRef(i, part, name) for i, (part, name) in enumerate(kernels)]
    return Listing(stages, refs, error, bool(getattr(trace, "grad_effects", ())))


def _backward_note(backward, forward) -> str:
    """Comment lines over the backward graph: what its inputs and outputs are."""
    position = {v: i for i, v in enumerate(forward.inputs)}
    wrt = [f"%{v.hint}" if v.hint else f"forward input {position.get(v, '?')}"
           for v in backward.wrt]
    n = len(backward.out_index)
    cots = ", ".join(f"%{v.hint}" for v in backward.graph.inputs[:n])
    outs = ", ".join(map(str, backward.out_index))
    what = (f"input {cots} is the gradient of output {outs}" if n == 1 else
            f"inputs {cots} are the gradients of outputs {outs}")
    return (f"# backward of @{forward.name}: {what} (1.0 when loss.backward() is called on a "
            "scalar loss); the other inputs are forward values it reads\n"
            f"# returns the gradients of {', '.join(wrt) or '(nothing)'}\n")


def graph_stages(traced, device: str, part: str, note: str = "") -> tuple[list, list]:
    """(stages, [(part, kernel name)]) of one traced graph compiled for `device`."""
    if device == "cpu":
        passes, schedule_text, schedule, code = _cpu(traced)
    elif device == "cuda":
        passes, schedule_text, schedule, code = _cuda(traced)
    else:
        from kiln.ir.errors import NotSupportedError
        raise NotSupportedError(f"not supported yet: compiler stages for device '{device}' "
                                "(cpu and cuda are)")
    names = [k.name for k in code.kernels]
    prefix = "" if part == "forward" else part + "."
    out = [Stage(part if prefix else "traced", note + str(traced), part, traced)]
    for p in passes:
        if p.name != "input":   # NOTE: the pass manager's "input" is the traced graph
            out.append(_graph_stage(prefix + p.name, p.graph, part, names))
    for name, text in (("schedule", schedule_text), ("memory", str(schedule))):
        out.append(Stage(prefix + name, text, part, None,
                         _blocks(text, {n: _schedule_step(n) for n in names})))
    out += [dataclasses.replace(s, name=prefix + s.name, part=part) for s in code.stages()]
    return out, [(part, n) for n in names]


def _cpu(traced):
    from kiln.frontend.compile import compile_traced
    from kiln.passes.manager import run_passes
    _, passes, exe = compile_traced(traced)
    if passes is None:      # NOTE: the plan came from the disk cache: run the passes again
        passes = run_passes(traced)[1]
    return passes, exe.schedule_text, exe.schedule, CpuCode(exe.kernels, exe.schedule)


def _cuda(traced):
    from kiln.codegen.cuda import CudaRenderer
    from kiln.frontend.compile import plan_graph
    from kiln.ir.schedule import Call
    from kiln.passes.manager import run_passes
    optimized, passes = run_passes(traced)
    schedule, text = plan_graph(optimized)
    renderer = CudaRenderer()
    # NOTE: a matmul call is a generated kernel on the GPU (codegen/cuda/matmul.py)
    launches = [renderer.lower_call(st) if isinstance(st, Call) else st
                for st in schedule.steps]
    arts = [renderer.compile(st.kernel) for st in launches if hasattr(st, "kernel")]
    return passes, text, schedule, CudaCode(arts, renderer)


def _graph_stage(name: str, graph, part: str, names: list) -> Stage:
    text = str(graph)
    nodes = {n.attrs.name: n for n in graph.nodes if n.op == "kernel"}
    if not nodes:
        return Stage(name, text, part, graph)
    blocks = _blocks(text, {n: rf"= kernel\b.*\bname=\"{re.escape(n)}\"" for n in names
                            if n in nodes})
    for kname, node in nodes.items():     # NOTE: the body alone when the text has no block
        blocks.setdefault(kname, str(node.attrs.body))
    return Stage(name, text, part, graph, blocks)


class CpuCode:
    """The MLIR, LLVM IR and assembly stages of CPU kernels (CpuArtifacts in launch
    order). Kernels compiled together share one module: its assembly prints once."""

    def __init__(self, kernels: list, schedule=None):
        self.kernels = kernels
        self.schedule = schedule

    def _located(self, k) -> str:
        """k's MLIR with each op's `loc(...)`: module path and user line (display only: the
        compiled text has none, so kernels differing only in lines share their code)."""
        from kiln.codegen.cpu.render_kernel import located_mlir
        from kiln.ir.schedule import Launch
        launch = next((st for st in getattr(self.schedule, "steps", ())
                       if isinstance(st, Launch) and st.kernel.name == k.name), None)
        return k.mlir if launch is None else located_mlir(launch.kernel, k.mlir)

    def stages(self) -> list:
        ks = self.kernels
        mlir = {k.name: f"// kernel {k.name}\n{annotate_float_constants(self._located(k))}"
                for k in ks}
        # NOTE: each language's own comments, so that one kernel's text is a file its tools
        # read (`kiln ir ... --kernel 0 --stage llvm > k.ll`)
        llvm = {k.name: f"; kernel {k.name}\n{k.llvm_ir}" for k in ks}
        asm = {k.name: f"{_ASM_COMMENT} kernel {k.name}: function {k.function}\n"
               f"{asm_functions(k.asm).get(k.function, k.asm)}" for k in ks}
        modules: dict = {}
        for k in ks:
            modules.setdefault(id(k.code.module), (k.asm, []))[1].append(k.name)
        whole = "\n".join(f"{_ASM_COMMENT} kernels {', '.join(names)} (one module)\n{text}"
                          for text, names in modules.values())
        return [_code_stage("mlir", mlir), _code_stage("llvm", llvm),
                Stage("asm", whole or _NONE, kernels=asm)]


class CudaCode:
    """The MLIR, LLVM IR and PTX stages of CUDA kernels (CudaArtifacts in launch order); the
    whole PTX stage is one module (what the driver loads, a file ptxas assembles)."""

    def __init__(self, arts: list, renderer):
        self.kernels = arts
        self.renderer = renderer

    def stages(self) -> list:
        arts = self.kernels
        head = {a.name: f"// kernel {a.name}: .entry {a.entry}, grid {a.grid}, block "
                f"{a.block}\n" for a in arts}
        mlir = {a.name: head[a.name] + annotate_float_constants(a.mlir) for a in arts}
        llvm = {a.name: head[a.name] + a.llvm_ir for a in arts}
        ptx = {a.name: head[a.name] + a.ptx for a in arts}
        whole = "".join(head.values()) + self.renderer.module_ptx(arts) if arts else _NONE
        return [_code_stage("mlir", mlir), _code_stage("llvm", llvm),
                Stage("ptx", whole, kernels=ptx)]


_NONE = "(no generated kernels)\n"
# NOTE: the host assembler's line comment (CPU kernels are compiled for this machine)
_ASM_COMMENT = "#" if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686") \
    else "//"


def _code_stage(name: str, per_kernel: dict) -> Stage:
    text = "\n".join(per_kernel.values()) or _NONE
    return Stage(name, text, kernels=per_kernel)


def _schedule_step(name: str) -> str:
    """The regex of kernel `name`'s step in a schedule: its `launch`; on cuda the kernel
    `matmul_t1` is the step `call matmul ... -> (%t1)` (codegen/cuda/matmul.py)."""
    m = re.fullmatch(r"(\w+)_(t\d+)", name)
    call = rf"|^\s*call {m[1]} .*-> \(%{m[2]}[,)]" if m else ""
    return rf"^\s*launch @{re.escape(name)}\b{call}"


def _blocks(text: str, patterns: dict) -> dict:
    """name -> the lines of `text` for that kernel: the first line matching its regex and,
    when it opens a block (ends in `{`, before any `# loc`), the lines up to its `}`."""
    lines = text.split("\n")
    out = {}
    for name, pattern in patterns.items():
        start = re.compile(pattern)
        for i, line in enumerate(lines):
            if start.search(line):
                out[name] = "\n".join(lines[i:_block_end(lines, i) + 1])
                break
    return out


def _block_end(lines: list, i: int) -> int:
    if not re.search(r"\{\s*(#.*)?$", lines[i]):
        return i
    close = lines[i][:len(lines[i]) - len(lines[i].lstrip())] + "}"
    for j in range(i + 1, len(lines)):
        if lines[j].rstrip() == close:
            return j
    return len(lines) - 1


def asm_functions(asm: str) -> dict:
    """Function symbol -> its part of a module's assembly: from the end of the function
    before it (so its constant pool comes along) to its `.size` directive."""
    lines = asm.split("\n")
    out, start = {}, 0
    for i, line in enumerate(lines):
        m = re.match(r"\s*\.size\s+([\w.$]+),", line)
        if m:
            out[m[1]] = "\n".join(lines[start:i + 1]).strip("\n")
            start = i + 1
    return out


_FLOAT_CONST = re.compile(r"arith\.constant 0x([0-9A-Fa-f]{8}|[0-9A-Fa-f]{16}) : (f32|f64)"
                          r"(?=\s*$)", re.M)


def annotate_float_constants(mlir: str) -> str:
    """MLIR prints float constants by their bits (`0x3FB8AA3B : f32`); append the value as
    a comment (`// 1.442695`). Comments only: the text still parses to the same module.

    >>> annotate_float_constants("%k2 = arith.constant 0x3FB8AA3B : f32")
    '%k2 = arith.constant 0x3FB8AA3B : f32  // 1.442695'
    """
    return _FLOAT_CONST.sub(lambda m: f"{m[0]}  // {float_from_bits(m[1], m[2])}", mlir)


def float_from_bits(hexbits: str, dtype: str) -> str:
    """The shortest decimal that reads back as the float with these bits.

    >>> float_from_bits("3F000000", "f32"), float_from_bits("BFF0000000000000", "f64")
    ('0.5', '-1.0')
    """
    raw = bytes.fromhex(hexbits)
    if dtype == "f32":
        return str(np.float32(struct.unpack(">f", raw)[0]))
    return repr(struct.unpack(">d", raw)[0])


# ---- JSON -----------------------------------------------------------------------------------
def graph_json(graph) -> dict:
    """`graph` as a JSON-ready dict: its inputs (name, dtype, shape), its nodes (op, outputs'
    dtypes and shapes, inputs as `{"input": i}` or `{"node": j, "output": k}`, location; a
    kernel node has its name and its body as a graph of this form) and its outputs."""
    where = {v: {"input": i} for i, v in enumerate(graph.inputs)}
    nodes = []
    for j, node in enumerate(graph.nodes):
        item = {"id": j, "op": node.op, "outputs": [_type(v) for v in node.outputs],
                "inputs": [where.get(v, {"outside": True}) for v in node.inputs],
                "loc": _loc(node.loc)}
        if node.op == "kernel":
            item["kernel"] = node.attrs.name
            item["body"] = graph_json(node.attrs.body)
        nodes.append(item)
        for k, v in enumerate(node.outputs):
            where[v] = {"node": j, "output": k}
    return {"name": graph.name,
            "inputs": [{"name": v.hint, **_type(v)} for v in graph.inputs],
            "nodes": nodes, "outputs": [where.get(v, {"outside": True}) for v in graph.outputs]}


def _type(v) -> dict:
    return {"dtype": v.dtype.value, "shape": list(v.shape)}


def _loc(loc):
    if loc is None:
        return None
    return {"text": str(loc), "file": getattr(loc, "file", None),
            "line": getattr(loc, "line", None)}
