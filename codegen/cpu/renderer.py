"""The CPU Renderer: a schedule kernel -> MLIR -> LLVM IR -> machine code (llvmlite MCJIT).

Compiled kernels are cached in-process by their signature (equal kernels share one artifact)
in a bounded LRU: an artifact (and the LLVM engine that owns its code) is freed once neither
the cache nor an executable holds it.

    >>> from kiln.ir.schedule_text import parse_schedule
    >>> s = parse_schedule('''
    ... schedule @f(%x: f32[4]) {
    ...   buffer %0: f32[4] output
    ...   launch @k (%x) -> (%0) {space=[4], reduce=[]} {
    ...     load %x strides=[1] offset=0
    ...     store %0 strides=[1] offset=0
    ...     body @k(%1: f32[4]) {
    ...       %2: f32[4] = exp %1
    ...       return %2
    ...     }
    ...   }
    ...   return %0
    ... }''')
    >>> art = CpuRenderer().compile(s.kernels[0])
    >>> art.outer, art.n_buffers, "scf.for" in art.mlir
    (4, 2, True)
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import os
import pickle
import re
import threading
import warnings
import weakref

from kiln.ir.schedule import Kernel

from ..errors import CodegenError
from ..mlir_pipeline import CPU_PIPELINE, mlir_to_llvm_ir
from ..object_code import emit_object_modules, load_object, optimized_ir
from . import blas
from .render_kernel import LoopNest, RenderedKernel, render_kernel
from .segment import WHOLE, SegmentArtifact, entry_ir, internal, segment_buffers, whole_range_ir


def symbol_name(name: str) -> str:
    """A valid MLIR/LLVM symbol for a kernel name."""
    return "kiln_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


class _Module:
    """Machine code of one LLVM module loaded into this process (compiled now or read from
    the disk cache); it keeps the engine that owns the code alive. The optimized IR and the
    assembly are made again on demand (for the CLI) when the code came from the cache or was
    compiled as several objects."""

    def __init__(self, loaded, texts_fn, optimized: str | None = None):
        self.loaded = loaded
        self.engine = loaded.engine
        self._texts_fn = texts_fn
        self._optimized = optimized
        self._asm: str | None = None

    def address(self, symbol: str) -> int:
        return self.loaded.address(symbol)

    @property
    def optimized_ir(self) -> str:
        if self._optimized is None:
            self._optimized = optimized_ir(self._texts_fn())
        return self._optimized

    @property
    def asm(self) -> str:
        if self._asm is None:
            from ..llvm_cpu import _LOCK, _llvm, host_target_machine
            llvm = _llvm()
            optimized = self.optimized_ir       # NOTE: before the lock: it takes the lock too
            with _LOCK:
                self._asm = host_target_machine().emit_assembly(llvm.parse_assembly(optimized))
        return self._asm


class _Code:
    """One kernel's function inside a compiled module."""

    def __init__(self, symbol: str, mlir: str, module: _Module, nest: LoopNest,
                 ops_per_element: int, llvm_ir: str | None = None, function: str | None = None):
        self.symbol, self.mlir, self.module = symbol, mlir, module
        self.function = function or symbol
        self.nest, self.ops_per_element = nest, ops_per_element
        self._llvm_ir = llvm_ir

    @property
    def llvm_ir(self) -> str:
        if self._llvm_ir is None:
            self._llvm_ir = mlir_to_llvm_ir(self.mlir, what=f"kernel {self.symbol}")
        return self._llvm_ir


@dataclasses.dataclass(frozen=True)
class CpuArtifact:
    """One kernel compiled for this CPU: every stage's text, the function's address and what
    the launcher needs (outer extent, buffer count, estimated work)."""

    name: str
    code: _Code
    n_buffers: int

    symbol = property(lambda self: self.code.symbol)
    mlir = property(lambda self: self.code.mlir)
    llvm_ir = property(lambda self: self.code.llvm_ir)
    llvm_ir_optimized = property(lambda self: self.code.module.optimized_ir)
    asm = property(lambda self: self.code.module.asm)
    # NOTE: the function holding the kernel's machine code: the kernel itself, taking
    # (pointers..., lo, hi), when launched alone; in a segment, `<symbol>_whole`, taking the
    # pointers only, into which the kernel was inlined (see segment.internal).
    function = property(lambda self: self.code.function)
    address = property(lambda self: self.code.module.address(self.code.function))
    outer = property(lambda self: self.code.nest.outer)
    numel = property(lambda self: self.code.nest.numel)
    nest = property(lambda self: self.code.nest)

    @property
    def work(self) -> int:
        """Estimated cost of one launch (iterations x ops per iteration), for threading."""
        return self.code.nest.numel * self.code.ops_per_element


# NOTE: part of every disk-cache key: bump it when generated code changes in a way the MLIR
# text does not show (the MLIR pass pipeline, LLVM options, the object format).
# 2: a segment's modules are compiled apart, stored as a bundle of objects.
# 3: a segment kernel is internal to its module, inlined into its whole-range function.
# 4: LLVM's loop unrolling off.
CODEGEN_VERSION = "4"


@functools.cache
def _target() -> str:
    """The host CPU, for cache keys: on x86-64 Linux, the CPUID and XGETBV words LLVM's host
    detection reads, read without loading LLVM (codegen/host.py); else LLVM's CPU name and
    features."""
    from ..host import cpu_key
    host = cpu_key()
    if host is not None:
        return host
    from ..llvm_cpu import _llvm
    llvm = _llvm()
    return f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}"




@functools.cache
def _versions() -> str:
    """The versions of Kiln, llvmlite and torch-mlir, for cache keys. NOTE: read from the
    packages' own folders (the installed dist-info names), not importlib.metadata, which
    scans every distribution on sys.path (~20 ms at each warm start)."""
    out = [f"kiln-jit={_kiln_version()}"]
    for module, dist in (("llvmlite", "llvmlite"), ("torch_mlir", "torch_mlir")):
        out.append(f"{dist}={_installed_version(module, dist)}")
    return " ".join(out) + f" pipeline={CPU_PIPELINE}"


def _kiln_version() -> str:
    from kiln import __version__
    return __version__


def _installed_version(module: str, dist: str) -> str:
    import importlib.util
    spec = importlib.util.find_spec(module)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        site = os.path.dirname(os.path.abspath(folder))
        found = [n for n in os.listdir(site) if n.startswith(dist + "-") and
                 n.endswith(".dist-info")]
        if len(found) == 1:
            return found[0][len(dist) + 1:-len(".dist-info")]
    import importlib.metadata as md     # NOTE: an unusual install: the slow, sure way
    try:
        return md.version(dist.replace("_", "-"))
    except md.PackageNotFoundError:
        return "?"


def _build_module(key_text: str, texts_fn, symbols: list[str]) -> _Module:
    """Machine code for `key_text` (the module's MLIR and entry text): from the disk cache
    when a valid entry is there, else compiled (`texts_fn()` gives its LLVM IR modules) and
    stored. A cache entry that cannot be loaded is reported and compiled again."""
    from kiln.runtime.disk_cache import KilnCacheWarning, default_disk_cache, make_key
    disk = default_disk_cache()
    key = make_key("kiln-cpu-object", CODEGEN_VERSION, _target(), _versions(), key_text)
    data = disk.get(key)
    if data is not None:
        try:
            return _Module(load_object(data, symbols), texts_fn)
        except CodegenError as e:
            warnings.warn(f"kiln: a disk-cache entry for compiled code could not be loaded "
                          f"({e}); compiling again", KilnCacheWarning, stacklevel=2)
    texts = texts_fn()
    data, optimized = emit_object_modules(texts)
    disk.put(key, data)
    return _Module(load_object(data, symbols), lambda: texts, optimized)


def _render_key(signature: str) -> str:
    from kiln.runtime.disk_cache import compiler_stamp, make_key

    from .. import math_expansions
    # NOTE: the expansions pick instructions by host (and tests switch them): part of the key
    return make_key("kiln-cpu-render", CODEGEN_VERSION, compiler_stamp(), _target(),
                    f"fast_ldexp={math_expansions.fast_ldexp()}", signature)


def _rendered_on_disk(signature: str):
    """A kernel rendered by an earlier process (its MLIR, loop nest and cost), or None.
    NOTE: a warm start needs the MLIR only to find the compiled code; rendering it again
    cost ~2 ms a kernel."""
    from kiln.runtime.disk_cache import default_disk_cache
    disk = default_disk_cache()
    data = disk.get(_render_key(signature)) if disk.enabled else None
    if data is None:
        return None
    try:
        r = pickle.loads(data)
        return r if isinstance(r, RenderedKernel) else None
    except Exception:   # NOTE: damaged: rendered again (and stored again)
        return None


def _render_and_store(k: Kernel, signature: str):
    from kiln.runtime.disk_cache import default_disk_cache
    r = render_kernel(k, "kiln_KSYM")
    disk = default_disk_cache()
    if disk.enabled:
        disk.put(_render_key(signature), pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL))
    return r


def _cache_size() -> int:
    """KILN_KERNEL_CACHE_SIZE, default 64: each compiled kernel holds an LLVM engine of about
    0.85 MiB, so 2,000 kernels kept would be 1.7 GiB."""
    return max(1, int(os.environ.get("KILN_KERNEL_CACHE_SIZE", "64")))


class CpuRenderer:
    """Renders and compiles schedule kernels for this machine (see the module docstring)."""

    device = "cpu"

    def __init__(self, cache_size: int | None = None):
        self.cache_size = cache_size or _cache_size()
        self._cache: collections.OrderedDict[str, _Code] = collections.OrderedDict()
        # NOTE: code evicted from the LRU but still held by a live executable is found here
        # instead of being compiled a second time.
        self._live: weakref.WeakValueDictionary[str, _Code] = weakref.WeakValueDictionary()
        self._texts: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._rendered: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"compiled": 0, "hits": 0}

    def render(self, k: Kernel) -> str:
        """The kernel's MLIR text."""
        return render_kernel(k, symbol_name(k.name)).mlir

    def compile(self, k: Kernel) -> CpuArtifact:
        """One kernel as its own function `void f(ptr..., i64 lo, i64 hi)`. Kernels with the
        same signature (whatever their names) share one compiled module, so its symbol is
        named after the signature."""
        import hashlib
        digest = hashlib.sha256(k.signature().encode()).hexdigest()[:12]
        symbol = f"kiln_kernel_{digest}"
        rendered = self._render(k, symbol)
        module = self._module("kernel\n" + rendered.mlir, lambda: [
            mlir_to_llvm_ir(rendered.mlir, what=f"kernel {k.name}")], [symbol])
        code = _Code(symbol, rendered.mlir, module, rendered.nest, rendered.ops_per_element)
        return CpuArtifact(k.name, code, len(k.loads) + len(k.stores))

    def _module(self, key_text: str, texts_fn, symbols: list[str]) -> _Module:
        """The compiled module for `key_text`: this process's LRU, else `_build_module`."""
        with self._lock:
            module = self._cache.get(key_text) or self._live.get(key_text)
            if module is not None:
                self._cache[key_text] = module
                self._cache.move_to_end(key_text)
                self._evict()
                self.stats["hits"] += 1
                return module
        module = _build_module(key_text, texts_fn, symbols)
        with self._lock:
            module = self._cache.setdefault(key_text, module)
            self._live[key_text] = module
            self.stats["compiled"] += 1
            self._evict()
        return module

    def _evict(self):
        """Drop the least recently used modules past the cache size (lock held)."""
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def kernel_work(self, k: Kernel) -> int:
        """Estimated cost of one launch of `k` (for the device's threading choice)."""
        r = self._render(k, "w")
        return r.nest.numel * r.ops_per_element

    def _render(self, k: Kernel, symbol: str):
        """`render_kernel(k, symbol)`, rendered once per signature (the threading choice and
        the compile both need it)."""
        key = k.signature()
        with self._lock:
            r = self._rendered.get(key)
        if r is None:
            r = _rendered_on_disk(key) or _render_and_store(k, key)
            with self._lock:
                self._rendered[key] = r
                while len(self._rendered) > 4 * self.cache_size:
                    self._rendered.popitem(last=False)
        return dataclasses.replace(r, mlir=r.mlir.replace("kiln_KSYM", symbol))

    def compile_segment(self, name: str, steps) -> SegmentArtifact:
        """One compiled entry function running `steps` (launches and matmul calls) in order;
        see segment.py. Cached by the text of the entry and the kernels' MLIR."""
        from kiln.ir.schedule import Launch
        symbols, rendered, by_signature = {}, {}, {}
        for st in steps:
            if not isinstance(st, Launch):
                blas.load_openblas()
                continue
            k = st.kernel
            sig = k.signature()
            if sig not in by_signature:
                sym = symbol_name(f"{name}_{k.name}")
                by_signature[sig] = (sym, self._render(k, sym), k)
            sym, r, _ = by_signature[sig]
            symbols[id(k)] = (sym, r.nest.outer)
            rendered[id(k)] = (k, sym, r)
        buffers = segment_buffers(steps)
        entry = symbol_name(f"entry_{name}")
        text = entry_ir(entry, steps, buffers, symbols)
        kernels_mlir = [r.mlir for _, r, _ in by_signature.values()]

        def texts():
            return [text] + [internal(self._llvm_ir(sig, r.mlir, sym, sym), sym)
                             + whole_range_ir(sym, len(k.loads) + len(k.stores), r.nest.outer)
                             for sig, (sym, r, k) in by_signature.items()]
        module = self._module("segment\n" + text + "\n".join(kernels_mlir), texts,
                              [entry] + [sym + WHOLE for sym, _, _ in by_signature.values()])
        kernels = tuple(
            CpuArtifact(k.name, _Code(sym, r.mlir, module, r.nest, r.ops_per_element,
                                      function=sym + WHOLE),
                        len(k.loads) + len(k.stores))
            for k, sym, r in rendered.values())
        return SegmentArtifact(name, entry, tuple(buffers), module, kernels, text)

    def _llvm_ir(self, signature: str, mlir: str, symbol: str, name: str) -> str:
        """A kernel's LLVM IR (MLIR translation cached per signature, renamed to `symbol`)."""
        key = "llvm\n" + signature
        with self._lock:
            text = self._texts.get(key)
        if text is None:
            text = mlir_to_llvm_ir(mlir.replace(symbol, "kiln_KSYM"), what=f"kernel {name}")
            with self._lock:
                self._texts[key] = text
                while len(self._texts) > 4 * self.cache_size:
                    self._texts.popitem(last=False)
        return text.replace("kiln_KSYM", symbol)

    def __len__(self) -> int:
        """Compiled kernels held by the cache."""
        return len(self._cache)

    def clear(self):
        with self._lock:
            self._cache.clear()
            self._live.clear()
            self._texts.clear()
            self._rendered.clear()


_DEFAULT: CpuRenderer | None = None


def default_cpu_renderer() -> CpuRenderer:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = CpuRenderer()
    return _DEFAULT
