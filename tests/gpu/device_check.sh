#!/usr/bin/env bash
# The GPU checks in one command, for a GPU machine lent briefly: Python 3.12 with numpy,
# llvmlite, networkx, cuda-bindings, pytest, hypothesis and torch, but no MLIR bindings and no
# internet. From the repository root (or anywhere): `bash tests/gpu/device_check.sh`.
#
# - .gpu/kiln-deps.tar.xz, when present (made here by /work/shared/tools/gpu-bundle.sh; the
#   folder is git-ignored, so a remote run must carry `.gpu`), brings the MLIR bindings: it
#   is unpacked into a temporary folder on PYTHONPATH.
# - Kiln is installed editable without dependencies or an index; where pip refuses (no
#   setuptools, an externally managed Python), a temporary `kiln` package of links to the
#   source folders (pyproject's package-dir mapping) goes on PYTHONPATH instead.
# - Then nvidia-smi, the gpu-marked tests of tests/gpu, the simulated-GPU test suites run on
#   the real GPU (KILN_TEST_REAL_GPU=1), the W1 bandwidth print and the W1-W5 table
#   (tests/gpu/bench_gpu.py).
# Budget: at most about 7.5 minutes (tests 180 s, suites 90 s, W1 45 s, the table 120 s).
# Exit status: the tests'.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PYTHON:-python3}
TEST_TIMEOUT=${TEST_TIMEOUT:-180}
export PYTHONUNBUFFERED=1
KILN_CACHE_DIR=$(mktemp -d)
export KILN_CACHE_DIR

if [ -f .gpu/kiln-deps.tar.xz ]; then
  site=$(mktemp -d)
  tar -xJf .gpu/kiln-deps.tar.xz -C "$site"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  echo "== MLIR bindings from .gpu/kiln-deps.tar.xz in $site"
else
  echo "== no .gpu/kiln-deps.tar.xz: compiling kernels needs MLIR bindings installed here"
fi

source_tree_on_path() {
  # NOTE: pyproject maps kiln.ir -> ir/, kiln.runtime -> runtime/, ...: links rebuild that
  local root link
  root=$(pwd)
  link=$(mktemp -d)
  mkdir "$link/kiln"
  for f in "$root"/kiln/*; do ln -s "$f" "$link/kiln/"; done
  for d in frontend ir passes codegen runtime; do ln -s "$root/$d" "$link/kiln/$d"; done
  export PYTHONPATH="$link${PYTHONPATH:+:$PYTHONPATH}"
  echo "== pip could not install Kiln: using the source tree through $link/kiln"
}
if ! "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . ; then
  source_tree_on_path
fi

echo "== machine"
nvidia-smi || echo "nvidia-smi failed"
"$PY" - <<'EOF' || true
import importlib, sys
print("python", sys.version.split()[0])
for name in ("numpy", "llvmlite", "cuda.bindings", "torch_mlir", "torch", "kiln"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '')} {getattr(module, '__file__', '')}")
    except Exception as e:
        print(f"{name}: not importable ({type(e).__name__}: {e})")
EOF

echo "== pytest -m gpu tests/gpu"
rc=0
timeout "$TEST_TIMEOUT" "$PY" -m pytest -q -m gpu tests/gpu -p no:cacheprovider -rs \
  || rc=$?
if [ "$rc" -eq 5 ]; then echo "error: pytest collected no gpu tests" >&2; fi
if [ "$rc" -eq 124 ]; then echo "error: the gpu tests ran past ${TEST_TIMEOUT}s" >&2; fi

echo "== the simulated-GPU suites (CUDA tensors, jit on CUDA, the digits example) on this GPU"
KILN_TEST_REAL_GPU=1 timeout "${SUITES_TIMEOUT:-90}" "$PY" -m pytest -q -p no:cacheprovider \
  tests/frontend/test_cuda_tensors.py tests/frontend/test_cuda_jit.py -rs || rc=$((rc ? rc : $?))

echo "== W1 bandwidth"
timeout 45 "$PY" tests/gpu/w1_bandwidth.py || echo "the bandwidth check failed (status $?)"

echo "== W1-W5 on the GPU: Kiln, PyTorch eager, torch.compile (CUDA events)"
timeout "${BENCH_TIMEOUT:-120}" "$PY" tests/gpu/bench_gpu.py \
  || echo "the GPU benchmark failed or ran out of time (status $?)"
exit "$rc"
