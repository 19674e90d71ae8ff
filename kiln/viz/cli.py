"""`kiln viz FILE.py:FUNCTION --arg SPEC ... [-o OUT.html]`: the picture of a function, from
the command line (`--arg` as for `kiln ir`: kiln/cli.py's parsing helpers are reused).

`main(argv)` runs it alone; `add_arguments(parser)` and `run(ns)` let `kiln`'s own parser
hold it as a subcommand."""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from kiln.cli import (SpecError, check_arguments, load_function, make_inputs, parse_arg_spec,
                      parse_target, unwrap)

HELP = """\
Loads FILE.py as a module (its `if __name__ == "__main__":` part does not run), finds FUNCTION
(plain or @kiln.jit), traces it on random inputs of the given types, compiles it up to MLIR
and writes ONE self-contained HTML file (it loads nothing from the network): a tab per
compiler stage with the graph (ops as boxes, fused kernels as clusters, values as arrows;
click a box for its source line and its kernel's MLIR) and a memory tab (each planned buffer
over the steps it lives in, at its arena offset; planned and naive peaks).

--arg is given once per positional argument, in order:
  f32[4,8]   a random float32 tensor of shape (4, 8)   (dtypes: f32 f64 i32 i64 bool)
  2.0, 3     a static Python number

examples:
  kiln viz examples/demo.py:step --arg f32[1024] -o demo.html
  kiln viz train.py:train_step --arg f32[64,784] --arg i64[64] -o step.html
"""


def _spec(text: str):
    try:
        return parse_arg_spec(text)
    except SpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="FILE.py:FUNCTION", help="the function to draw")
    p.add_argument("--arg", action="append", type=_spec, default=[], metavar="SPEC",
                   help="one per positional argument: f32[4,8], i64[3], bool[2], or 2.0")
    p.add_argument("--seed", type=int, default=0, help="seed for the random inputs (0)")
    p.add_argument("-o", "--output", metavar="OUT.html", type=Path,
                   help="where to write the page (default: FUNCTION.html)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiln viz", description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def main(argv=None) -> int:
    """Run `kiln viz`; returns the exit status (2: bad arguments, 1: could not draw)."""
    return run(build_parser().parse_args(argv))


class _Failed(Exception):
    """A one-line error for the user (exit status 1)."""


def run(ns) -> int:
    """`kiln viz` for parsed arguments (`add_arguments`); errors are one line on stderr."""
    try:
        out = _draw(ns)
    except SpecError as e:
        print(f"kiln viz: error: {e}", file=sys.stderr)
        return 2
    except _Failed as e:
        print(f"kiln viz: error: {e}", file=sys.stderr)
        return 1
    print(f"kiln viz: wrote {out}")
    return 0


def _draw(ns) -> Path:
    from .collect import collect
    from .page import render_html

    path, name = parse_target(ns.target)
    fn = _load(path, name)
    args = make_inputs(ns.arg, ns.seed)
    check_arguments(unwrap(fn), args, ns.arg)
    picture = _traced(name, path, lambda: collect(fn, args))
    try:
        html = render_html(picture)
    except ImportError as e:
        raise _Failed(str(e)) from None
    out = ns.output or Path(f"{name}.html")
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as e:
        raise _Failed(f"cannot write {out}: {e.strerror or e}") from None
    return out


def _traced(name: str, path: Path, collect):
    """`collect()`, with Kiln's errors (a graph break) and the user's own as one line."""
    from kiln.frontend.trace import GraphBreak
    from kiln.ir.errors import KilnError

    try:
        return collect()
    except KilnError as e:
        where = f" (at {e.loc})" if e.loc is not None else ""
        more = ("; a picture shows one graph, `kiln explain` shows the graphs around a break"
                if isinstance(e, GraphBreak) else "")
        raise _Failed(f"cannot draw {name}: {' '.join(e.message.split())}{where}{more}") \
            from None
    except Exception as e:
        raise _Failed(f"{name} raised {_one_line(e)}{_user_line(e, path)}") from None


def _load(path: Path, name: str):
    try:
        return load_function(path, name)
    except SpecError:
        raise
    except Exception as e:
        if type(e).__module__ == "kiln.cli":   # NOTE: kiln/cli.py's own one-line errors
            raise _Failed(" ".join(str(e).split())) from None
        raise _Failed(f"cannot import {path}: {_one_line(e)}{_user_line(e, path)}") from None


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _user_line(e: Exception, path: Path) -> str:
    """` (at file.py:12)`: the innermost frame in the user's file, if any."""
    target = path.resolve()
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        if Path(frame.filename).resolve() == target:
            return f" (at {path.name}:{frame.lineno})"
    return ""
