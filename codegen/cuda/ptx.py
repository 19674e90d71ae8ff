"""LLVM IR -> PTX for NVIDIA GPUs, with llvmlite's NVPTX target and libdevice for math.

The kernels' LLVM IR comes from the same MLIR lowering as the CPU's (target-independent LLVM
dialect); here it is retargeted to `nvptx64-nvidia-cuda`, the few libm calls the MLIR leaves
(f64 erf, pow) become libdevice's `__nv_*` functions, libdevice is linked in when one is
called, everything but the `ptx_kernel` entries is made internal, and LLVM's O3 pipeline for
the GPU (which runs NVVMReflect for libdevice) and its PTX printer finish. No GPU and no CUDA
driver are needed: `ptxas` (when present) checks the result.

    >>> ptx = llvm_ir_to_ptx('''
    ... define ptx_kernel void @one(ptr %p) {
    ...   store float 1.0, ptr %p
    ...   ret void
    ... }''')
    >>> ".visible .entry one(" in ptx and ".target sm_90" in ptx
    True
"""
from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import tempfile

from ..errors import CodegenError

TRIPLE = "nvptx64-nvidia-cuda"
DEFAULT_ARCH = "sm_90"
# NOTE: PTX ISA 8.0 is the first with sm_90; every driver that runs an H100 loads it.
PTX_FEATURES = "+ptx80"
# NOTE: MLIR's convert-math-to-libm names -> libdevice's (f64, and f32 where LLVM picks them).
LIBM_TO_LIBDEVICE = {name: f"__nv_{name}" for name in (
    "erf", "erff", "pow", "powf", "exp", "expf", "log", "logf", "tanh", "tanhf", "sin", "sinf",
    "cos", "cosf", "log1p", "log1pf", "expm1", "expm1f", "erfc", "erfcf", "atan2", "atan2f",
    "fmod", "fmodf")}


# NOTE: LLVM math intrinsics the NVPTX backend cannot select (LLVM aborts the process on
# them): called through libdevice instead.
INTRINSIC_TO_LIBDEVICE = {f"llvm.{name}.{t}": f"__nv_{name}{'f' if t == 'f32' else ''}"
                          for name in ("pow", "exp", "exp2", "exp10", "log", "log2", "log10",
                                       "sin", "cos", "tan")
                          for t in ("f32", "f64")}
# NOTE: what the NVPTX backend selects; any other intrinsic left after optimization is refused
# with an error here rather than an LLVM abort in the code generator.
SELECTABLE_INTRINSICS = (
    "llvm.nvvm.", "llvm.fma.", "llvm.fmuladd.", "llvm.sqrt.", "llvm.fabs.", "llvm.copysign.",
    "llvm.minnum.", "llvm.maxnum.", "llvm.minimum.", "llvm.maximum.", "llvm.roundeven.",
    "llvm.rint.", "llvm.nearbyint.", "llvm.floor.", "llvm.ceil.", "llvm.trunc.",
    "llvm.memcpy.", "llvm.memset.", "llvm.memmove.", "llvm.smax.", "llvm.smin.", "llvm.umax.",
    "llvm.umin.", "llvm.abs.", "llvm.lifetime.", "llvm.experimental.noalias.scope.decl",
    "llvm.assume", "llvm.ctpop.", "llvm.ctlz.", "llvm.cttz.", "llvm.bswap.", "llvm.fshl.",
    "llvm.fshr.", "llvm.is.fpclass.", "llvm.umul.with.overflow.", "llvm.smul.with.overflow.",
    "llvm.uadd.with.overflow.", "llvm.sadd.with.overflow.", "llvm.usub.with.overflow.",
    "llvm.ssub.with.overflow.")


@functools.cache
def _llvm():
    import llvmlite.binding as llvm
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm


def gpu_target_machine(arch: str = DEFAULT_ARCH):
    """An NVPTX target machine for `arch` (sm_XX), O3."""
    llvm = _llvm()
    try:
        target = llvm.Target.from_triple(TRIPLE)
    except RuntimeError as e:
        raise CodegenError(f"this llvmlite has no NVPTX target: {e}") from e
    return target.create_target_machine(cpu=arch, features=PTX_FEATURES, opt=3)


def llvm_ir_to_ptx(llvm_ir: str | list[str], arch: str = DEFAULT_ARCH) -> str:
    """PTX text for `llvm_ir` (host-neutral IR whose kernels are `ptx_kernel` functions; a
    list of modules is linked into one PTX module)."""
    llvm = _llvm()
    tm = gpu_target_machine(arch)
    texts = [_for_gpu(t) for t in ([llvm_ir] if isinstance(llvm_ir, str) else llvm_ir)]
    text = "\n".join(texts)
    try:
        module = llvm.parse_assembly(texts[0])
        for other in texts[1:]:
            module.link_in(llvm.parse_assembly(other))
        module.triple, module.data_layout = TRIPLE, str(tm.target_data)
        if "@__nv_" in text:
            module.link_in(_libdevice_module(tm))
        for fn in module.functions:
            if not fn.is_declaration and not _is_kernel(text, fn.name):
                fn.linkage = "internal"
        module.verify()
    except RuntimeError as e:
        raise CodegenError(f"LLVM rejected the GPU IR: {e}") from e
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    try:
        mpm.run(module, pb)
    finally:
        llvm.ffi.lib.LLVMPY_DisposeNewModulePassManger(mpm)
        mpm.detach()
    _check_selectable(module)
    return tm.emit_assembly(module)


def _check_selectable(module) -> None:
    """Refuse, with the names, what the NVPTX code generator would abort the process on."""
    declared = [f.name for f in module.functions if f.is_declaration]
    undefined = [n for n in declared if not n.startswith("llvm.")]
    if undefined:
        raise CodegenError(f"the GPU code calls functions no library provides: {undefined}")
    unknown = [n for n in declared if n.startswith("llvm.")
               and not n.startswith(SELECTABLE_INTRINSICS)]
    if unknown:
        raise CodegenError(f"not supported yet: LLVM intrinsics {unknown} in GPU code (no "
                           "NVPTX lowering known to Kiln)")


def _is_kernel(text: str, name: str) -> bool:
    return f"define ptx_kernel void @{name}(" in text


def _for_gpu(llvm_ir: str) -> str:
    """The IR without the host's triple and data layout, libm calls renamed to libdevice."""
    text = re.sub(r'^target (datalayout|triple) = ".*"\n', "", llvm_ir, flags=re.M)
    names = {**LIBM_TO_LIBDEVICE, **INTRINSIC_TO_LIBDEVICE}
    return re.sub(r"@([\w.]+)\(", lambda m: f"@{names.get(m.group(1), m.group(1))}(", text)


def _libdevice_module(tm):
    llvm = _llvm()
    lib = llvm.parse_bitcode(_libdevice_bytes())
    lib.triple, lib.data_layout = TRIPLE, str(tm.target_data)
    return lib


@functools.cache
def _libdevice_bytes() -> bytes:
    path = libdevice_path()
    if path is None:
        raise CodegenError(
            "not supported yet here: GPU math (erf, pow in float64) needs libdevice.10.bc, "
            "found in no CUDA toolkit, nvidia-cuda-nvcc or triton install; set "
            "KILN_LIBDEVICE=/path/to/libdevice.10.bc")
    with open(path, "rb") as f:
        return f.read()


def libdevice_path() -> str | None:
    """libdevice.10.bc: KILN_LIBDEVICE, else a CUDA toolkit (CUDA_HOME, CUDA_PATH, next to
    ptxas, /usr/local/cuda*), else the nvidia-cuda-nvcc or triton Python packages."""
    if os.environ.get("KILN_LIBDEVICE"):
        return os.environ["KILN_LIBDEVICE"]
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    ptxas = shutil.which("ptxas")
    if ptxas:
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(ptxas))))
    roots += sorted(glob.glob("/usr/local/cuda*"), reverse=True)
    candidates = [os.path.join(r, "nvvm", "libdevice", "libdevice.10.bc") for r in roots if r]
    for package in ("nvidia", "triton"):
        spec = _package_dir(package)
        if spec:
            candidates += sorted(glob.glob(os.path.join(spec, "**", "libdevice.10.bc"),
                                           recursive=True))
    return next((c for c in candidates if os.path.isfile(c)), None)


def _package_dir(name: str) -> str | None:
    import importlib.util
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def ptxas_path() -> str | None:
    """The `ptxas` assembler (PATH, CUDA_HOME, /usr/local/cuda*/bin), or None."""
    found = shutil.which("ptxas")
    if found:
        return found
    for root in [os.environ.get("CUDA_HOME"), *sorted(glob.glob("/usr/local/cuda*"))]:
        if root and os.path.isfile(os.path.join(root, "bin", "ptxas")):
            return os.path.join(root, "bin", "ptxas")
    return None


def check_with_ptxas(ptx: str, arch: str = DEFAULT_ARCH) -> None:
    """Assemble `ptx` for `arch` with ptxas; raises CodegenError with its message when ptxas
    rejects it (and when there is no ptxas)."""
    exe = ptxas_path()
    if exe is None:
        raise CodegenError("no ptxas on this machine (install a CUDA toolkit or "
                           "nvidia-cuda-nvcc)")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        done = subprocess.run([exe, f"-arch={arch}", src, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise CodegenError(f"ptxas -arch={arch} rejected the PTX:\n{done.stderr.strip()}")
