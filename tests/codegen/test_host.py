"""The CPU read with CPUID itself (kiln.codegen.host): the machine code is the listing below,
the words name the CPU in cache keys, and the AVX-512 answer is LLVM's."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from kiln.codegen import elf_loader, host

pytestmark = pytest.mark.skipif(not elf_loader.supported(), reason="x86-64 Linux only")

# NOTE: the source of host._STUB (GNU as, AT&T syntax)
LISTING = """
    .text
    .globl stub
stub:
    push %rbx
    mov %rdi, %r8
    xor %eax, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, 0(%r8)
    mov %ebx, 4(%r8)
    mov %ecx, 8(%r8)
    mov %edx, 12(%r8)
    mov $1, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, 16(%r8)
    mov %ebx, 20(%r8)
    mov %ecx, 24(%r8)
    mov %edx, 28(%r8)
    mov %ecx, %r9d
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, 32(%r8)
    mov %ebx, 36(%r8)
    mov %ecx, 40(%r8)
    mov %edx, 44(%r8)
    bt $27, %r9d
    jnc 1f
    xor %ecx, %ecx
    xgetbv
    mov %eax, 48(%r8)
    mov %edx, 52(%r8)
1:
    pop %rbx
    ret
"""


@pytest.mark.skipif(not (shutil.which("as") and shutil.which("objcopy")),
                    reason="needs GNU as and objcopy")
def test_the_stub_is_the_listing_assembled(tmp_path):
    src, obj, raw = tmp_path / "stub.s", tmp_path / "stub.o", tmp_path / "stub.bin"
    src.write_text(LISTING)
    subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(raw)], check=True)
    assert raw.read_bytes() == host._STUB


def test_the_words_name_this_cpu_the_same_way_in_every_process():
    words = host.cpuid_words()
    assert words is not None and len(words) == 14
    vendor = b"".join(w.to_bytes(4, "little") for w in (words[1], words[3], words[2]))
    assert vendor in (b"AuthenticAMD", b"GenuineIntel") or vendor.isascii()
    code = "from kiln.codegen import host; print(host.cpu_key())"
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(3)}
    assert keys == {host.cpu_key()}


def test_avx512_is_what_llvm_finds():
    from kiln.codegen.llvm_cpu import _llvm
    assert host.has_avx512f() == bool(_llvm().get_host_cpu_features().get("avx512f", False))
