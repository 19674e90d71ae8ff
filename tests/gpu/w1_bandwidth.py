"""W1 on the GPU: x*sigmoid(x)*0.5 + tanh(x) over 2**24 float32, timed with CUDA events
against a device-to-device copy of the same bytes (both read 64 MiB and write 64 MiB).

The issue's target is a kernel at >= 0.7 of the copy's bandwidth. Timings vary with the
machine and its load, so this prints the fraction and the tests assert nothing about it.
Run on a GPU machine from the repository root: `python tests/gpu/w1_bandwidth.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

N = 1 << 24
REPEAT = 20


def measure(dev, n: int = N, repeat: int = REPEAT) -> dict:
    """Milliseconds per W1 launch and per copy of its input's bytes, their bandwidths (GB/s,
    read plus written bytes) and the fraction, on CudaDevice `dev`; `out` is W1's result."""
    from kiln.codegen.cuda import CudaRenderer
    from kiln.frontend.compile import plan_graph
    from kiln.passes.fusion import fuse_elementwise

    from codegen_helpers import w1_graph

    schedule, _ = plan_graph(fuse_elementwise(w1_graph(n)))
    (kernel,) = schedule.kernels
    handle = dev.load(CudaRenderer().compile(kernel))
    x = dev.from_host(np.random.default_rng(0).standard_normal(n).astype(np.float32) * 4)
    out, copy = dev.empty((n,), np.float32), dev.empty((n,), np.float32)
    dev.launch(handle, [x, out])                # NOTE: warm-up: the first launch loads code
    dev.copy(copy, x)
    kernel_ms = dev.time_ms(lambda: dev.launch(handle, [x, out]), repeat)
    copy_ms = dev.time_ms(lambda: dev.copy(copy, x), repeat)
    moved = 2 * x.nbytes
    return {"kernel_ms": kernel_ms, "copy_ms": copy_ms,
            "kernel_gbs": moved / kernel_ms / 1e6, "copy_gbs": moved / copy_ms / 1e6,
            "fraction": copy_ms / kernel_ms, "x": x, "out": out}


def report(m: dict) -> str:
    return (f"W1 over {m['x'].size} float32: kernel {m['kernel_ms']:.3f} ms "
            f"({m['kernel_gbs']:.0f} GB/s), cuMemcpyDtoD {m['copy_ms']:.3f} ms "
            f"({m['copy_gbs']:.0f} GB/s): {m['fraction']:.2f} of the copy's bandwidth "
            f"(issue target >= 0.7)")


def main() -> int:
    sys.path.insert(0, str(Path(__file__).parents[1] / "codegen"))
    from kiln.runtime.cuda import CudaDevice
    dev = CudaDevice()
    print(f"{dev.driver.device_name()}, compute capability {dev.driver.compute_capability()}")
    print(report(measure(dev)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
