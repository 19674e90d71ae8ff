"""Kiln's main job in one screen: a jitted function, its IR at every stage, its result.

    python examples/demo.py        (or `make demo`)

`step` lives at module level so the CLI can load it too:

    python -m kiln ir examples/demo.py:step --arg f32[1024]
"""
from __future__ import annotations

import re
import sys
import time

import numpy as np

import kiln
from kiln.cli import format_stage, unwrap
from kiln.frontend.jit import compile_stages

N = 2**24
TOLERANCE = 1e-6        # max relative error against NumPy float64 (issue 2's acceptance)
MAX_STAGE_LINES = 25    # NOTE: LLVM IR and assembly run to hundreds of lines; show the start
SEE_ALL = "see all: python -m kiln ir examples/demo.py:step --arg f32[16777216] --stage {}"


@kiln.jit
def step(x):
    return x * kiln.sigmoid(x) * 0.5 + kiln.tanh(x)


def reference(x: np.ndarray) -> np.ndarray:
    """The same expression in NumPy float64: the oracle."""
    x = x.astype(np.float64)
    return x * (1.0 / (1.0 + np.exp(-x))) * 0.5 + np.tanh(x)


def numpy_step(x: np.ndarray) -> np.ndarray:
    """What a NumPy user would write, in float32: the peer Kiln is timed against."""
    return x * (1 / (1 + np.exp(-x))) * 0.5 + np.tanh(x)


def max_rel_error(got: np.ndarray, want: np.ndarray) -> float:
    # NOTE: f(x) = 0 only at x = 0, where both terms vanish with x, so dividing by |want|
    # (kept above the smallest normal float) measures relative error everywhere.
    denom = np.maximum(np.abs(want), np.finfo(np.float32).tiny)
    return float(np.max(np.abs(got.astype(np.float64) - want) / denom))


def median_ms(fn, arg, reps: int = 10) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def show_stages(x) -> None:
    previous = None
    for name, text in compile_stages(unwrap(step), [x]):
        if previous is not None and text == previous[1]:
            print(f"=== stage: {name} === (same as {previous[0]})\n")
            continue
        previous = (name, text)
        print(format_stage(name, skip_constants(name, text), MAX_STAGE_LINES,
                           SEE_ALL.format(name)))
        print()


def skip_constants(stage: str, text: str) -> str:
    """Assembly starts with a pool of constants; start at each kernel's code instead."""
    if stage != "asm":
        return text
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if re.match(r"^[A-Za-z_]\w*:", line)]
    if not starts:
        return text
    return "\n".join([f"({starts[0]} lines of constants skipped)"] + lines[starts[0]:])


def check_and_time(x_np: np.ndarray, x) -> bool:
    t0 = time.perf_counter()
    y = step(x).numpy()
    print(f"first call of step: {time.perf_counter() - t0:.2f} s")
    err = max_rel_error(y, reference(x_np))
    ok = err <= TOLERANCE
    print(f"max relative error vs NumPy float64: {err:.2e} "
          f"({'ok' if ok else 'FAILED'}: tolerance {TOLERANCE:.0e})")
    kiln_ms = median_ms(step, x)
    numpy_ms = median_ms(numpy_step, x_np)
    print(f"median of 10 calls on {N:,} float32 elements: Kiln {kiln_ms:.1f} ms, "
          f"NumPy {numpy_ms:.1f} ms -> Kiln is {numpy_ms / kiln_ms:.2f}x NumPy's speed")
    print("(one run on this machine; `make bench` measures all peers against the memory floor)")
    return ok


def autograd_example() -> None:
    print("=== eager tensors and autograd ===")
    x = kiln.tensor([2.0, 3.0])
    y = kiln.tensor([4.0, 1.0])
    print("x + y =", x + y)
    w = kiln.tensor([1.0, -2.0, 0.5], requires_grad=True)
    loss = (w * w).sum() + kiln.tanh(w).sum()
    loss.backward()
    w_np = w.detach().numpy()
    print("loss =", loss.item())
    print("d loss / d w =", w.grad)
    print("expected 2w + 1 - tanh(w)^2 =", np.round(2 * w_np + 1 - np.tanh(w_np) ** 2, 4))


def main() -> int:
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(N, dtype=np.float32)
    x = kiln.from_numpy(x_np)
    print(f"@kiln.jit step(x) = x * sigmoid(x) * 0.5 + tanh(x), x: float32[{N}]\n")
    show_stages(x)
    ok = check_and_time(x_np, x)
    print()
    autograd_example()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
