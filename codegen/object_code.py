"""LLVM IR -> a relocatable object file (bytes), and such bytes -> callable machine code,
without running LLVM's optimizer or code generator a second time.

This is the machine-code half of the disk cache (the other half, the blob store, is
`kiln.runtime.disk_cache`): compile once with `emit_object`, store the bytes, and in a later
process `load_object` them (about 2 ms for a fused kernel, against 20-45 ms for
`llvm_cpu.compile_llvm_ir`, which parses, optimizes and generates code again).

    >>> import ctypes
    >>> obj = emit_object("define i64 @add1(i64 %x) {\\n"
    ...                   "  %y = add i64 %x, 1\\n  ret i64 %y\\n}\\n")
    >>> obj[:4] == host_object_magic()
    True
    >>> loaded = load_object(obj, ["add1"])
    >>> ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(loaded.address("add1"))(41)
    42

Code that calls outside itself (libm's `expf`, a symbol registered with
`llvmlite.binding.add_symbol`, a library opened with `load_library_permanently`) is linked
when it is loaded, against what this process has then:

    >>> ir = ("declare float @expf(float)\\n"
    ...       "define float @e(float %x) {\\n  %y = call float @expf(float %x)\\n"
    ...       "  ret float %y\\n}\\n")
    >>> code = load_object(emit_object(ir), ["e"])      # keep it: it owns the machine code
    >>> f = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_float)(code.address("e"))
    >>> round(f(1.0), 5)
    2.71828

Rules for callers:
- The code is made for THIS CPU (its name and features, as `llvm_cpu.host_target_machine`),
  at O3, exactly as `compile_llvm_ir` makes it; an object made on another CPU may crash with
  an illegal instruction. A disk-cache key must therefore name the CPU (codegen/host.py: the
  CPUID words LLVM reads) and the llvmlite/LLVM version (see `kiln.runtime.disk_cache`).
- On x86-64 Linux the objects are linked by Kiln's own loader (codegen/elf_loader.py: no
  LLVM loaded on a warm start); what it does not handle is linked by MCJIT.
- `load_object` checks the bytes before LLVM sees them (LLVM crashes the process on a
  malformed object): the object format and machine must be the host's, and for ELF (Linux) the
  section, symbol and relocation tables must lie inside the bytes, relocations must be of
  the 64-bit kinds the JIT code model makes, and every undefined symbol must resolve in this
  process (else `CodegenError`, naming what is wrong). The check is
  structural, not a proof: load only bytes that `emit_object` made, e.g. from a checksummed
  disk-cache entry.
- A `LoadedObject` owns its machine code: an address is valid while the object lives.
- `emit_object` keeps neither the optimized IR nor the assembly; a cache hit that needs them
  (`kiln ir`, explain) re-runs LLVM for them, as `CpuObject.asm` already does lazily.

With the disk cache (the compile path this is made for):

    obj = cache.get(key)                       # key: kernel text + CPU + versions
    code = None
    if obj is not None:
        try:
            code = load_object(obj, [symbol])
        except CodegenError:                   # refused (another host, missing symbol): a miss
            code = None
    if code is None:
        obj = emit_object(llvm_ir)
        cache.put(key, obj)
        code = load_object(obj, [symbol])
    address = code.address(symbol)             # valid while `code` lives
"""
from __future__ import annotations

import functools
import os
import struct
import threading

from . import elf_loader
from .elf_loader import (_EHDR, _ELF64_LE, _ET_REL, _REL, _RELA, _SHDR,
                         _SHF_ALLOC, _SHF_TLS, _SHN_ABS, _SHT_NOBITS, _SHT_REL, _SHT_RELA,
                         _SHT_STRTAB, _SHT_SYMTAB, _STB_LOCAL, _STB_WEAK, _STT_FILE, _SYM)
from .errors import CodegenError
from .llvm_cpu import _LOCK, _llvm, emit_object_unlocked, host_target_machine, optimize

__all__ = ["emit_object", "load_object", "LoadedObject", "host_object_magic",
           "undefined_symbols", "pack_objects", "unpack_objects", "optimized_ir"]


def emit_object(llvm_ir_text: str) -> bytes:
    """Parse, verify and O3-optimize LLVM IR for this CPU (as `compile_llvm_ir` does), then
    generate a relocatable object file; returns its bytes. Bad IR raises CodegenError."""
    return emit_object_modules([llvm_ir_text])[0]


def emit_object_modules(texts: list[str]) -> tuple[bytes, str | None]:
    """O3-optimize LLVM IR modules that call each other for this CPU and generate their
    relocatable code: (its bytes, the optimized IR text for a single module, else None).

    NOTE: LLVM's optimizer and code generator take most of a compile, so several modules are
    compiled each by itself, in up to `compile_threads()` threads (costliest first, each
    thread taking the next module when done), into a bundle of objects (`pack_objects`) that
    `load_object` links together. Code is made per function as when they are linked into one
    module: kernels are only called across modules, never inlined. The optimized IR of the
    linked whole is `optimized_ir(texts)`."""
    if len(texts) == 1:
        return _emit(texts[0], keep_ir=True)
    order = sorted(range(len(texts)), key=lambda i: -_cost(texts[i]))
    objs = _in_threads(lambda i: _emit(texts[i])[0], order, compile_threads())
    return pack_objects([objs[order.index(i)] for i in range(len(texts))]), None


def optimized_ir(texts: list[str]) -> str:
    """The O3-optimized IR of `texts` linked into one module (for the CLI and explain)."""
    module, tm, _ = _linked(texts)
    optimize(module, tm)
    return str(module)


def compile_threads() -> int:
    """KILN_COMPILE_THREADS, default the CPUs this process may run on (at most 8)."""
    if os.environ.get("KILN_COMPILE_THREADS"):
        return max(1, int(os.environ["KILN_COMPILE_THREADS"]))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, 8))


def _cost(text: str) -> int:
    """A rough estimate of LLVM's time on a module. NOTE: loops (phi nodes) are what the
    vectorizer and unroller expand; the text's length predicts that time poorly."""
    return 1 + text.count(" phi ")


def _linked(texts: list[str]):
    """(module, target machine, context): `texts` parsed into a new LLVM context and linked.
    NOTE: a context of its own per compile, so that compiles in several threads share no
    LLVM state (LLVM is thread-safe across contexts)."""
    llvm = _llvm()
    context = llvm.create_context()
    try:
        module = llvm.parse_assembly(texts[0], context=context)
        for text in texts[1:]:
            module.link_in(llvm.parse_assembly(text, context=context))
        module.verify()
    except RuntimeError as e:
        raise CodegenError(f"LLVM rejected the IR: {e}") from e
    return module, host_target_machine(), context


def _emit(text: str, keep_ir: bool = False) -> tuple[bytes, str | None]:
    """The object of one module (and its optimized IR when `keep_ir`)."""
    module, tm, _ = _linked([text])
    optimize(module, tm, unlocked=True)
    return emit_object_unlocked(tm, module), (str(module) if keep_ir else None)


def _in_threads(fn, items: list, threads: int) -> list:
    """[fn(item) for item in items], run by up to `threads` threads (this one among them),
    each taking the next item when done with one."""
    results: list = [None] * len(items)
    errors: list = []
    todo = iter(range(len(items)))
    lock = threading.Lock()

    def work():
        while not errors:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as e:     # NOTE: re-raised in the caller's thread below
                errors.append(e)
    helpers = [threading.Thread(target=work, daemon=True)
               for _ in range(min(threads, len(items)) - 1)]
    for t in helpers:
        t.start()
    work()
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]
    return results


# NOTE: a bundle: magic, object count (u32), each object's length (u64), the objects.
_BUNDLE = b"KILNOBJS"


def pack_objects(objs: list[bytes]) -> bytes:
    """Several objects as one blob that `load_object` loads (and links) together."""
    head = _BUNDLE + struct.pack(f"<I{len(objs)}Q", len(objs), *map(len, objs))
    return head + b"".join(objs)


def unpack_objects(data: bytes) -> list[bytes]:
    """The objects of a blob: a bundle's parts, or [data] for a plain object."""
    if not data.startswith(_BUNDLE):
        return [data]
    start = len(_BUNDLE) + 4
    if len(data) < start:
        raise _malformed("truncated object bundle")
    (n,) = struct.unpack_from("<I", data, len(_BUNDLE))
    if n == 0 or n > 1024 or len(data) < start + 8 * n:
        raise _malformed(f"object bundle of {n} objects")
    sizes = struct.unpack_from(f"<{n}Q", data, start)
    if start + 8 * n + sum(sizes) != len(data):
        raise _malformed("object bundle sizes do not add up (truncated?)")
    out, off = [], start + 8 * n
    for size in sizes:
        out.append(data[off:off + size])
        off += size
    return out


class LoadedObject:
    """Machine code loaded by `load_object`. It holds the execution engine that owns the
    code: `address(symbol)` is valid while this object lives."""

    def __init__(self, engine, addresses: dict[str, int]):
        self.engine = engine
        self._addresses = dict(addresses)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols resolved so far (those given to `load_object` first)."""
        return tuple(self._addresses)

    def address(self, symbol: str) -> int:
        """The address of the function or global `symbol` (CodegenError when there is none)."""
        addr = self._addresses.get(symbol)
        if addr is None:
            with _LOCK:
                addr = self.engine.get_function_address(symbol)
            if not addr:
                raise CodegenError(f"the loaded object has no symbol @{symbol}")
            self._addresses[symbol] = addr
        return addr

    def __repr__(self) -> str:
        return f"LoadedObject({', '.join(self._addresses)})"


def load_object(obj: bytes, symbols: list[str]) -> LoadedObject:
    """Link the object file `obj` (from `emit_object`, on this machine; or a bundle of them
    from `emit_object_modules`) into this process and resolve `symbols`; raises CodegenError
    when the bytes are not loadable objects for this host, an undefined symbol resolves
    neither here nor in the bundle, or a symbol in `symbols` is missing."""
    objs = unpack_objects(bytes(obj))
    _check_objects(objs)
    # NOTE: linked by Kiln's own loader where it applies (no LLVM to load: a warm start
    # never loads libllvmlite), else by MCJIT
    image = elf_loader.load(objs, symbols)
    if image is not None:
        return LoadedObject(image, {s: image.get_function_address(s) for s in symbols})
    llvm = _llvm()
    with _LOCK:
        # NOTE: an MCJIT engine needs a module to start from; an empty one costs nothing to
        # "compile". Making the first engine also makes the process's own symbols (libc,
        # libm) visible to address_of_symbol, so the check below must come after it.
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), host_target_machine())
    with _LOCK:
        # NOTE: add_object_file copies the bytes; the engine owns the code from here on.
        # The objects of a bundle call each other: linked by the one finalize after them.
        for part in objs:
            engine.add_object_file(llvm.ObjectFileRef.from_data(part))
        engine.finalize_object()
        addresses = {s: engine.get_function_address(s) for s in symbols}
    missing = [s for s, a in addresses.items() if not a]
    if missing:
        raise CodegenError("the loaded object has no symbol "
                           + ", ".join("@" + s for s in missing))
    return LoadedObject(engine, addresses)


# ---- checking the bytes before LLVM sees them ---------------------------------------------
# NOTE: symbol types allowed: NOTYPE, OBJECT, FUNC, SECTION, FILE (no TLS, COMMON or IFUNC,
# which kernels never have and RuntimeDyld may abort on); a relocation or an undefined symbol
# may be any of them but FILE.
_SYMBOL_TYPES = frozenset({0, 1, 2, 3, 4})
_RELOCATABLE_TYPES = frozenset({0, 1, 2, 3})
_MAX_SECTION, _MAX_ALIGN = 1 << 30, 1 << 16
_EM_X86_64 = 62
# NOTE: x86-64 relocation types allowed (type -> bytes patched). host_target_machine's large
# code model (jit=True) makes only 64-bit ones (R_X86_64_64, seen with calls, constant pools,
# jump tables and globals); RuntimeDyld aborts the process on a type it does not know and on
# a 32-bit one whose target lands over 2 GiB away, so every other type is refused first.
_X86_64_RELOCS = {0: 0, 1: 8, 24: 8}
# NOTE: symbols RuntimeDyld provides itself rather than looking them up in the process.
_LINKER_PROVIDED = frozenset({"_GLOBAL_OFFSET_TABLE_"})


@functools.cache
def _empty_object() -> bytes:
    """An object file of an empty module, made once: it shows this host's object format."""
    llvm = _llvm()
    with _LOCK:
        return host_target_machine().emit_object(llvm.parse_assembly(""))


def host_object_magic() -> bytes:
    """The first bytes of an object file for this host (`b'\\x7fELF'` on Linux)."""
    return _host_header()[:4]


@functools.cache
def _host_header() -> bytes:
    """The start of an object file for this host. NOTE: on x86-64 Linux, the running
    Python's own ELF header says it without asking LLVM (a warm start loads no LLVM)."""
    if elf_loader.supported():
        try:
            with open("/proc/self/exe", "rb") as f:
                head = f.read(_EHDR.size)
            if head[:6] == _ELF64_LE and len(head) == _EHDR.size:
                return head
        except OSError:
            pass
    return _empty_object()


def _host_elf_identity() -> tuple[bytes, int] | None:
    """(e_ident[:7], e_machine) of this host's ELF objects; None when they are not ELF64 LE."""
    empty = _host_header()
    if empty[:6] != _ELF64_LE or len(empty) < _EHDR.size:
        return None
    return empty[:7], _EHDR.unpack_from(empty)[2]


def _check_objects(objs: list[bytes]) -> None:
    """Refuse objects that are not this host's, or that call a symbol neither this process
    nor one of `objs` defines."""
    magic = host_object_magic()
    for obj in objs:
        if obj[:len(magic)] != magic:
            raise CodegenError(f"not an object file for this host (starts {obj[:8]!r}, "
                               f"expected {magic!r})")
    if _host_elf_identity() is None:
        return
    tables = [_elf_symbols(obj) for obj in objs]
    defined = {name for _, names in tables for name in names}
    unresolved = [s for undefined, _ in tables for s in undefined if s not in _LINKER_PROVIDED
                  and s not in defined and not elf_loader.process_symbol(s)
                  and not _llvm().address_of_symbol(s)]
    if unresolved:
        raise CodegenError("the object calls symbols this process does not have: "
                           + ", ".join(sorted(unresolved)))


def undefined_symbols(obj: bytes) -> list[str]:
    """The non-weak symbols an ELF64 relocatable object `obj` uses but does not define, after
    checking that it is one for this host and that its sections, symbols and relocations lie
    inside the bytes and inside their sections (CodegenError otherwise). On a host whose
    objects are not ELF64 little-endian: [] (nothing is checked)."""
    if _host_elf_identity() is None:
        return []
    return _elf_symbols(obj)[0]


def _elf_symbols(obj: bytes) -> tuple[list[str], list[str]]:
    """(undefined non-weak symbols, defined global symbols) of a checked ELF64 object (see
    `undefined_symbols`)."""
    ident, machine = _host_elf_identity()
    if len(obj) < _EHDR.size or obj[:7] != ident:
        raise CodegenError("not an ELF object for this host (header differs)")
    (_, e_type, e_machine, _, _, _, shoff, _, _, _, _, shentsize, shnum,
     shstrndx) = _EHDR.unpack_from(obj)
    if e_type != _ET_REL or e_machine != machine:
        raise CodegenError(f"not a relocatable object for this machine (type {e_type}, "
                           f"machine {e_machine}; expected {_ET_REL}, {machine})")
    if shentsize != _SHDR.size or shoff == 0:
        raise _malformed("no section header table")
    _within(obj, shoff, _SHDR.size, "the section header table")
    if shnum == 0:      # extended numbering: the count is in section 0's sh_size
        shnum = _SHDR.unpack_from(obj, shoff)[5]
    _within(obj, shoff, shnum * _SHDR.size, "the section header table")
    sections = [_SHDR.unpack_from(obj, shoff + i * _SHDR.size) for i in range(shnum)]
    if shstrndx >= shnum or sections[shstrndx][1] != _SHT_STRTAB:
        raise _malformed("no section name table")
    for i, (name, sh_type, flags, _, off, size, _, _, align, _) in enumerate(sections):
        if flags & _SHF_TLS:
            raise _malformed(f"section {i} is thread-local (kernels have none)")
        if sh_type != _SHT_NOBITS:
            _within(obj, off, size, f"section {i}")
        elif size > _MAX_SECTION:
            raise _malformed(f"section {i} asks for {size} bytes")
        if align > _MAX_ALIGN or align & (align - 1) or (flags & _SHF_ALLOC and not align):
            raise _malformed(f"section {i} has alignment {align}")
        if i and name >= sections[shstrndx][5]:
            raise _malformed(f"section {i} has no name in its table")
        if sh_type == _SHT_STRTAB and (size == 0 or obj[off + size - 1] != 0):
            raise _malformed(f"string table {i} is not terminated")
    undefined, defined, sym_types = [], [], {}
    for i, (_, sh_type, _, _, off, size, link, _, _, entsize) in enumerate(sections):
        if sh_type == _SHT_SYMTAB:
            if (entsize != _SYM.size or size % entsize or link >= shnum
                    or sections[link][1] != _SHT_STRTAB):
                raise _malformed(f"symbol table {i}")
            names, sym_types[i], globals_ = _symbols(obj, sections, off, size // _SYM.size,
                                                     sections[link])
            undefined += names
            defined += globals_
    for i, (_, sh_type, _, _, off, size, link, info, _, entsize) in enumerate(sections):
        if sh_type in (_SHT_RELA, _SHT_REL):
            rec = _RELA if sh_type == _SHT_RELA else _REL
            if entsize != rec.size or size % entsize or link not in sym_types or info >= shnum:
                raise _malformed(f"relocation section {i}")
            target_size = sections[info][5]
            for k in range(size // rec.size):
                r_offset, r_info = rec.unpack_from(obj, off + k * rec.size)[:2]
                r_type, width = r_info & 0xFFFFFFFF, 4
                if machine == _EM_X86_64:
                    if r_type not in _X86_64_RELOCS:
                        raise _malformed(f"relocation {k} of section {i} has type {r_type}")
                    width = _X86_64_RELOCS[r_type]
                if (r_info >> 32) >= len(sym_types[link]) or r_offset + width > target_size:
                    raise _malformed(f"relocation {k} of section {i} points outside")
                if sym_types[link][r_info >> 32] not in _RELOCATABLE_TYPES:
                    raise _malformed(f"relocation {k} of section {i} names a symbol of type "
                                     f"{sym_types[link][r_info >> 32]}")
    return undefined, defined


def _symbols(obj, sections, off, n, strtab) -> tuple[list[str], list[int], list[str]]:
    """(names of the undefined non-weak symbols, the type of every symbol, names of the
    defined global symbols) of one symbol table; symbol kinds that kernels never have (TLS,
    common, ...) are refused."""
    str_off, str_size = strtab[4], strtab[5]
    names, types, defined = [], [0], []
    for k in range(1, n):
        st_name, st_info, _, shndx, st_value, _ = _SYM.unpack_from(obj, off + k * _SYM.size)
        sym_type = st_info & 0xF
        types.append(sym_type)
        if st_name and st_name >= str_size:
            raise _malformed(f"symbol {k} has no name in its table")
        if sym_type not in _SYMBOL_TYPES or (sym_type == _STT_FILE) != (shndx == _SHN_ABS):
            raise _malformed(f"symbol {k} has type {sym_type} in section {shndx}")
        if shndx == 0:
            if sym_type not in _RELOCATABLE_TYPES:
                raise _malformed(f"undefined symbol {k} has type {sym_type}")
            if st_name and (st_info >> 4) != _STB_WEAK:
                names.append(_name(obj, str_off + st_name, str_off + str_size, k))
        elif shndx != _SHN_ABS and (shndx >= len(sections) or st_value > sections[shndx][5]):
            raise _malformed(f"symbol {k} lies outside its section")
        elif st_name and (st_info >> 4) != _STB_LOCAL:
            defined.append(_name(obj, str_off + st_name, str_off + str_size, k))
    return names, types, defined


def _name(obj: bytes, start: int, end: int, k: int) -> str:
    stop = obj.find(b"\0", start, end)
    if stop < 0:
        raise _malformed(f"symbol {k}'s name is unterminated")
    return obj[start:stop].decode("utf-8", "replace")


def _malformed(what: str) -> CodegenError:
    return CodegenError(f"malformed object: {what}")


def _within(obj: bytes, off: int, size: int, what: str) -> None:
    if off + size > len(obj):
        raise _malformed(f"{what} lies outside the {len(obj)} bytes (truncated?)")
