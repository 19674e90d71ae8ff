"""The `kiln` command: show what the compiler makes of a Python function, stage by stage.

    kiln ir examples/demo.py:step --arg f32[1024]                 # every stage
    kiln ir examples/demo.py:step --arg f32[1024] --stage llvm    # one stage
    kiln ir examples/demo.py:step --arg f32[1024] --list-stages
    kiln explain examples/demo.py:step --arg f32[1024]

`python -m kiln ...` is the same command. Heavy imports (the compiler) happen only once a
command runs, so `kiln --help` and argument errors stay fast and work on a broken build.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import sys
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
        raise SpecError(f"no such file: {path}")
    module_name = "_kiln_cli_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # NOTE: registered before it runs, as a normal import would be, so dataclasses and
    # pickling inside the user's file find their module; its folder is importable for helpers.
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    spec.loader.exec_module(module)
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
    """The plain Python function under a `@kiln.jit` wrapper (or `obj` itself)."""
    for attr in ("__wrapped__", "fn"):
        inner = getattr(obj, attr, None)
        if callable(inner):
            return inner
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


def _compile_stages(fn, args, device: str = "cpu"):
    try:
        from kiln.frontend.jit import compile_stages
    except ImportError as e:
        raise Unavailable(f"this build has no kiln.frontend.jit.compile_stages ({e})") from e
    return compile_stages(fn, args, device=device)


def cmd_ir(ns) -> int:
    fn = unwrap(load_function(*parse_target(ns.target)))
    stages = _compile_stages(fn, make_inputs(ns.arg, ns.seed), ns.device)
    if ns.list_stages:
        print("\n".join(dict.fromkeys(s[0] for s in stages)))
        return 0
    chosen = select_stages(stages, ns.stage)
    if ns.stage is None:
        print("\n\n".join(format_stage(n, t) for n, t in chosen))
    else:
        # NOTE: one stage prints bare, with no header, so it can be piped (`> kernel.ll`).
        print("\n".join(t.rstrip("\n") for _, t in chosen))
    return 0


def cmd_explain(ns) -> int:
    import kiln

    explain = getattr(kiln, "explain", None)
    if explain is None:
        raise Unavailable("not supported yet (this build has no kiln.explain)")
    fn = load_function(*parse_target(ns.target))
    report = explain(fn, *make_inputs(ns.arg, ns.seed))
    if report is not None:
        print(report)
    return 0


def _size(n: int) -> str:
    """`1536` -> `'1.5 KiB (1536 bytes)'`; `12` -> `'12 bytes'`."""
    if n < 1024:
        return f"{n} bytes"
    scaled, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if scaled < 1024:
            break
        scaled, unit = scaled / 1024, bigger
    return f"{scaled:.1f} {unit} ({n} bytes)"


def _cache_off_line(info: dict) -> str:
    import os

    return (f"disk cache: off ({info['disabled_reason']}; "
            f"KILN_CACHE_DIR={os.environ.get('KILN_CACHE_DIR', '')!r})")


def _cache_command(action):
    """Run `action(cache)` on the default disk cache, printing its warnings as one line each
    (not Python's two-line format); exit status 1 when the cache cannot use its folder."""
    import warnings

    from kiln.runtime.disk_cache import KilnCacheWarning, default_disk_cache

    def run(ns) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KilnCacheWarning)
            cache = default_disk_cache()
            rc = action(cache)
        for w in caught:
            print(f"kiln cache: warning: {w.message}", file=sys.stderr)
        return 1 if rc == 0 and cache.path is not None and not cache.enabled else rc
    return run


def _cache_info(cache) -> int:
    info = cache.info()
    if info["path"] is None:
        print(_cache_off_line(info))
        return 0
    print(f"path:    {info['path']}")
    print(f"entries: {info['entries']}")
    print(f"size:    {_size(info['bytes'])}; at most {_size(info['max_bytes'])}")
    print("status:  " + ("enabled" if info["enabled"] else
                         f"disabled ({info['disabled_reason']})"))
    return 0


def _cache_clear(cache) -> int:
    before = cache.info()
    if before["path"] is None:
        print(_cache_off_line(before) + "; nothing to clear")
        return 0
    removed = cache.clear()
    after = cache.info()
    print(f"removed {removed} entries, {_size(before['bytes'] - after['bytes'])}, "
          f"from {before['path']}")
    if after["entries"]:
        print(f"kiln cache: {after['entries']} entries could not be removed", file=sys.stderr)
        return 1
    return 0


cmd_cache_info = _cache_command(_cache_info)
cmd_cache_clear = _cache_command(_cache_clear)


_CACHE_HELP = """\
Kiln keeps the machine code it compiles in a disk cache, so a later process loads it instead
of compiling again. `kiln cache info` prints the cache's folder, how many entries it holds and
their size; `kiln cache clear` removes them all. Exit status 1 when the folder cannot be
used (a warning says why).

environment:
  KILN_CACHE_DIR        the cache's folder (entries go in a subfolder per format version);
                        default $XDG_CACHE_HOME/kiln, else ~/.cache/kiln; `off` turns it off
  KILN_CACHE_MAX_BYTES  size cap, e.g. 1073741824, 512M or 2GiB (default 1 GiB); the least
                        recently used entries are removed past it

examples:
  kiln cache info
  KILN_CACHE_DIR=/tmp/kc kiln cache clear
"""


_MAIN_HELP = """\
Kiln's command line: look inside the compiler. `kiln ir` prints a function's IR after
every compiler stage (traced graph, each pass, MLIR, LLVM IR, assembly); `kiln explain`
prints kiln.explain(f, *args): graphs, breaks, guards and side effects; `kiln cache info` and
`kiln cache clear` show and empty the disk cache of compiled machine code.

examples:
  kiln ir examples/demo.py:step --arg f32[1024]
  kiln ir examples/demo.py:step --arg f32[1024] --stage fusion
  kiln cache info

`python -m kiln` is the same command; `kiln ir --help` explains its arguments.
"""

_IR_HELP = """\
Loads FILE.py as a module (its `if __name__ == "__main__":` part does not run), finds FUNCTION
(plain or decorated with @kiln.jit), calls it on random inputs of the given types and prints
the IR after every stage: `traced`, then one stage per pass (`canonicalize`,
`fusion`, ...), then `mlir`, `llvm` and `asm` (one block per kernel).

--arg is given once per positional argument, in order:
  f32[4,8]   a random float32 tensor of shape (4, 8)   (dtypes: f32 f64 i32 i64 bool)
  f32[]      a 0-d tensor
  2.0, 3     a static Python number (a guarded constant, not a graph input)

examples:
  kiln ir examples/demo.py:step --arg f32[1024]
  kiln ir examples/demo.py:step --arg f32[16777216] --stage llvm
  kiln ir model.py:loss --arg f32[64,784] --arg i64[64] --list-stages
"""


def _spec_type(spec: str):
    try:
        return parse_arg_spec(spec)
    except SpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="FILE.py:FUNCTION", help="the function to compile")
    p.add_argument("--arg", action="append", type=_spec_type, default=[], metavar="SPEC",
                   help="one per positional argument: f32[4,8], i64[3], bool[2], or 2.0")
    p.add_argument("--seed", type=int, default=0, help="seed for the random inputs (0)")


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="kiln", description=_MAIN_HELP, formatter_class=raw)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    ir = sub.add_parser("ir", help="print the IR at every compiler stage", description=_IR_HELP,
                        formatter_class=raw)
    _add_common(ir)
    ir.add_argument("--stage", metavar="NAME", help="print only this stage, without a header")
    ir.add_argument("--list-stages", action="store_true", help="print only the stage names")
    ir.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="the target: cpu (assembly) or cuda (PTX, made without a GPU)")
    ir.set_defaults(run=cmd_ir)
    ex = sub.add_parser("explain", help="print kiln.explain(f, *args)",
                        description="Print kiln.explain(FUNCTION, *args) for random args "
                        "(--arg as for `kiln ir`).\n\nexample:\n  kiln explain "
                        "examples/demo.py:step --arg f32[1024]", formatter_class=raw)
    _add_common(ex)
    ex.set_defaults(run=cmd_explain)
    cache = sub.add_parser("cache", help="show or empty the disk cache of compiled code",
                           description=_CACHE_HELP, formatter_class=raw)
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    cache_sub.add_parser("info", help="print the folder, number of entries and total size",
                         description="Print the disk cache's folder, number of entries, "
                         "total size and size cap.").set_defaults(run=cmd_cache_info)
    cache_sub.add_parser("clear", help="remove every entry",
                         description="Remove every entry of the disk cache (files that are "
                         "not the cache's own are left alone).").set_defaults(
                             run=cmd_cache_clear)
    cache.set_defaults(run=lambda ns: (cache.print_help(), 2)[1])
    return parser


def main(argv=None) -> int:
    """Run the `kiln` command; returns the exit status (2 for a usage error)."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help()
        return 2
    try:
        return ns.run(ns)
    except SpecError as e:
        print(f"kiln {ns.command}: error: {e}", file=sys.stderr)
        return 2
    except Unavailable as e:
        print(f"kiln {ns.command}: {e}", file=sys.stderr)
        return 1
