"""A generated matmul whose threads each compute a column of `tm` results (GPU only).

The kernel of codegen/cuda/matmul.py computes one result per thread (or per warp). Where b is
read along n (a plain `a @ b`: neighbouring threads take neighbouring columns), thread
(batch, row tile t, column j) instead computes c[t*tm .. t*tm + tm - 1, j]: every b[k, j] it
loads serves `tm` products, and the warp's loads of a[r, k] are one address (a broadcast), so
each k step moves one coalesced line of b for 32 * tm multiply-adds:

    for k:  bv = b[k, j];  acc_i += a[r0 + i, k] * bv   (i < tm; rows past m read row m-1)
    c[r0 + i, j] = acc_i                                  (i < tm and r0 + i < m)

The rows are a thread's registers (`iter_args`), so no shared memory and no barrier: the
same MLIR compiled for the CPU runs in tests/codegen/test_cuda_ptx.py.
"""
from __future__ import annotations

import math

from kiln.ir.dtypes import DType
from kiln.ir.schedule import Kernel

from ..scalar_builder import MLIR_TYPE, STORAGE_TYPE

# NOTE: threads below this many leave the GPU idle: a tile shrinks until there are enough
MIN_THREADS = 16384
TILES = (8, 4, 2)


def is_generated_matmul(k: Kernel) -> bool:
    """Whether k is matmul.py's kernel: space (*batch, m, n, k) reducing k, body
    expand, expand, mul, sum."""
    ops = [n.op for n in k.body.nodes]
    return (k.name.startswith("matmul_") and ops == ["expand", "expand", "mul", "sum"]
            and k.reduce == (len(k.space) - 1,) and len(k.loads) == 2 and len(k.stores) == 1)


def row_tile(k: Kernel) -> int:
    """Rows per thread for matmul kernel k: 1 (one result per thread) unless b is read along
    n contiguously and enough threads remain with a tile of 8, 4 or 2."""
    *batch, m, n, _ = k.space
    b_strides = k.loads[1].strides
    if b_strides[-2] != 1 or m < 2 or k.body.outputs[0].type.dtype == DType.bool:
        return 1
    for tm in TILES:
        if math.prod(batch) * -(-m // tm) * n >= MIN_THREADS and m >= tm:
            return tm
    return 1


def tiled_points(k: Kernel, tm: int) -> int:
    *batch, m, n, _ = k.space
    return math.prod(batch) * -(-m // tm) * n


def tiled_matmul_mlir(k: Kernel, symbol: str, tm: int) -> str:
    """The MLIR of kernel k as `tm`-row tiles: func @symbol(a, b, c, lo, hi) over tiles
    [lo, hi) (row-major over (*batch, row tile, column))."""
    *batch, m, n, kk = k.space
    dtype = k.body.outputs[0].type.dtype
    ty, st = MLIR_TYPE[dtype], STORAGE_TYPE[dtype]
    a, b = (s.strides for s in k.loads)
    c = k.stores[0].strides
    spans = [max(acc.span(k.space), 1) for acc in (*k.loads, *k.stores)]
    consts: dict[int, str] = {}

    def ci(v: int) -> str:
        return consts.setdefault(v, f"%i{len(consts)}")

    tiles = -(-m // tm)
    body = ["%j = arith.remui %q, " + ci(n) + " : index",
            "%qt = arith.divui %q, " + ci(n) + " : index",
            "%t = arith.remui %qt, " + ci(tiles) + " : index",
            "%bq = arith.divui %qt, " + ci(tiles) + " : index",
            "%row0 = arith.muli %t, " + ci(tm) + " : index"]
    a_base, b_base, c_base = _batch_offsets(body, batch, a, b, c, ci)
    body += [f"%bcol = arith.muli %j, {ci(b[-2])} : index",
             f"%bb = arith.addi {b_base}, %bcol : index",
             f"%cc = arith.addi {c_base}, %j : index"]
    rows = []
    for i in range(tm):
        body += [f"%r{i}u = arith.addi %row0, {ci(i)} : index",
                 f"%r{i} = arith.minui %r{i}u, {ci(m - 1)} : index",
                 f"%ar{i}m = arith.muli %r{i}, {ci(a[-3])} : index",
                 f"%ar{i} = arith.addi {a_base}, %ar{i}m : index"]
        rows.append(f"%ar{i}")
    zero = "0.0" if dtype.is_float else "0"
    body.append(f"%zero = arith.constant {zero} : {ty}")
    accs = ", ".join(f"%acc{i} = %zero" for i in range(tm))
    types = ", ".join([ty] * tm)
    body.append(f"%sums:{tm} = scf.for %k = %c0 to {ci(kk)} step %c1 iter_args({accs}) -> "
                f"({types}) {{")
    loop = [f"%bk = arith.muli %k, {ci(b[-1])} : index",
            "%bi = arith.addi %bb, %bk : index",
            f"%bv = memref.load %in1[%bi] : memref<{spans[1]}x{st}>",
            f"%ak = arith.muli %k, {ci(a[-1])} : index"]
    for i in range(tm):
        loop += [f"%ai{i} = arith.addi {rows[i]}, %ak : index",
                 f"%av{i} = memref.load %in0[%ai{i}] : memref<{spans[0]}x{st}>",
                 *_multiply_add(dtype, ty, f"%av{i}", "%bv", f"%acc{i}", f"%new{i}")]
    loop.append(f"scf.yield {', '.join(f'%new{i}' for i in range(tm))} : {types}")
    body += ["  " + s for s in loop] + ["}"]
    for i in range(tm):
        body += [f"%inside{i} = arith.cmpi ult, %r{i}u, {ci(m)} : index",
                 f"scf.if %inside{i} {{",
                 f"  %cr{i} = arith.muli %r{i}u, {ci(c[-3])} : index",
                 f"  %ci{i} = arith.addi %cc, %cr{i} : index",
                 f"  memref.store %sums#{i}, %out0[%ci{i}] : memref<{spans[2]}x{st}>",
                 "}"]
    params = (f"%in0: memref<{spans[0]}x{st}> {{llvm.noalias}}, "
              f"%in1: memref<{spans[1]}x{st}> {{llvm.noalias}}, "
              f"%out0: memref<{spans[2]}x{st}> {{llvm.noalias}}, %lo: index, %hi: index")
    head = ["%c0 = arith.constant 0 : index", "%c1 = arith.constant 1 : index"]
    head += [f"{name} = arith.constant {v} : index" for v, name in consts.items()]
    lines = ([f"func.func @{symbol}({params}) {{"] + ["  " + s for s in head]
             + ["  scf.for %q = %lo to %hi step %c1 {"] + ["    " + s for s in body]
             + ["  }", "  return", "}"])
    return "module {\n" + "\n".join("  " + s for s in lines) + "\n}\n"


def _batch_offsets(body: list, batch, a, b, c, ci) -> tuple[str, str, str]:
    """Lines computing each operand's offset of batch index %bq; their names."""
    if not batch:
        return "%c0", "%c0", "%c0"
    names = []
    for which, strides in (("a", a), ("b", b), ("c", c)):
        total = "%c0"
        rest = "%bq"
        for d in reversed(range(len(batch))):
            body += [f"%{which}x{d} = arith.remui {rest}, {ci(batch[d])} : index",
                     f"%{which}q{d} = arith.divui {rest}, {ci(batch[d])} : index",
                     f"%{which}m{d} = arith.muli %{which}x{d}, {ci(strides[d])} : index",
                     f"%{which}o{d} = arith.addi {total}, %{which}m{d} : index"]
            total, rest = f"%{which}o{d}", f"%{which}q{d}"
        names.append(total)
    return tuple(names)


def _multiply_add(dtype: DType, ty: str, x: str, y: str, acc: str, out: str) -> list[str]:
    if dtype.is_float:
        return [f"{out} = math.fma {x}, {y}, {acc} : {ty}"]
    return [f"{out}p = arith.muli {x}, {y} : {ty}", f"{out} = arith.addi {acc}, {out}p : {ty}"]
