"""What this machine's CPU is, read with the CPUID and XGETBV instructions themselves (a few
bytes of machine code), without loading LLVM.

A warm start (every kernel from the disk cache) needs the CPU only to name its cache
entries, and loading libllvmlite for that cost 25-45 ms. The words read are the ones LLVM's
host detection reads (vendor, family and model, feature bits, the register state the OS
saves), so a process that sees another CPU (valgrind, an emulator) gets other keys, as it
gets other code from LLVM; /proc/cpuinfo, which shows the real CPU, would not.

    >>> key = cpu_key()
    >>> key is None or key.startswith("cpuid ")
    True
"""
from __future__ import annotations

import ctypes
import functools

# NOTE: `void f(uint32_t out[14])`: cpuid leaves 0, 1 and 7 (eax, ebx, ecx, edx each), then
# xgetbv(0) (eax, edx) only when leaf 1 says the OS enabled it (OSXSAVE, ecx bit 27);
# assembled with GNU as from the listing in tests/codegen/test_host.py.
_STUB = bytes.fromhex(
    "534989f831c031c90fa241890041895804418948084189500cb80100000031c90fa24189401041895814"
    "418948184189501c4189c9b80700000031c90fa24189402041895824418948284189502c410fbae11b73"
    "0d31c90f01d041894030418950345bc3")
_WORDS = 14


@functools.cache
def cpuid_words() -> tuple[int, ...] | None:
    """The 14 words the stub reads (leaf 1's ebx without the APIC id, which differs from
    core to core); None where Kiln's loader cannot run code (not x86-64 Linux)."""
    from .elf_loader import Image, supported
    if not supported():
        return None
    try:
        image = Image(len(_STUB), code=_STUB)
    except OSError:
        return None
    out = (ctypes.c_uint32 * _WORDS)()
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(image.base)(ctypes.addressof(out))
    words = list(out)
    words[5] &= 0x00FFFFFF
    if words[0] < 7:        # NOTE: no leaf 7: what the CPU returned is another leaf's
        words[8:12] = [0, 0, 0, 0]
    return tuple(words)


def cpu_key() -> str | None:
    """The CPU as one line for cache keys, or None (see `cpuid_words`). NOTE: with the
    kernel's flags too: LLVM also reads leaves the stub does not (0x80000001, 7.1, ...), and
    the kernel lists those bits; the words alone keep an emulated CPU (valgrind) apart."""
    words = cpuid_words()
    if words is None:
        return None
    return "cpuid " + " ".join(f"{w:08x}" for w in words) + " flags " + _cpuinfo_flags()


def _cpuinfo_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return " ".join(sorted(value.split()))
    except OSError:
        pass
    return "?"


def has_avx512f() -> bool | None:
    """Whether AVX-512F can run here, as LLVM decides it: the CPU has it (leaf 7 ebx bit 16)
    and the OS saves its registers (XCR0 bits 5-7, and 1-2); None where unknown."""
    words = cpuid_words()
    if words is None:
        return None
    osxsave, avx = bool(words[6] >> 27 & 1), bool(words[6] >> 28 & 1)
    xcr0 = words[12] if osxsave else 0
    return words[0] >= 7 and avx and bool(words[9] >> 16 & 1) and xcr0 & 0xE6 == 0xE6
