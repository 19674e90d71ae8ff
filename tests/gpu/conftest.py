"""tests/gpu: the CUDA runtime on a real GPU (run by `make test-gpu`, tests/gpu/device_check.sh).

The tests reuse the case tables of tests/codegen, tests/runtime and tests/frontend, imported by module name
as tests/codegen does among its own files, so those folders go on sys.path here.

They need only a CUDA driver and a GPU: tests/conftest.py skips `gpu`-marked tests, with the
reason, where `kiln.cuda.driver_available()` is False.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
for folder in ("codegen", "runtime", "frontend"):
    path = str(HERE.parent / folder)
    if path not in sys.path:
        sys.path.insert(0, path)
