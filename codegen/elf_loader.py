"""Relocatable ELF objects (x86-64 Linux) linked into this process without LLVM.

A warm start loads every kernel from the disk cache; linking the objects with LLVM's MCJIT
meant loading libllvmlite first (25-45 ms of a warm first step, more when the OS has paged the
library out). The objects Kiln makes are simple: code, constant pools and data, relocated
only by 64-bit absolute and 64-bit PC-relative relocations (the JIT's large code model; the
checks in `object_code` refuse any other), calling out only to functions this process has
(libm, NumPy's OpenBLAS). So they are copied into one anonymous executable mapping, their
relocations applied, and their undefined symbols looked up with `dlsym`.

`load(objs, symbols)` returns None for what it does not handle (another host, a section
that needs running such as `.init_array`, a symbol only LLVM's own table knows); the caller
then links with MCJIT as before. Objects must have passed `object_code`'s checks first.

    >>> from kiln.codegen.object_code import emit_object
    >>> import ctypes
    >>> image = load([emit_object("define i64 @two() {\\n  ret i64 2\\n}\\n")], ["two"])
    >>> ctypes.CFUNCTYPE(ctypes.c_int64)(image.get_function_address("two"))()
    2
"""
from __future__ import annotations

import ctypes
import functools
import mmap
import platform
import struct
import sys

# NOTE: the ELF64 layouts and constants, shared with object_code's checks
_ELF64_LE = b"\x7fELF\x02\x01"      # magic, ELFCLASS64, ELFDATA2LSB
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
_REL = struct.Struct("<QQ")
_U64, _I64 = struct.Struct("<Q"), struct.Struct("<q")
_ET_REL = 1
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA, _SHT_NOBITS, _SHT_REL = 1, 2, 3, 4, 8, 9
_SHF_WRITE, _SHF_ALLOC, _SHF_TLS = 0x1, 0x2, 0x400
_SHN_ABS, _SHN_LORESERVE = 0xFFF1, 0xFF00
_STB_LOCAL, _STB_WEAK = 0, 2
_STT_SECTION, _STT_FILE = 3, 4
_R_NONE, _R_64, _R_PC64 = 0, 1, 24
# NOTE: unwind tables are for exceptions and debuggers; kernels throw none and MCJIT's
# registration of them is not needed to run them
_SKIPPED = (b".eh_frame",)


def supported() -> bool:
    return sys.platform == "linux" and platform.machine() == "x86_64" and sys.maxsize > 2**32


class Image:
    """The loaded code: one private mapping, written while it is read-write, then made
    read-only and executable (`seal`); it lives as long as this object. `code`: bytes to
    place at its start and seal at once."""

    def __init__(self, size: int, code: bytes | None = None):
        self.size = max(size, 1)
        self._map = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                              prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._anchor = ctypes.c_char.from_buffer(self._map)
        self.base = ctypes.addressof(self._anchor)
        self.symbols: dict[str, int] = {}
        self._sealed = False
        if code is not None:
            self.write(0, code)
            self.seal()

    def get_function_address(self, name: str) -> int:
        return self.symbols.get(name, 0)

    def write(self, offset: int, data: bytes) -> None:
        if self._sealed:        # NOTE: the pages are read-only: a write would crash
            raise ValueError("the loaded code is sealed")
        self._map[offset:offset + len(data)] = data

    def seal(self) -> None:
        """Read-only and executable from now on (OSError where the OS refuses)."""
        self._sealed = True
        size = (self.size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        if _libc().mprotect(ctypes.c_void_p(self.base), ctypes.c_size_t(size),
                            mmap.PROT_READ | mmap.PROT_EXEC) != 0:
            raise OSError(ctypes.get_errno(), "mprotect refused an executable mapping")


@functools.cache
def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.mprotect.restype = ctypes.c_int
    return libc


@functools.cache
def _process():
    return ctypes.CDLL(None)


def process_symbol(name: str) -> int:
    """The address of `name` in this process's global symbols (0 when it has none)."""
    try:
        return ctypes.cast(_process()[name], ctypes.c_void_p).value or 0
    except (AttributeError, TypeError, ValueError):
        return 0


def load(objs: list[bytes], symbols: list[str]) -> Image | None:
    """The objects linked together into one Image, or None where this loader does not apply."""
    if not supported():
        return None
    try:
        return _load(objs, symbols)
    except (ValueError, IndexError, struct.error):  # NOTE: bytes the checks let by: MCJIT's
        return None


def _load(objs: list[bytes], symbols: list[str]) -> Image | None:
    plans = [_plan(obj) for obj in objs]
    if any(p is None for p in plans):
        return None
    size = 0
    for plan in plans:
        for sec in plan["load"]:
            align = max(sec["align"], 1)
            size = (size + align - 1) // align * align
            sec["at"] = size
            size += sec["size"]
    try:
        image = Image(size)
    except OSError:
        return None
    for obj, plan in zip(objs, plans):
        for sec in plan["load"]:
            if sec["type"] != _SHT_NOBITS:
                image.write(sec["at"], obj[sec["offset"]:sec["offset"] + sec["size"]])
    for plan in plans:
        for name, address in _defined(plan, image):
            if address is None or name in image.symbols:
                return None     # NOTE: defined twice in a bundle: LLVM's rules decide
            image.symbols[name] = address
    for obj, plan in zip(objs, plans):
        if not _relocate(obj, plan, image):
            return None
    if any(not image.symbols.get(s) for s in symbols):
        return None
    try:
        image.seal()
    except OSError:
        return None
    return image


def _plan(obj: bytes) -> dict | None:
    """The sections to load and the tables to read, or None for what is not handled."""
    shoff, shnum, shstrndx = (lambda h: (h[6], h[12], h[13]))(_EHDR.unpack_from(obj))
    if shnum == 0:
        return None
    sections = [_SHDR.unpack_from(obj, shoff + i * _SHDR.size) for i in range(shnum)]
    names_off = sections[shstrndx][4]

    def name(sec) -> bytes:
        start = names_off + sec[0]
        return obj[start:obj.index(b"\0", start)]
    load, by_index, symtab, relas = [], {}, None, []
    for i, sec in enumerate(sections):
        sh_name, sh_type, flags, _, off, size, link, info, align, _ = sec
        if sh_type == _SHT_SYMTAB:
            symtab = sec
        elif sh_type == _SHT_RELA:
            relas.append(sec)
        elif sh_type == _SHT_REL:
            return None
        if flags & _SHF_ALLOC and name(sec) not in _SKIPPED:
            # NOTE: .init_array and the like would need running; writable data would need
            # pages of its own (the code is sealed read-only); an alignment above a page
            # cannot be kept by a page-aligned mapping
            if sh_type not in (_SHT_PROGBITS, _SHT_NOBITS) or flags & _SHF_WRITE or \
                    align > mmap.PAGESIZE:
                return None
            entry = {"index": i, "type": sh_type, "offset": off, "size": size, "align": align}
            load.append(entry)
            by_index[i] = entry
    if symtab is None:
        return None
    strtab = sections[symtab[6]]
    syms = []
    for k in range(symtab[5] // _SYM.size):
        st_name, st_info, _, shndx, value, _ = _SYM.unpack_from(obj, symtab[4] + k * _SYM.size)
        start = strtab[4] + st_name
        nm = obj[start:obj.index(b"\0", start)].decode("utf-8", "replace") if st_name else ""
        syms.append((nm, st_info >> 4, st_info & 0xF, shndx, value))
    return {"load": load, "by_index": by_index, "syms": syms, "relas": relas}


def _symbol_address(plan: dict, image: Image, sym) -> int | None:
    """A defined symbol's address (None: undefined, or in a section that is not loaded)."""
    _, _, _, shndx, value = sym
    if shndx == _SHN_ABS:
        return value
    if shndx == 0 or shndx >= _SHN_LORESERVE:
        return None
    sec = plan["by_index"].get(shndx)
    return None if sec is None else image.base + sec["at"] + value


def _defined(plan: dict, image: Image):
    for sym in plan["syms"]:
        name, bind, sym_type, shndx, _ = sym
        if name and bind == _STB_WEAK and shndx != 0:
            yield name, None        # NOTE: a weak definition: left to LLVM's rules
        elif name and bind != _STB_LOCAL and shndx != 0 and sym_type != _STT_SECTION:
            address = _symbol_address(plan, image, sym)
            if address is not None:
                yield name, address


def _relocate(obj: bytes, plan: dict, image: Image) -> bool:
    """Apply the relocations of every loaded section; False where one cannot be resolved."""
    for rela in plan["relas"]:
        target = plan["by_index"].get(rela[7])      # sh_info: the section relocated
        if target is None:
            continue        # NOTE: a section not loaded (unwind tables)
        for k in range(rela[5] // _RELA.size):
            r_offset, r_info, addend = _RELA.unpack_from(obj, rela[4] + k * _RELA.size)
            r_type, sym = r_info & 0xFFFFFFFF, plan["syms"][r_info >> 32]
            if r_type == _R_NONE:
                continue
            s = _resolve(plan, image, sym)
            if s is None:
                return False
            place = image.base + target["at"] + r_offset
            if r_type == _R_64:
                image.write(target["at"] + r_offset, _U64.pack((s + addend) & (2**64 - 1)))
            elif r_type == _R_PC64:
                image.write(target["at"] + r_offset, _I64.pack(s + addend - place))
            else:
                return False
    return True


def _resolve(plan: dict, image: Image, sym) -> int | None:
    name, bind, _, shndx, _ = sym
    if shndx != 0:
        return _symbol_address(plan, image, sym)
    if name in image.symbols:
        return image.symbols[name]
    address = process_symbol(name)
    if address:
        return address
    return 0 if bind == _STB_WEAK else None
