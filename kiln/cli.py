"""The `kiln` command: show what the compiler makes of a Python function, stage by stage.

    kiln ir examples/demo.py:step --arg f32[1024]                 # every stage
    kiln ir examples/demo.py:step --arg f32[1024] --stage llvm    # one stage
    kiln ir examples/demo.py:step --arg f32[1024] --list-stages
    kiln ir examples/demo.py:step --arg f32[1024] --stage backward  # the gradient's graph
    kiln ir examples/demo.py:step --arg f32[1024] --kernel 0        # one kernel, every stage
    kiln explain examples/demo.py:step --arg f32[1024] --json

`python -m kiln ...` is the same command. A command's own module is imported only when it
runs (`kiln ir` is kiln/cli_ir.py). An error is one line on stderr (`--traceback` adds
Python's traceback): exit status 2 for a command line Kiln cannot use, 1 for a program it
cannot compile, 141 when the reader of the output went away (`kiln ir ... | head`).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import re
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path

# NOTE: the accepted dtype spellings are the IR's own short names, so `--arg` reads like the
# types the IR prints (`%x: f32[4,8]`).
DTYPES = ("f32", "f64", "i32", "i64", "bool")
_TENSOR_RE = re.compile(r"^(?P<dtype>[a-z0-9]+)\[(?P<dims>[^\]]*)\]$")
_INT_RE = re.compile(r"^[+-]?\d+$")
ACCEPTED = ("a tensor type like f32[4,8] (dtypes: " + ", ".join(DTYPES)
            + "; f32[] is a 0-d tensor) or a static Python number like 2.0 or 3")


class SpecError(ValueError):
    """A command-line value that does not have the accepted form (exit status 2)."""


class Unavailable(Exception):
    """This build lacks the piece of Kiln a command needs (exit status 1)."""


class CommandError(Exception):
    """A program or request the command cannot handle, already said in words (exit 1)."""


@dataclass(frozen=True)
class TensorSpec:
    """`--arg f32[4,8]`: a random tensor of this dtype (IR short name) and shape."""

    dtype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


def parse_arg_spec(spec: str) -> TensorSpec | int | float | bool:
    """`'f32[4,8]'` -> TensorSpec('f32', (4, 8)); `'2.0'` -> 2.0 (a static argument)."""
    text = spec.strip().replace(" ", "")
    m = _TENSOR_RE.match(text)
    if m:
        return TensorSpec(_parse_dtype(spec, m["dtype"]), _parse_dims(spec, m["dims"]))
    if text in ("True", "False"):
        return text == "True"
    if _INT_RE.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise SpecError(f"bad --arg {spec!r}: expected {ACCEPTED}") from None


def _parse_dtype(spec: str, name: str) -> str:
    if name not in DTYPES:
        raise SpecError(f"bad --arg {spec!r}: unknown dtype {name!r}; expected {ACCEPTED}")
    return name


def _parse_dims(spec: str, dims: str) -> tuple[int, ...]:
    if dims == "":
        return ()
    parts = dims.split(",")
    if not all(p.isdigit() for p in parts):
        raise SpecError(f"bad --arg {spec!r}: dimensions must be non-negative integers "
                        f"separated by commas; expected {ACCEPTED}")
    return tuple(int(p) for p in parts)


def parse_target(target: str) -> tuple[Path, str]:
    """`'examples/demo.py:step'` -> (Path('examples/demo.py'), 'step')."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise SpecError(f"bad target {target!r}: expected FILE.py:FUNCTION, "
                        "e.g. examples/demo.py:step")
    return Path(path), name


def load_function(path: Path, name: str):
    """Import `path` as a module (its `__name__` is not `'__main__'`, so its script part does
    not run) and return the attribute `name`, jitted or plain."""
    if not path.is_file():
        raise SpecError(f"{path} is a folder, not a Python file" if path.is_dir() else
                        f"no such file: {path}")
    module_name = "_kiln_cli_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None:
        raise SpecError(f"{path} is not a Python file (expected FILE.py:FUNCTION)")
    module = importlib.util.module_from_spec(spec)
    # NOTE: registered before it runs, as a normal import would be, so dataclasses and
    # pickling inside the user's file find their module; its folder is importable for helpers.
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise CommandError(f"cannot import {path}: SyntaxError: {e.msg} at "
                           f"{Path(e.filename or path).name}:{e.lineno}") from e
    except Exception as e:
        raise CommandError(f"cannot import {path}: {describe_exception(e)}") from e
    if not hasattr(module, name):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not
                       k.startswith("_") and getattr(v, "__module__", None) == module_name)
        raise SpecError(f"{path} has no attribute {name!r}; callables defined there: "
                        f"{', '.join(found) or '(none)'}")
    obj = getattr(module, name)
    if not callable(obj):
        raise SpecError(f"{path}:{name} is a {type(obj).__name__}, not a function")
    return obj


def unwrap(obj):
    """The plain Python function under a `@kiln.jit` wrapper or a `functools.wraps`
    decorator (or `obj` itself). Only those: a module or object that merely has an attribute
    called `fn` or `__wrapped__` is the target itself."""
    from kiln.frontend.jit import JitFunction

    while True:
        if isinstance(obj, JitFunction):
            obj = obj.fn
        elif inspect.isfunction(obj) and inspect.isfunction(getattr(obj, "__wrapped__", None)):
            obj = obj.__wrapped__
        else:
            return obj


def make_inputs(specs, seed: int = 0) -> list:
    """Random tensors for TensorSpecs (normal floats, small ints, fair bools); numbers as is."""
    import numpy as np

    import kiln
    from kiln.ir import dtypes

    if hasattr(kiln, "manual_seed"):
        kiln.manual_seed(seed)
    rng = np.random.default_rng(seed)
    args = []
    for s in specs:
        if not isinstance(s, TensorSpec):
            args.append(s)
        elif s.dtype.startswith("f"):
            args.append(kiln.randn(*s.shape, dtype=dtypes.from_short(s.dtype)))
        elif s.dtype == "bool":
            args.append(kiln.from_numpy(rng.random(s.shape) < 0.5))
        else:
            ints = rng.integers(-10, 10, size=s.shape, dtype=dtypes.from_short(s.dtype).np)
            args.append(kiln.from_numpy(ints))
    return args


def format_stage(name: str, text: str, max_lines: int | None = None, hint: str = "") -> str:
    """A stage under its header; past `max_lines` lines it is cut, with a note and `hint`."""
    lines = text.rstrip("\n").split("\n")
    out = [f"=== stage: {name} ==="]
    if max_lines is None or len(lines) <= max_lines:
        out += lines
    else:
        out += lines[:max_lines]
        out.append(f"... ({len(lines) - max_lines} more lines{'; ' + hint if hint else ''})")
    return "\n".join(out)


def select_stages(stages, name: str | None):
    """The stages called `name` (all when None); an unknown name lists the available ones."""
    if name is None:
        return list(stages)
    chosen = [s for s in stages if s[0] == name]
    if not chosen:
        names = list(dict.fromkeys(s[0] for s in stages))
        raise SpecError(f"unknown stage {name!r}; available stages: {', '.join(names)}")
    return chosen


def check_arguments(fn, args: list, specs: list) -> None:
    """The function takes these positional arguments (else a one-line error naming its
    parameters and the --arg given)."""
    target, name = signature_target(fn)
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return          # NOTE: a builtin without a signature: the call itself will say
    required_kw = [p.name for p in sig.parameters.values()
                   if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if required_kw:
        raise SpecError(f"{name}{sig} has keyword-only parameters without a default "
                        f"({', '.join(required_kw)}); --arg gives positional arguments only: "
                        "give them defaults or wrap the function")
    try:
        sig.bind(*args)
    except TypeError as e:
        given = " ".join(f"--arg {s}" for s in specs) or "no --arg"
        raise SpecError(f"{name}{sig} cannot take {given}: {e}; give one --arg per "
                        "positional parameter") from None


def signature_target(fn) -> tuple:
    """(what to read the parameters from, its name): a module's bound `forward` (calling a
    module calls it; `Module.__call__` itself takes `*args`), else `fn` itself."""
    from kiln.nn import Module

    if isinstance(fn, Module):
        return fn.forward, f"{type(fn).__name__}.forward"
    return fn, getattr(fn, "__name__", type(fn).__name__)


def cmd_ir(ns) -> int:
    from kiln.cli_ir import run_ir
    return run_ir(ns)


def cmd_explain(ns) -> int:
    import kiln

    explain = getattr(kiln, "explain", None)
    if explain is None:
        raise Unavailable("not supported yet (this build has no kiln.explain)")
    fn = load_function(*parse_target(ns.target))
    args = make_inputs(ns.arg, ns.seed)
    check_arguments(unwrap(fn), args, ns.arg)
    try:
        report = explain(fn, *args)
    except Exception as e:
        raise CommandError(describe_exception(e)) from e
    print(report.to_json() if ns.json else report)
    return 0


# ---- errors as one line ---------------------------------------------------------------------
_KILN_DIRS = tuple(str(Path(__file__).resolve().parents[1] / d) + os.sep
                   for d in ("kiln", "frontend", "ir", "passes", "codegen", "runtime"))
_PYTHON_DIRS = tuple({sysconfig.get_paths()[k] + os.sep for k in ("stdlib", "purelib",
                                                                    "platlib")})


def _user_frame(tb):
    """The innermost frame of `tb` in the user's code (not Kiln, Python or a package)."""
    frames = [f for f in traceback.extract_tb(tb)
              if not f.filename.startswith(_KILN_DIRS + _PYTHON_DIRS + ("<",))]
    return frames[-1] if frames else None


def one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).strip().split("\n") if part.strip())


def kiln_error_line(e) -> str:
    """A KilnError in one line: its message, the user's line and source, its hint."""
    text = one_line(e.message)
    if e.loc is not None:
        source = getattr(e.loc, "source", "")
        text += f" at {e.loc}" + (f" (`{source}`)" if source else "")
    return text + (f"; hint: {one_line(e.hint)}" if e.hint else "")


def describe_exception(e: BaseException) -> str:
    """One line for an error met while loading or compiling the user's function: Kiln's
    errors in their words (with the user's line), the user's own exceptions with the line
    that raised them, anything else as an internal error."""
    from kiln.ir.errors import KilnError
    from kiln.frontend.trace import GraphBreak
    if isinstance(e, GraphBreak):
        return (f"graph break: {kiln_error_line(e)}; `kiln ir` compiles one graph, "
                "`kiln explain` shows the graphs around a break")
    if isinstance(e, KilnError):
        return kiln_error_line(e)
    frame = _user_frame(e.__traceback__)
    what = f"{type(e).__name__}: {one_line(e)}" if str(e) else type(e).__name__
    if frame is None:
        return (f"internal error: {what}; run again with --traceback and report it")
    where = f"{Path(frame.filename).name}:{frame.lineno}"
    return f"{what} (raised at {where}: {(frame.line or '').strip()})"


_MAIN_HELP = """\
Kiln's command line: look inside the compiler. `kiln ir` prints a function's IR after
every compiler stage (traced graph, each pass, schedule, memory plan, MLIR, LLVM IR,
assembly, and the backward graph's); `kiln explain` prints kiln.explain(f, *args): graphs,
breaks, guards, side effects and recompile reasons; `kiln cache info` and `kiln cache clear`
show and empty the disk cache of compiled machine code.

examples:
  kiln ir examples/demo.py:step --arg f32[1024]
  kiln ir examples/demo.py:step --arg f32[1024] --stage fusion
  kiln ir examples/demo.py:step --arg f32[1024] --stage backward
  kiln cache info

`python -m kiln` is the same command; `kiln ir --help` explains its arguments.
"""

_IR_HELP = """\
Loads FILE.py as a module (its `if __name__ == "__main__":` part does not run), finds FUNCTION
(plain or decorated with @kiln.jit), traces it on random inputs of the given types as
@kiln.jit would and prints the IR after every stage: `traced`, one stage per pass
(`functionalize`, `canonicalize`, `fusion`), `schedule`, `memory` (the schedule with its
buffers placed), then each kernel's `mlir` (float constants have their value in a comment),
`llvm` and `asm` (`ptx` with --device cuda).

When an output requires grad, the backward graph the jit builds for it follows as the stage
`backward`, then `backward.fusion`, ..., `backward.asm`. An output requires grad when an
argument does (--grad) or when the function reads parameters that do (an nn.Module's). The
backward graph takes the gradient of each output as an input, as `y.backward(gradient)` does
(for a scalar loss, `loss.backward()` passes 1.0), and returns the inputs' gradients.

--arg is given once per positional argument, in order:
  f32[4,8]   a random float32 tensor of shape (4, 8)   (dtypes: f32 f64 i32 i64 bool)
  f32[]      a 0-d tensor
  2.0, 3     a static Python number (a guarded constant, not a graph input)

examples:
  kiln ir examples/demo.py:step --arg f32[1024]
  kiln ir examples/demo.py:step --arg f32[16777216] --stage llvm > step.ll
  kiln ir examples/demo.py:step --arg f32[1024] --stage backward
  kiln ir examples/demo.py:step --arg f32[1024] --kernel 0 --stage mlir
  kiln ir model.py:loss --arg f32[64,784] --arg i64[64] --grad 0 --list-kernels
  kiln ir model.py:loss --arg f32[64,784] --arg i64[64] --json > stages.json

exit status: 0; 1 when the function cannot be compiled (one line on stderr says why, with
the user's line; --traceback adds Python's traceback); 2 for a command line that cannot be
used; 141 when the reader of the output went away (`kiln ir ... | head`).
"""

_EXPLAIN_HELP = """\
Print kiln.explain(FUNCTION, *args) for random args (--arg as for `kiln ir`): the graphs
and kernels @kiln.jit makes of a call, graph breaks, guards, captured tensors, Python side
effects and, for a @kiln.jit function, why it recompiled.

examples:
  kiln explain examples/demo.py:step --arg f32[1024]
  kiln explain examples/demo.py:step --arg f32[1024] --json
"""


def _spec_type(spec: str):
    try:
        return parse_arg_spec(spec)
    except SpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _grad_type(text: str):
    """`--grad 0,2` -> [0, 2]; `--grad none` -> [] (only parameters that require grad)."""
    if text.strip().lower() == "none":
        return []
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"bad --grad {text!r}: expected argument positions separated by commas, "
            "counting --arg from 0 (e.g. 0 or 0,1), or none")
    return sorted(set(int(p) for p in parts))


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="FILE.py:FUNCTION", help="the function to compile")
    p.add_argument("--arg", action="append", type=_spec_type, default=[], metavar="SPEC",
                   help="one per positional argument: f32[4,8], i64[3], bool[2], or 2.0")
    p.add_argument("--seed", type=int, default=0, help="seed for the random inputs (0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--traceback", action="store_true",
                   help="on an error, print Python's traceback as well as the one line")


def _add_ir(sub, raw) -> None:
    ir = sub.add_parser("ir", help="print the IR at every compiler stage", description=_IR_HELP,
                        formatter_class=raw)
    _add_common(ir)
    ir.add_argument("--stage", metavar="NAME", help="print only this stage, without a header")
    ir.add_argument("--list-stages", action="store_true", help="print only the stage names")
    ir.add_argument("--grad", type=_grad_type, metavar="POSITIONS",
                    help="make these arguments require grad (0,1: the first two --arg; none: "
                    "only parameters) and show the backward stages; --stage backward... "
                    "without --grad differentiates every floating-point tensor argument")
    ir.add_argument("--kernel", type=int, metavar="N",
                    help="print only kernel N (counted from 0 in launch order, forward "
                    "kernels first) at each stage that holds it")
    ir.add_argument("--list-kernels", action="store_true",
                    help="print the kernels: number, graph (forward or backward), name")
    ir.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="the target: cpu (assembly) or cuda (PTX, made without a GPU)")
    ir.set_defaults(run=cmd_ir)


def _add_cache(sub, raw) -> None:
    from kiln import cli_cache
    cache = sub.add_parser("cache", help="show or empty the disk cache of compiled code",
                           description=cli_cache.CACHE_HELP, formatter_class=raw)
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    cache_sub.add_parser("info", help="print the folder, number of entries and total size",
                         description="Print the disk cache's folder, number of entries, "
                         "total size and size cap.").set_defaults(run=cli_cache.info)
    cache_sub.add_parser("clear", help="remove every entry",
                         description="Remove every entry of the disk cache (files that are "
                         "not the cache's own are left alone).").set_defaults(
                             run=cli_cache.clear)
    cache.set_defaults(run=lambda ns: (cache.print_help(), 2)[1])


# NOTE: commands that parse their own arguments: `kiln NAME ARGS...` runs
# `importlib.import_module(MODULE).main(ARGS)` (imported only then). One line each, e.g.
#   "filecheck": ("kiln.testing.filecheck", "check IR text against CHECK lines"),
DELEGATED: dict[str, tuple[str, str]] = {
    "filecheck": ("kiln.testing.filecheck",
                  "check stdin against the CHECK: lines of a pattern file (FileCheck)"),
    "viz": ("kiln.viz", "write one HTML page: the graph at every stage and the memory plan"),
    "run": ("kiln.distributed.launch",
            "start a script on N processes over MPI: kiln run -n 4 train.py"),
}


class _Version(argparse.Action):
    """`kiln --version`: reads the version only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print Kiln's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from kiln import __version__
        print(f"kiln {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="kiln", description=_MAIN_HELP, formatter_class=raw)
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_ir(sub, raw)
    ex = sub.add_parser("explain", help="print kiln.explain(f, *args)",
                        description=_EXPLAIN_HELP, formatter_class=raw)
    _add_common(ex)
    ex.set_defaults(run=cmd_explain)
    _add_cache(sub, raw)
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None) -> int:
    """Run the `kiln` command; returns the exit status (2 for a usage error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in DELEGATED:
            rc = importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
            return 0 if rc is None else rc
        parser = build_parser()
        ns = parser.parse_args(argv)
        if ns.command is None:
            parser.print_help()
            return 2
        rc = _run(ns)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        # NOTE: the reader (`| head`) went away: say nothing, and keep Python from failing
        # again when it flushes stdout at exit (the recipe of Python's `signal` docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130


def _run(ns) -> int:
    """Run the parsed command; its errors become one line on stderr."""
    prog = f"kiln {ns.command}"
    try:
        return ns.run(ns)
    except BrokenPipeError:
        raise
    except SpecError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except Unavailable as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if getattr(ns, "traceback", False):
            traceback.print_exc()
        what = str(e) if isinstance(e, CommandError) else describe_exception(e)
        print(f"{prog}: error: {what}", file=sys.stderr)
        return 1
