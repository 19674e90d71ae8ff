"""The machine's peaks that `KILN_DEBUG=2` compares each step with: memory bandwidth (GB/s)
and arithmetic throughput (GFLOP/s). A step's time can not fall below its bytes over the
bandwidth peak nor its flops over the flops peak: those are its floors.

Measured once per process and device, on first use: bandwidth as the best of a few copies of
a 32 MiB array (read + write, on the device: NumPy's copy on the CPU), throughput as the best
of a few float32 1024x1024 matmuls through the device's library call (NumPy's BLAS on the
CPU; a device without one has no flops peak). `KILN_PEAK_GBPS` and `KILN_PEAK_GFLOPS` (numbers)
replace the measurement, for every device.

    >>> import os
    >>> os.environ["KILN_PEAK_GBPS"], os.environ["KILN_PEAK_GFLOPS"] = "20", "100"
    >>> _PEAKS.clear(); p = peaks(None); _PEAKS.clear()
    >>> (p.gbps, p.gflops, p.source)
    (20.0, 100.0, 'KILN_PEAK_GBPS, KILN_PEAK_GFLOPS')
    >>> del os.environ["KILN_PEAK_GBPS"], os.environ["KILN_PEAK_GFLOPS"]
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np

_COPY_BYTES = 32 << 20
_MATMUL_N = 1024
_REPEATS = 3
_PEAKS: dict = {}
_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Peaks:
    """A device's bandwidth and flops peaks (None: unknown) and where they came from."""

    gbps: float | None
    gflops: float | None
    source: str


def peaks(device) -> Peaks:
    """The peaks of `device` (a runtime Device; None for the host CPU), measured once."""
    name = getattr(device, "name", "cpu")
    with _LOCK:
        found = _PEAKS.get(name)
        if found is None:
            found = _PEAKS[name] = _from_environment() or _measure(device)
    return found


def _from_environment() -> Peaks | None:
    values = {}
    for var in ("KILN_PEAK_GBPS", "KILN_PEAK_GFLOPS"):
        text = os.environ.get(var, "").strip()
        if not text:
            continue
        try:
            values[var] = float(text)
        except ValueError:
            values[var] = -1.0
        if not values[var] > 0:
            raise ValueError(f"{var} must be a positive number, got {text!r}")
    if not values:
        return None
    return Peaks(values.get("KILN_PEAK_GBPS"), values.get("KILN_PEAK_GFLOPS"),
                 ", ".join(values))


def _measure(device) -> Peaks:
    gbps = _bandwidth(device)
    gflops = _throughput(device)
    what = "the host's NumPy" if _host(device) else device.name
    flops = f", {_MATMUL_N}^3 float32 matmuls" if gflops is not None else \
        " (no library matmul to measure flops with)"
    return Peaks(gbps, gflops, f"measured on {what}: best of {_REPEATS} copies of "
                 f"{_COPY_BYTES >> 20} MiB{flops}")


def _best_seconds(fn, sync) -> float:
    fn()        # NOTE: first touch of the memory, library warm-up
    sync()
    best = float("inf")
    for _ in range(_REPEATS):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def _host(device) -> bool:
    return device is None or device.name == "cpu"


def _bandwidth(device) -> float:
    n = _COPY_BYTES // 4
    if _host(device):
        src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
        seconds = _best_seconds(lambda: np.copyto(dst, src), lambda: None)
    else:
        src, dst = device.empty((n,), np.float32), device.empty((n,), np.float32)
        seconds = _best_seconds(lambda: device.copy(dst, src), device.synchronize)
    return 2 * _COPY_BYTES / seconds / 1e9


def _throughput(device) -> float | None:
    n = _MATMUL_N
    shape = (n, n)
    if _host(device):
        a, b, c = (np.ones(shape, np.float32) for _ in range(3))
        seconds = _best_seconds(lambda: np.matmul(a, b, out=c), lambda: None)
    else:
        a, b, c = (device.empty(shape, np.float32) for _ in range(3))
        try:
            seconds = _best_seconds(lambda: device.call("matmul", None, [a, b], [c]),
                                    device.synchronize)
        except NotImplementedError:     # NOTE: no library matmul there (CUDA, for now)
            return None
    return 2 * n ** 3 / seconds / 1e9
