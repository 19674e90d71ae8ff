"""Emit MLIR (arith, math) for one scalar at a time: what an elementwise op's `scalar` body
calls.

Every registry elementwise op has a body written against this builder, e.g. relu is
`b.max(x, b.const(0, b.dtype(x)))`. Each method appends SSA lines and returns a `Scalar`.
Constants are kept apart (`const_lines`) so the kernel can emit them once, outside its loops.

    >>> from kiln.ir.dtypes import DType
    >>> b = ScalarBuilder()
    >>> x = b.arg("%x", DType.float32)
    >>> y = b.add(x, b.const(1.0, DType.float32))
    >>> b.lines
    ['%v0 = arith.addf %x, %k0 : f32']

Transcendentals (exp, log, tanh, ...) expand into polynomials from `math_expansions`, so the
kernel loops contain no calls and vectorize.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from kiln.ir.dtypes import DType
from kiln.ir.errors import DTypeError

# NOTE: bool computes as i1; it is stored as one byte (NumPy's layout), see STORAGE_TYPE.
MLIR_TYPE = {DType.float32: "f32", DType.float64: "f64", DType.int32: "i32",
             DType.int64: "i64", DType.bool: "i1"}
STORAGE_TYPE = {**MLIR_TYPE, DType.bool: "i8"}
# The same-width integer type of a float (for bit tricks) and its mantissa width.
INT_OF_FLOAT = {DType.float32: DType.int32, DType.float64: DType.int64}

_FLOAT_CMP = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge",
              "uno": "uno"}
_SINT_CMP = {"eq": "eq", "ne": "ne", "lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge"}
# NOTE: i1 true is 1 as unsigned but -1 as signed; NumPy orders False < True.
_BOOL_CMP = {"eq": "eq", "ne": "ne", "lt": "ult", "le": "ule", "gt": "ugt", "ge": "uge"}


@dataclasses.dataclass(frozen=True)
class Scalar:
    """An SSA value of one element: its MLIR name (`%v3`) and Kiln dtype."""

    name: str
    dtype: DType

    @property
    def type(self) -> str:
        return MLIR_TYPE[self.dtype]


def const_literal(value, dtype: DType) -> str:
    """The MLIR attribute text of `value` as `dtype`; floats are written as their exact bits.

    >>> const_literal(1.0, DType.float32)
    '0x3F800000'
    """
    if dtype == DType.bool:
        return "true" if bool(value) else "false"
    arr = np.asarray(value).astype(dtype.np)
    if dtype.is_float:
        bits = arr.view(np.uint32 if dtype == DType.float32 else np.uint64)
        width = 8 if dtype == DType.float32 else 16
        return f"0x{int(bits):0{width}X}"
    return str(int(arr))


class ScalarBuilder:
    """Collects MLIR lines for scalar computations; see the module docstring."""

    def __init__(self, vector_ldexp: bool | None = None):
        # NOTE: None: the host's choice (math_expansions.fast_ldexp); a GPU target says False
        self.vector_ldexp = vector_ldexp
        self.lines: list[str] = []
        self.const_lines: list[str] = []
        self._consts: dict[tuple, Scalar] = {}
        self._count = 0

    # ---- plumbing ---------------------------------------------------------------------------
    def arg(self, name: str, dtype: DType) -> Scalar:
        """A value defined elsewhere (a loaded element)."""
        return Scalar(name, dtype)

    def fresh(self) -> str:
        name = f"%v{self._count}"
        self._count += 1
        return name

    def emit(self, text: str, dtype: DType) -> Scalar:
        """Append `%new = text` and return the new value."""
        out = Scalar(self.fresh(), dtype)
        self.lines.append(f"{out.name} = {text}")
        return out

    def dtype(self, x: Scalar) -> DType:
        return x.dtype

    def const(self, value, dtype: DType) -> Scalar:
        """A constant of `dtype` (deduplicated, emitted once before the loops)."""
        literal = const_literal(value, dtype)
        key = (literal, dtype)
        if key not in self._consts:
            out = Scalar(f"%k{len(self._consts)}", dtype)
            # NOTE: `true`/`false` are typed i1 already; MLIR rejects a `: i1` after them.
            typed = literal if dtype == DType.bool else f"{literal} : {out.type}"
            self.const_lines.append(f"{out.name} = arith.constant {typed}")
            self._consts[key] = out
        return self._consts[key]

    def _same(self, op: str, *xs: Scalar) -> DType:
        d = xs[0].dtype
        for x in xs[1:]:
            if x.dtype != d:
                raise DTypeError(f"codegen {op}: operand dtypes differ "
                                 f"({', '.join(str(v.dtype) for v in xs)})")
        return d

    def _need_float(self, op: str, x: Scalar):
        if not x.dtype.is_float:
            raise DTypeError(f"codegen {op}: needs a floating-point operand, got {x.dtype}")

    def _binary(self, op: str, fop: str | None, iop: str | None, x: Scalar, y: Scalar):
        d = self._same(op, x, y)
        mnemonic = fop if d.is_float else iop if d.is_int else None
        if mnemonic is None:
            raise DTypeError(f"codegen {op}: not defined for {d}")
        return self.emit(f"{mnemonic} {x.name}, {y.name} : {x.type}", d)

    def _unary(self, op: str, mnemonic: str, x: Scalar) -> Scalar:
        return self.emit(f"{mnemonic} {x.name} : {x.type}", x.dtype)

    # ---- arithmetic -------------------------------------------------------------------------
    def add(self, x, y):
        return self._binary("add", "arith.addf", "arith.addi", x, y)

    def sub(self, x, y):
        return self._binary("sub", "arith.subf", "arith.subi", x, y)

    def mul(self, x, y):
        return self._binary("mul", "arith.mulf", "arith.muli", x, y)

    def div(self, x, y):
        return self._binary("div", "arith.divf", None, x, y)

    def max(self, x, y):
        # NOTE: arith.maximumf propagates NaN, like np.maximum.
        return self._binary("max", "arith.maximumf", "arith.maxsi", x, y)

    def min(self, x, y):
        return self._binary("min", "arith.minimumf", "arith.minsi", x, y)

    def neg(self, x):
        if x.dtype.is_float:
            return self._unary("neg", "arith.negf", x)
        return self.sub(self.const(0, x.dtype), x)

    def abs(self, x):
        if x.dtype.is_float:
            return self._unary("abs", "math.absf", x)
        # NOTE: abs(INT_MIN) wraps to INT_MIN, as in NumPy.
        return self.select(self.cmp("lt", x, self.const(0, x.dtype)), self.neg(x), x)

    def fma(self, x, y, z):
        """x*y + z with one rounding."""
        d = self._same("fma", x, y, z)
        self._need_float("fma", x)
        return self.emit(f"math.fma {x.name}, {y.name}, {z.name} : {x.type}", d)

    def sqrt(self, x):
        self._need_float("sqrt", x)
        return self._unary("sqrt", "math.sqrt", x)

    def rsqrt(self, x):
        # NOTE: 1/sqrt (two correctly rounded steps) is what the NumPy reference computes.
        return self.div(self.const(1, x.dtype), self.sqrt(x))

    def roundeven(self, x):
        self._need_float("roundeven", x)
        return self._unary("roundeven", "math.roundeven", x)

    def copysign(self, x, sign):
        self._same("copysign", x, sign)
        self._need_float("copysign", x)
        return self.emit(f"math.copysign {x.name}, {sign.name} : {x.type}", x.dtype)

    def ldexp(self, x, n):
        """x * 2**n with one rounding (overflow to inf, underflow into denormals); n is int32.
        NOTE: LLVM lowers it to one `vscalef` with AVX-512; see math_expansions.fast_ldexp."""
        self._need_float("ldexp", x)
        if n.dtype != DType.int32:
            raise DTypeError(f"codegen ldexp: exponent must be int32, got {n.dtype}")
        return self.emit(f"llvm.intr.ldexp({x.name}, {n.name}) : ({x.type}, i32) -> {x.type}",
                         x.dtype)

    # ---- transcendentals (expanded, see math_expansions) -----------------------------------
    def _expand(self, op: str, *xs):
        from .math_expansions import expand
        return expand(self, op, *xs)

    def exp(self, x):
        return self._expand("exp", x)

    def log(self, x):
        return self._expand("log", x)

    def tanh(self, x):
        return self._expand("tanh", x)

    def sigmoid(self, x):
        return self._expand("sigmoid", x)

    def erf(self, x):
        return self._expand("erf", x)

    def sin(self, x):
        return self._expand("sin", x)

    def cos(self, x):
        return self._expand("cos", x)

    def log1p(self, x):
        return self._expand("log1p", x)

    def expm1(self, x):
        return self._expand("expm1", x)

    def pow(self, x, y):
        d = self._same("pow", x, y)
        if d.is_int:
            from .math_expansions import int_pow
            return int_pow(self, x, y)
        return self._expand("pow", x, y)

    def floor(self, x):
        self._need_float("floor", x)
        return self._unary("floor", "math.floor", x)

    def ceil(self, x):
        self._need_float("ceil", x)
        return self._unary("ceil", "math.ceil", x)

    def trunc(self, x):
        self._need_float("trunc", x)
        return self._unary("trunc", "math.trunc", x)

    def fmod(self, x, y):
        """C's fmod (the remainder with x's sign, exact); a libm call on the CPU."""
        self._need_float("fmod", x)
        return self._binary("fmod", "arith.remf", None, x, y)

    def floor_divide(self, x, y):
        """Python's `//`; integer x // 0 is 0 (NumPy's answer, never a trap)."""
        from .math_expansions import float_floor_divide, int_floor_divide
        self._same("floor_divide", x, y)
        return (float_floor_divide if x.dtype.is_float else int_floor_divide)(self, x, y)

    def remainder(self, x, y):
        """Python's `%` (the sign of y); integer x % 0 is 0."""
        from .math_expansions import float_remainder, int_remainder
        self._same("remainder", x, y)
        return (float_remainder if x.dtype.is_float else int_remainder)(self, x, y)

    def libm(self, op: str, *xs):
        """`math.<op>`, lowered to a libm call: only where no expansion exists (f64 erf, pow)."""
        d = self._same(op, *xs)
        names = ", ".join(x.name for x in xs)
        return self.emit(f"math.{op} {names} : {xs[0].type}", d)

    # ---- comparison and selection -----------------------------------------------------------
    def cmp(self, pred: str, x, y):
        """Compare with pred in eq ne lt le gt ge (floats also `uno`); returns bool.
        Float `ne` is true when either side is NaN, the others false (NumPy)."""
        d = self._same(f"cmp {pred}", x, y)
        if d.is_float:
            return self.emit(f"arith.cmpf {_FLOAT_CMP[pred]}, {x.name}, {y.name} : {x.type}",
                             DType.bool)
        table = _BOOL_CMP if d == DType.bool else _SINT_CMP
        return self.emit(f"arith.cmpi {table[pred]}, {x.name}, {y.name} : {x.type}",
                         DType.bool)

    def isnan(self, x):
        return self.cmp("uno", x, x)

    def select(self, c, x, y):
        if c.dtype != DType.bool:
            raise DTypeError(f"codegen select: condition must be bool, got {c.dtype}")
        d = self._same("select", x, y)
        return self.emit(f"arith.select {c.name}, {x.name}, {y.name} : {x.type}", d)

    def logical_not(self, x):
        return self.bxor(x, self.const(True, DType.bool))

    # ---- integer bit operations (for expansions) --------------------------------------------
    def _bits(self, op: str, x, y):
        d = self._same(op, x, y)
        if d.is_float:
            raise DTypeError(f"codegen {op}: needs integer or bool operands, got {d}")
        return self.emit(f"arith.{op} {x.name}, {y.name} : {x.type}", d)

    def band(self, x, y):
        """Bitwise and (logical and on bool)."""
        return self._bits("andi", x, y)

    def bor(self, x, y):
        return self._bits("ori", x, y)

    def bxor(self, x, y):
        return self._bits("xori", x, y)

    def bnot(self, x):
        """Bitwise not (logical not on bool): x xor all-ones."""
        return self.bxor(x, self.const(True if x.dtype == DType.bool else -1, x.dtype))

    def int_div(self, op: str, x, y):
        """`arith.<op>` on integers (floordivsi, remsi): the caller keeps y off 0 and -1."""
        return self._bits(op, x, y)

    def shl(self, x, y):
        return self._bits("shli", x, y)

    def shr_signed(self, x, y):
        return self._bits("shrsi", x, y)

    def shr_unsigned(self, x, y):
        return self._bits("shrui", x, y)

    def bitcast(self, x, dtype: DType):
        """Reinterpret the bits of x as a same-width dtype (f32 <-> i32, f64 <-> i64)."""
        if x.dtype.itemsize != dtype.itemsize or DType.bool in (x.dtype, dtype):
            raise DTypeError(f"codegen bitcast: {x.dtype} and {dtype} differ in width")
        return self.emit(f"arith.bitcast {x.name} : {x.type} to {MLIR_TYPE[dtype]}", dtype)

    def float_to_int_unchecked(self, x, dtype: DType):
        """fptosi for values the caller keeps in range (out of range is LLVM poison)."""
        return self.emit(f"arith.fptosi {x.name} : {x.type} to {MLIR_TYPE[dtype]}", dtype)

    # ---- casts ------------------------------------------------------------------------------
    def cast(self, x, dtype: DType):
        """NumPy `astype` semantics: float->int truncates toward zero; NaN or out of range
        gives the most negative integer (what x86 and so NumPy produce); x->bool is x != 0."""
        from .casts import emit_cast
        return emit_cast(self, x, dtype)
