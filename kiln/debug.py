"""`KILN_DEBUG`: how much the compiler tells on stderr while a program runs (like tinygrad's
`DEBUG`). Each level includes the ones below it:

- 1: each compile and recompile of a `@kiln.jit` function, with its reason and time;
- 2: one line per kernel launch, library call and host step (compiled or eager), with its
  time, GB/s and GFLOP/s against the machine's floors (runtime/profiling.py);
- 3: the graph after each pass, and each schedule once its memory is planned;
- 4: the MLIR, LLVM IR and assembly (PTX on a GPU) of each compiled kernel and entry.

The level is read from the environment once, when Kiln is imported; `set_level` changes it
for the rest of the process (code compiled before keeps what it printed).

    >>> import kiln.debug
    >>> old = kiln.debug.set_level(1)
    >>> kiln.debug.level()
    1
    >>> _ = kiln.debug.set_level(old)
"""
from __future__ import annotations

import os
import sys
import time
import weakref

MAX_LEVEL = 4


def _parse(text: str | None) -> int:
    """The level an environment value asks for: empty or unset is 0, above 4 is 4 (as
    tinygrad's DEBUG); an unreadable value warns once and is 0, so that a typo in the
    environment never stops `import kiln`."""
    if text is None or not text.strip():
        return 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        import warnings
        warnings.warn(f"KILN_DEBUG must be an integer from 0 to {MAX_LEVEL}, got {text!r}; "
                      "debug output is off", RuntimeWarning, stacklevel=2)
        return 0
    return min(value, MAX_LEVEL)


LEVEL = _parse(os.environ.get("KILN_DEBUG"))


def level() -> int:
    """The current debug level (0: silent)."""
    return LEVEL


def set_level(value: int) -> int:
    """Set the debug level for the rest of the process; returns the previous one."""
    global LEVEL
    if type(value) is not int or not 0 <= value <= MAX_LEVEL:
        raise ValueError(f"debug level must be an integer from 0 to {MAX_LEVEL}, got {value!r}")
    old, LEVEL = LEVEL, value
    from kiln.runtime import profiling     # NOTE: the timed runners follow level 2
    profiling.refresh()
    return old


def log(text: str) -> None:
    """One message on stderr, prefixed `kiln:` (written at once: a crash keeps it)."""
    write(f"kiln: {text}\n")


_STDERR_GONE = False


def write(text: str) -> None:
    """Write debug output to stderr and flush it. Debug printing never raises into the
    user's program: once stderr is closed (`... 2>&1 | head -1`) it stops for good."""
    global _STDERR_GONE
    if _STDERR_GONE:
        return
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):   # NOTE: BrokenPipeError, or a closed sys.stderr
        _STDERR_GONE = True
        _silence_stderr()


def _silence_stderr() -> None:
    """Point the stderr descriptor at /dev/null, so that the interpreter's own flush at exit
    does not report the broken pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stderr.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


# ---- level 1: compiles and recompiles (called by frontend/jit.py on a cache miss) --------------
_REPORTED: weakref.WeakSet = weakref.WeakSet()


def compile_started() -> int:
    """The clock when a `@kiln.jit` cache miss started compiling."""
    return time.perf_counter_ns()


def compile_done(jitfn, entry, start_ns: int) -> None:
    """Report what a cache miss of `jitfn` made (`entry`) at level 1, and record it as a
    `compile` event when a profiler runs."""
    end_ns = time.perf_counter_ns()
    from kiln.runtime import profiling
    if not LEVEL and not profiling.STATE.recording:
        return
    if entry in _REPORTED:  # NOTE: a replay entry moved to a new key: nothing was compiled
        return
    _REPORTED.add(entry)
    text = compile_message(jitfn, entry, (end_ns - start_ns) / 1e6)
    if LEVEL >= 1:
        log(text)
    profiling.record_compile(f"@{jitfn.name}", text, start_ns, end_ns)


def segment_compiled(name: str, position: int, version: int, why: str, compiled,
                     start_ns: int) -> None:
    """Report a graph compiled in replay mode (between two reads of a value, after a graph
    break; frontend/replay.py) at level 1, and record it as a `compile` event when a profiler
    runs: `compile @f graph 2 #1 (first time reached): 1 kernels, ... in 40.1 ms`."""
    end_ns = time.perf_counter_ns()
    from kiln.runtime import profiling
    if not LEVEL and not profiling.STATE.recording:
        return
    verb = "compile" if version <= 1 else "recompile"
    text = (f"{verb} @{name} graph {position + 1} #{version} ({_one_line(why)}): "
            f"{_executable_summary(getattr(compiled, 'executable', None))} in "
            f"{(end_ns - start_ns) / 1e6:.1f} ms")
    if LEVEL >= 1:
        log(text)
    profiling.record_compile(f"@{name} graph {position + 1}", text, start_ns, end_ns)


def compile_message(jitfn, entry, ms: float) -> str:
    """`recompile @f #2 (why): 3 kernels, ... in 41.2 ms`, or why it runs eagerly."""
    reasons = vars(jitfn).get("recompile_reasons", ())
    n = jitfn.traces
    why = "first call" if n <= 1 or not reasons else _one_line(reasons[-1])
    if not hasattr(entry, "executable"):
        kind = "in replay mode" if getattr(entry, "segments", None) is not None else "eagerly"
        if kind == "eagerly" and n > 1:
            # NOTE: the entry's own reason names the guard that failed on this call; the
            # last recompile reason is the one before it
            why = f"after {n} traces"
        return f"@{jitfn.name} runs {kind} ({why}): " \
            f"{_one_line(str(getattr(entry, 'reason', '?')))} [{ms:.1f} ms]"
    parts = [_executable_summary(entry.executable)]
    backward = getattr(entry, "backward", None)
    if getattr(backward, "executable", None) is not None:
        parts.append("backward: " + _executable_summary(backward.executable))
    cached = " (plan from the disk cache)" if getattr(entry, "_stages", 0) is None else ""
    verb = "compile" if n <= 1 else "recompile"
    return f"{verb} @{jitfn.name} #{n} ({why}): {'; '.join(parts)} in {ms:.1f} ms{cached}"


def _one_line(text: str) -> str:
    """A reason as one line (an error's `at file:line` goes after a semicolon)."""
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def _executable_summary(exe) -> str:
    if exe is None:
        return "no executable"
    schedule = exe.schedule
    counts = {"launch": 0, "call": 0, "run": 0}
    for st in schedule.steps:
        counts[type(st).__name__.lower()] += 1
    return (f"{counts['launch']} kernels, {counts['call']} library calls, "
            f"{counts['run']} host steps, arena {schedule.arena_bytes or 0} bytes")
