"""A run of schedule steps -> one compiled entry function, so a call enters compiled code
once instead of returning to Python between kernels.

    void @kiln_entry_<name>(ptr bufs)

`bufs` is an array of buffer pointers (in the order of `SegmentArtifact.buffers`); the entry
calls each kernel over its whole outer range, and each matmul as OpenBLAS GEMM calls (a loop
over batch matrices). Kernels are the functions `render_kernel` makes, each in its own LLVM
module (compiled in parallel) with a `whole_range_ir` wrapper that the entry calls.
"""
from __future__ import annotations

import dataclasses

from kiln.ir.schedule import Call, Launch

from . import blas
from ..errors import CodegenError


@dataclasses.dataclass(frozen=True)
class SegmentArtifact:
    """A compiled segment: its entry's address, the buffers `bufs` lists, and one
    CpuArtifact per kernel (for the CLI's stages)."""

    name: str
    symbol: str
    buffers: tuple
    obj: object
    kernels: tuple
    entry_ir: str

    @property
    def address(self) -> int:
        return self.obj.address(self.symbol)


def entry_ir(symbol: str, steps, buffers: list, kernel_symbols: dict) -> str:
    """LLVM IR of the entry function (kernels declared, GEMM declared).

    >>> from kiln.ir.schedule_text import parse_schedule
    >>> s = parse_schedule('''
    ... schedule @f(%a: f32[2,3], %b: f32[4,3]) {
    ...   buffer %c: f32[2,4] output
    ...   call matmul (%a, %b) -> (%c) {transpose=[false,true]}
    ...   return %c
    ... }''')
    >>> text = entry_ir("entry", s.steps, segment_buffers(s.steps), {})
    >>> "i32 111, i32 112, i64 2, i64 4, i64 3" in text     # row-major, B transposed
    True
    """
    index = {id(b): i for i, b in enumerate(buffers)}
    head, body, declared = [], [], set()
    body.append(f"define void @{symbol}(ptr %bufs) {{")
    body.append("entry:")
    for i in range(len(buffers)):
        body.append(f"  %pp{i} = getelementptr ptr, ptr %bufs, i64 {i}")
        body.append(f"  %b{i} = load ptr, ptr %pp{i}")
    block = ["entry"]
    for n, step in enumerate(steps):
        if isinstance(step, Launch):
            sym = kernel_symbols[id(step.kernel)][0] + WHOLE
            params = ", ".join(["ptr"] * (len(step.ins) + len(step.outs)))
            if sym not in declared:
                head.append(f"declare void @{sym}({params})")
                declared.add(sym)
            args = [f"ptr %b{index[id(b)]}" for b in step.ins + step.outs]
            body.append(f"  call void @{sym}({', '.join(args)})")
        else:
            dtype = step.outs[0].type.dtype.value
            decl = blas.gemm_declaration(dtype)
            if decl not in declared:
                head.append(decl)
                declared.add(decl)
            body += _gemm(n, step, index, block)
    body += ["  ret void", "}"]
    return "\n".join(head + [""] + body) + "\n"


WHOLE = "_whole"


def internal(llvm_ir: str, symbol: str) -> str:
    """`llvm_ir` with function `symbol` made internal to its module.
    NOTE: a segment's entry calls only the whole-range function (a kernel in a segment never
    runs split over threads); made internal, the ranged kernel is inlined into it and then
    dropped, so LLVM optimizes and generates its loops once, not twice (W5's cold compile
    spent half its LLVM time on the unused copies)."""
    head = f"define void @{symbol}("
    if llvm_ir.count(head) != 1:
        raise CodegenError(f"expected one definition of @{symbol} in the kernel's LLVM IR")
    return llvm_ir.replace(head, f"define internal void @{symbol}(")


def whole_range_ir(symbol: str, n_pointers: int, outer: int) -> str:
    """LLVM IR of `void @<symbol>_whole(ptr...)`: kernel `symbol` over its whole outer range,
    to append to the kernel's own module.
    NOTE: with the bounds constant in the same module LLVM inlines the kernel there and knows
    its trip count, as it did when the entry and its kernels were one module.

    >>> print(whole_range_ir("k", 2, 8), end="")
    define void @k_whole(ptr %p0, ptr %p1) {
      call void @k(ptr %p0, ptr %p1, i64 0, i64 8)
      ret void
    }
    """
    params = ", ".join(f"ptr %p{i}" for i in range(n_pointers))
    return (f"define void @{symbol}{WHOLE}({params}) {{\n"
            f"  call void @{symbol}({params}, i64 0, i64 {outer})\n  ret void\n}}\n")


def _gemm(n: int, step: Call, index: dict, block: list) -> list[str]:
    a, b = step.operand_types()
    c = step.outs[0]
    *batch, m, k = a.shape
    nn = b.shape[-1]
    count = 1
    for d in batch:
        count *= d
    dtype = c.type.dtype.value
    pa, pb, pc = (f"%b{index[id(x)]}" for x in (*step.ins, c))
    ta, tb = step.transpose or (False, False)
    if count == 1:
        return ["  " + blas.gemm_call(dtype, m, nn, k, pa, pb, pc, ta, tb)]
    size = c.type.dtype.itemsize
    pre = f"g{n}"
    lines = [f"  br label %{pre}.head", f"{pre}.head:",
             f"  %{pre}.i = phi i64 [0, %{block[0]}], [%{pre}.next, %{pre}.body]",
             f"  %{pre}.more = icmp slt i64 %{pre}.i, {count}",
             f"  br i1 %{pre}.more, label %{pre}.body, label %{pre}.done", f"{pre}.body:"]
    ptrs = []
    for name, base, elems in (("a", pa, m * k), ("b", pb, k * nn), ("c", pc, m * nn)):
        lines.append(f"  %{pre}.o{name} = mul i64 %{pre}.i, {elems * size}")
        lines.append(f"  %{pre}.p{name} = getelementptr i8, ptr {base}, i64 %{pre}.o{name}")
        ptrs.append(f"%{pre}.p{name}")
    lines.append("  " + blas.gemm_call(dtype, m, nn, k, *ptrs, ta, tb))
    lines += [f"  %{pre}.next = add i64 %{pre}.i, 1", f"  br label %{pre}.head",
              f"{pre}.done:"]
    block[0] = f"{pre}.done"
    return lines


def segment_buffers(steps) -> list:
    """The buffers a run of steps reads or writes, in order of first use."""
    seen, out = set(), []
    for st in steps:
        for b in st.ins + st.outs:
            if id(b) not in seen:
                seen.add(id(b))
                out.append(b)
    return out
