"""FileCheck-style patterns (LLVM's FileCheck, the subset IR tests use) for pinning part of a
printed IR: `CHECK:`, `CHECK-NEXT:`, `CHECK-SAME:`, `CHECK-EMPTY:` and `CHECK-NOT:` lines.

- `CHECK: text` finds `text` at or after the end of the previous match;
- `CHECK-NEXT:` finds the first match after the previous one, which must be on the next
  line; `CHECK-SAME:` the same on the same line; `CHECK-EMPTY:` the next line is empty;
- `CHECK-NOT: text` must not occur between the matches around it (or after the last one);
- in a pattern, runs of spaces match any run of spaces and tabs; `{{regex}}` is a regular
  expression; `[[NAME:regex]]` captures a value and `[[NAME]]` matches it again, so SSA names
  need not be pinned: `CHECK: [[E:%[0-9]+]]: f32[4] = exp` then `CHECK-NEXT: add [[E]]`.
Regular expressions follow LLVM's: `^` and `$` match at line starts and ends, `.` and a
negated class (`[^,]`) never match a newline, POSIX classes (`[[:digit:]]`, `[[:space:]]`...)
work. Numeric substitutions (`[[#N]]`) and `[[@LINE]]` are refused ("not supported yet").
A directive may follow a comment marker (`# CHECK:`, `// CHECK:`); other lines are ignored.

On the command line (`kiln filecheck PATTERN_FILE`, reading the text from stdin):

    kiln ir model.py:step --arg f32[64,784] --stage fusion | kiln filecheck step.checks
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys

_KINDS = ("", "-NEXT", "-SAME", "-EMPTY", "-NOT")
_UNSUPPORTED = ("-DAG", "-LABEL", "-COUNT")
_SPACE = re.compile(r"[ \t]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
# NOTE: POSIX bracket-expression classes (LLVM's regexes are POSIX ERE) as Python class items
_POSIX = {"alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
          "lower": "a-z", "space": " \\t\\n\\r\\f\\v", "blank": " \\t",
          "xdigit": "0-9A-Fa-f", "cntrl": "\\x00-\\x1f\\x7f", "print": "\\x20-\\x7e",
          "graph": "\\x21-\\x7e", "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")}


class FileCheckError(ValueError):
    """The patterns themselves are wrong (an unknown directive, an undefined variable)."""


@dataclasses.dataclass
class Directive:
    """One pattern line: its kind ("" for CHECK, "-NEXT", ...), text and line number."""

    kind: str
    text: str
    line: int

    def label(self, prefix: str) -> str:
        return f"{prefix}{self.kind}: {self.text}"


def parse_checks(patterns: str, prefix: str = "CHECK", name: str = "<patterns>") -> list:
    """The directives in `patterns`; FileCheckError for a malformed or unsupported one."""
    if not re.fullmatch(r"[A-Za-z][\w-]*", prefix):
        raise FileCheckError(f"bad check prefix {prefix!r}: letters, digits, '_' and '-'")
    found = re.compile(rf"(?<![\w-]){re.escape(prefix)}(-[A-Z]+(?:-\d+)?)?:(.*)$")
    out: list[Directive] = []
    for number, line in enumerate(patterns.splitlines(), 1):
        m = found.search(line)
        if m is None:
            continue
        kind, text = m.group(1) or "", m.group(2).strip()
        where = f"{name}:{number}"
        if kind.startswith(_UNSUPPORTED):
            raise FileCheckError(f"{where}: not supported yet: {prefix}{kind} (supported: "
                                 + ", ".join(prefix + k for k in _KINDS) + ")")
        if kind not in _KINDS:
            raise FileCheckError(f"{where}: unknown directive {prefix}{kind}")
        if not text and kind != "-EMPTY":
            raise FileCheckError(f"{where}: found empty check string with prefix "
                                 f"'{prefix}{kind}:'")
        if kind in ("-NEXT", "-SAME", "-EMPTY") and not any(d.kind != "-NOT" for d in out):
            raise FileCheckError(f"{where}: found '{prefix}{kind}' without previous "
                                 f"'{prefix}:' line")
        out.append(Directive(kind, text, number))
    if not out:
        raise FileCheckError(f"{name}: no check strings found with prefix '{prefix}:'")
    return out


def has_checks(text: str, prefix: str = "CHECK") -> bool:
    """Does `text` hold at least one directive line (a pattern file, not a golden text)?"""
    return re.search(rf"(?<![\w-]){re.escape(prefix)}(-[A-Z]+)?:", text) is not None


def filecheck(text: str, patterns: str, *, prefix: str = "CHECK", name: str = "<patterns>",
              input_name: str = "<input>") -> str | None:
    """Match `text` against the directives in `patterns`: None, or the first failure as a
    message naming the pattern's line and the input's line.

    >>> ir = "%0: f32[4] = exp %x\\n%1: f32[4] = add %0, %y\\n"
    >>> filecheck(ir, "CHECK: [[E:%[0-9]+]]: f32[4] = exp\\nCHECK-NEXT: add [[E]]")
    >>> print(filecheck(ir, "CHECK: exp\\nCHECK-NOT: add"))
    <patterns>:2: error: CHECK-NOT: excluded string found in input
    CHECK-NOT: add
    <input>:2: %1: f32[4] = add %0, %y
    """
    directives = parse_checks(patterns, prefix, name)
    return _Matcher(text, prefix, name, input_name).run(directives)


class _Matcher:
    """The scan: `pos` is where the previous match ended; CHECK-NOTs wait for the next
    positive match (or the end of the input) to know their range."""

    def __init__(self, text: str, prefix: str, name: str, input_name: str):
        self.text = text
        self.prefix = prefix
        self.name = name
        self.input_name = input_name
        self.pos = 0
        self.line = -1          # the line of the previous match
        self.variables: dict[str, str] = {}
        # NOTE: a final newline ends the last line; it does not start an empty one
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        self.starts, self.ends, at = [], [], 0
        for line in lines:
            self.starts.append(at)
            self.ends.append(at + len(line))
            at += len(line) + 1

    def run(self, directives) -> str | None:
        pending: list[Directive] = []
        for d in directives:
            if d.kind == "-NOT":
                pending.append(d)
                continue
            m, problem = self._find(d)
            if problem is not None:
                return problem
            problem = self._check_nots(pending, m.start())
            if problem is not None:
                return problem
            pending = []
            self.variables.update({k: v for k, v in m.groupdict().items() if v is not None})
            self.pos = m.end()
            self.line = self._line_of(max(m.end() - 1, m.start()))
        return self._check_nots(pending, len(self.text))

    def _find(self, d: Directive):
        """(match, None) or (None, message). As LLVM's FileCheck: CHECK-NEXT and CHECK-SAME
        take the first match after the previous one and then check its line."""
        if d.kind == "-EMPTY":
            line = self.line
            if line + 1 >= len(self.ends):
                return None, self._missing(d, "expected an empty line after the previous "
                                           "match (the input ended)", None)
            start = self._line_end(line) + 1
            if self.ends[line + 1] != start:
                return None, self._missing(d, "the line after the previous match is not "
                                           "empty", line + 1)
            return _Span(start, start, {}), None
        m = self._search(self._regex(d), self.pos, len(self.text))
        if m is None:
            return None, self._missing(d, "expected string not found in input",
                                       self._line_of(self.pos))
        newlines = self.text.count("\n", self.pos, m.start())
        if d.kind == "-NEXT" and newlines != 1:
            what = ("is on the same line as previous match" if newlines == 0 else
                    "is not on the line after the previous match")
            return None, self._misplaced(d, what, m)
        if d.kind == "-SAME" and newlines != 0:
            return None, self._misplaced(d, "is not on the same line as the previous match", m)
        return m, None

    def _search(self, regex: re.Pattern, start: int, end: int):
        """The first match inside text[start:end], searched as a text of its own (as LLVM
        does: `{{^}}` matches where the previous match ended, `{{$}}` at `end`)."""
        m = regex.search(self.text[start:end])
        return None if m is None else _Span(start + m.start(), start + m.end(),
                                             m.groupdict())

    def _misplaced(self, d: Directive, what: str, m) -> str:
        line = self._line_of(m.start())
        notes = [f"{self.input_name}:{line + 1}: found here: {self._line(line)}"]
        if self.line >= 0:
            notes.append(f"{self.input_name}:{self.line + 1}: previous match ended here: "
                         f"{self._line(self.line)}")
        return self._error(d, what, notes)

    def _check_nots(self, pending, end: int) -> str | None:
        for d in pending:
            m = self._search(self._regex(d), self.pos, end)
            if m is not None:
                line = self._line_of(m.start())
                return self._error(d, "excluded string found in input",
                                   [f"{self.input_name}:{line + 1}: {self._line(line)}"])
        return None

    def _regex(self, d: Directive) -> re.Pattern:
        where = f"{self.name}:{d.line}"
        parts, defined = [], set()
        for kind, value in _pieces(d.text, where):
            if kind == "text":
                parts.append(_literal(value))
            elif kind == "regex":
                parts.append(f"(?:{_posix_regex(value, where)})")
            elif kind == "define":
                name, regex = value
                parts.append(f"(?P<{name}>{_posix_regex(regex, where)})")
                defined.add(name)
            elif value in defined:
                parts.append(f"(?P={value})")
            elif value in self.variables:
                parts.append(re.escape(self.variables[value]))
            else:
                raise FileCheckError(f"{where}: undefined variable: {value}")
        try:
            return re.compile("".join(parts), re.MULTILINE)
        except re.error as e:
            raise FileCheckError(f"{where}: bad regular expression in "
                                 f"{d.label(self.prefix)!r}: {e}") from None

    # ---- lines and messages ----------------------------------------------------------------
    def _line_of(self, pos: int) -> int:
        lo, hi = 0, max(len(self.starts) - 1, 0)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _line_end(self, line: int) -> int:
        """Where line `line` ends (its newline); -1 before the first, past the text after
        the last."""
        if line < 0:
            return -1
        return self.ends[line] if line < len(self.ends) else len(self.text) + 1

    def _line(self, line: int) -> str:
        return self.text[self.starts[line]:self._line_end(line)]

    def _missing(self, d: Directive, what: str, line: int | None) -> str:
        notes = []
        if line is not None and line < len(self.starts):
            notes.append(f"{self.input_name}:{line + 1}: scanning from here: "
                         f"{self._line(line)}")
            close = self._closest(d.text, line)
            if close is not None:
                notes.append(f"{self.input_name}:{close + 1}: closest line: "
                             f"{self._line(close)}")
        return self._error(d, what, notes)

    def _closest(self, pattern: str, first: int) -> int | None:
        """The input line from `first` on that looks most like the pattern (a hint)."""
        best, score = None, 0.5
        for line in range(first, len(self.starts)):
            ratio = difflib.SequenceMatcher(None, pattern, self._line(line).strip()).ratio()
            if ratio > score:
                best, score = line, ratio
        return best

    def _error(self, d: Directive, what: str, notes: list) -> str:
        return "\n".join([f"{self.name}:{d.line}: error: {self.prefix}{d.kind}: {what}",
                          d.label(self.prefix)] + notes)


class _Span:
    """A match: where it starts and ends in the whole text, and the variables it set."""

    def __init__(self, start: int, end: int, groups: dict):
        self._start, self._end, self._groups = start, end, groups

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end

    def groupdict(self) -> dict:
        return self._groups


def _pieces(text: str, where: str):
    """A pattern's parts: ("text", s), ("regex", r) for {{r}}, ("define", (name, r)) for
    [[name:r]] and ("use", name) for [[name]]. As in LLVM, the `]]` closing a definition is
    the first one outside brackets (`[[N:[0-9]]]`) and `}}` closes a regex."""
    at = 0
    while True:
        starts = [k for k in (text.find("{{", at), text.find("[[", at)) if k >= 0]
        if not starts:
            yield "text", text[at:]
            return
        k = min(starts)
        yield "text", text[at:k]
        if text.startswith("{{", k):
            end = text.find("}}", k + 2)
            if end < 0:
                raise FileCheckError(f"{where}: found start of regex string with no end '}}}}'")
            yield "regex", text[k + 2:end]
            at = end + 2
            continue
        end = _substitution_end(text, k + 2)
        if end < 0:
            raise FileCheckError(f"{where}: invalid substitution block, no ]] found in "
                                 f"{text[k:]!r}")
        yield _substitution(text[k + 2:end], where)
        at = end + 2


def _substitution_end(text: str, at: int) -> int:
    """Where the `]]` that closes a substitution starting at `at` is (-1 if none)."""
    depth = 0
    while at < len(text):
        c = text[at]
        if c == "\\":
            at += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            if depth == 0 and text.startswith("]]", at):
                return at
            depth = max(depth - 1, 0)
        at += 1
    return -1


def _substitution(body: str, where: str):
    if body.startswith("#"):
        raise FileCheckError(f"{where}: not supported yet: numeric substitution blocks "
                             f"([[{body}]]); capture the text with [[NAME:regex]]")
    if body.startswith("@"):
        raise FileCheckError(f"{where}: not supported yet: pseudo variables ([[{body}]])")
    name, colon, regex = body.partition(":")
    if _NAME.match(name.lstrip("$")) is None:
        raise FileCheckError(f"{where}: invalid variable name {name!r} in [[{body}]]")
    name = name.lstrip("$")
    return ("define", (name, regex)) if colon else ("use", name)


def _posix_regex(regex: str, where: str) -> str:
    """An LLVM (POSIX) regex as a Python one: bracket expressions rewritten so that POSIX
    classes work, a negated class never matches a newline (LLVM matches with REG_NEWLINE)
    and a `[` inside a class is literal."""
    out, at = [], 0
    while at < len(regex):
        c = regex[at]
        if c == "\\":
            out.append(regex[at:at + 2])
            at += 2
        elif c == "[":
            item, at = _bracket(regex, at, where)
            out.append(item)
        else:
            out.append(c)
            at += 1
    return "".join(out)


def _bracket(regex: str, at: int, where: str) -> tuple[str, int]:
    """The bracket expression starting at `at` as a Python class, and where it ends."""
    k = at + 1
    negated = regex.startswith("^", k)
    k += negated
    items = []
    if regex.startswith("]", k):        # NOTE: a leading `]` is a literal in POSIX
        items.append("\\]")
        k += 1
    while k < len(regex) and regex[k] != "]":
        m = re.match(r"\[:([a-z]+):\]", regex[k:])
        if m is not None:
            if m.group(1) not in _POSIX:
                raise FileCheckError(f"{where}: unknown character class [:{m.group(1)}:] in "
                                     f"{regex!r}")
            items.append(_POSIX[m.group(1)])
            k += m.end()
        elif regex[k] == "\\":
            items.append(regex[k:k + 2])
            k += 2
        else:
            items.append("\\[" if regex[k] == "[" else regex[k])
            k += 1
    if k >= len(regex):
        raise FileCheckError(f"{where}: unterminated bracket expression in {regex!r}")
    return "[" + ("^\\n" if negated else "") + "".join(items) + "]", k + 1


def _literal(text: str) -> str:
    return "[ \t]+".join(re.escape(part) for part in _SPACE.split(text))


def assert_filecheck(text: str, patterns: str, **options) -> None:
    """Raise AssertionError with `filecheck`'s message (and the text) when it fails."""
    problem = filecheck(text, patterns, **options)
    if problem is not None:
        raise AssertionError(f"{problem}\n\nthe input was:\n{text}")


# ---- the command ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiln filecheck", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check the text on stdin against the CHECK lines of PATTERN_FILE "
        "(CHECK:, CHECK-NEXT:, CHECK-SAME:, CHECK-EMPTY:, CHECK-NOT:, {{regex}}, "
        "[[VAR:regex]] and [[VAR]]).\nExit status 0 when it matches, 1 when it does not, 2 "
        "for an unusable command line or pattern file.\n\nexample:\n  kiln ir "
        "examples/demo.py:step --arg f32[1024] --stage fusion | kiln filecheck step.checks")
    parser.add_argument("pattern_file", metavar="PATTERN_FILE")
    parser.add_argument("--check-prefix", default="CHECK", metavar="PREFIX",
                        help="the directive prefix (default CHECK)")
    parser.add_argument("--input-file", metavar="FILE", help="read the text from FILE, not "
                        "stdin")
    return parser


def main(argv=None) -> int:
    """`kiln filecheck PATTERN_FILE`: 0 when stdin matches, 1 when not, 2 for a usage or
    pattern error; messages go to stderr."""
    try:
        ns = build_parser().parse_args(argv)
    except SystemExit as e:         # NOTE: argparse exits 2 on a usage error, 0 on --help
        return int(e.code or 0)
    try:
        with open(ns.pattern_file, encoding="utf-8") as f:
            patterns = f.read()
        if ns.input_file is None:
            text, input_name = sys.stdin.read(), "<stdin>"
        else:
            with open(ns.input_file, encoding="utf-8") as f:
                text, input_name = f.read(), ns.input_file
        problem = filecheck(text, patterns, prefix=ns.check_prefix, name=ns.pattern_file,
                            input_name=input_name)
    except (OSError, FileCheckError) as e:
        print(f"kiln filecheck: error: {e}", file=sys.stderr)
        return 2
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0
