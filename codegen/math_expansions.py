"""Kiln's own expansions of transcendental functions: the one table (`EXPANSIONS`).

Why: `math.exp` and friends lower to one libm call per element, which stops LLVM from
vectorizing a kernel's loop (W1 ran 117 ms instead of 25 ms). These expansions use only
arithmetic, `fma`, `roundeven`, bit casts and selects, so the loop vectorizes.

Each entry is written against `ScalarBuilder`, generic over f32/f64 where the method is the
same and only constants change (`_LIMITS`, the coefficient tables). Accuracy (tested over the
whole float range against NumPy float64 in tests/codegen/test_math_expansions.py):
- exp: Cody-Waite reduction x = n*ln2 + r, a polynomial in r (fitted for f32, Taylor for f64),
  then a scaling by 2**n that overflows to inf and rounds tiny results into denormals like
  libm: one `ldexp` on hosts with a vector instruction for it, else two exact scalings.
- log: x = 2**e * m with m in [sqrt(1/2), sqrt(2)); fdlibm's log1p form in s = f/(2+f).
- tanh: an odd polynomial for |x| < 0.55 (keeps relative error small near 0: fitted for f32,
  Taylor for f64), else (1 - e*e)/(1 + e*e) with e = exp(-|x|), the exp sigmoid needs too.
- sigmoid: split by sign like the reference so that neither side overflows.
- erf (f32): Taylor series for |x| < 1, else 1 - exp(-x*x) * R(|x|) with R fitted to
  erfc(x)*exp(x*x) on [1, 4] (|x| >= 4 rounds to +-1).
- pow (f32): exp(y*log|x|) evaluated in f64 with the f64 expansions, plus C99's special cases.
- f64 erf and pow are libm calls (correct first; no expansion here is accurate enough yet).
- log1p: log(1 + x) plus the rounding error of 1 + x over 1 + x (Goldberg); expm1: exp's
  reduction with 2**n * expm1(r) + (2**n - 1).
- sin and cos are libm calls (a range reduction accurate for large arguments is not written
  yet); float `//` and `%` call libm's fmod (exact), then apply Python's sign rules.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from fractions import Fraction

from kiln.ir.dtypes import DType
from kiln.ir.errors import DTypeError, NotSupportedError

F32, F64 = DType.float32, DType.float64


@dataclasses.dataclass(frozen=True)
class _Limits:
    """Per-dtype constants of the IEEE format and of the range reductions."""

    int_dtype: DType
    mant_bits: int        # explicit mantissa bits
    bias: int             # exponent bias
    exp_lo: float         # exp(x) rounds to 0 below this ...
    exp_hi: float         # ... and to inf above this; clamping here keeps 2**n in range
    ln2_hi: float         # ln2 = ln2_hi + ln2_lo, ln2_hi with trailing zero bits
    ln2_lo: float
    denorm_shift: int     # log: scale denormals up by 2**denorm_shift first

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias)


_F32_LN2_HI = 0.693138122558593750           # 0x3F317180 (fdlibm logf)
_LIMITS = {
    F32: _Limits(DType.int32, 23, 127, -104.0, 89.0, _F32_LN2_HI,
                 math.log(2) - _F32_LN2_HI, 24),
    # NOTE: the f64 split is fdlibm's; ln2_lo needs more than double precision to derive.
    F64: _Limits(DType.int64, 52, 1023, -746.0, 710.0, 6.93147180369123816490e-01,
                 1.90821492927058770002e-10, 54),
}
LOG2E = 1.4426950408889634
SQRT2 = 1.4142135623730951
TANH_SMALL = 0.55          # below: Taylor series; above: the exp form


def _bernoulli(n: int) -> list[Fraction]:
    """B_0 .. B_n (B_1 = -1/2), exact."""
    b = [Fraction(1)]
    for m in range(1, n + 1):
        b.append(-sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1))
    return b


def _tanh_taylor(terms: int) -> list[float]:
    """tanh(x) = x * sum(a_k x**(2k)); returns a_0 .. a_{terms-1}."""
    bern = _bernoulli(2 * terms)
    out = []
    for n in range(1, terms + 1):
        c = Fraction(4 ** n * (4 ** n - 1)) * bern[2 * n] / math.factorial(2 * n)
        out.append(float(c))
    return out


def _erf_taylor(terms: int) -> list[float]:
    """erf(x) = x * sum(c_k x**(2k))."""
    two_over_sqrt_pi = 2 / math.sqrt(math.pi)
    return [two_over_sqrt_pi * (-1) ** k / (math.factorial(k) * (2 * k + 1))
            for k in range(terms)]


# NOTE: degrees are the smallest whose truncation error is below ~0.1 ulp on the reduced range
# (Taylor remainders: exp |r| <= ln2/2, log z <= 0.0295, tanh |x| < 0.55, erf |x| < 1); the
# f32 fits need fewer terms than Taylor series for that (tests/codegen/test_expansion_fits.py).
# exp(r) = 1 + r + r*r * Q(r) for f32 on |r| <= ln2/2: a degree-4 Q fitted for relative
# error (as TANH_FIT_F32, mpmath exp); max relative error 3.1e-9 before rounding, below the
# degree-7 Taylor polynomial's 7.0e-9 with one fma fewer.
EXP_FIT_F32 = [1.0, 1.0, 0.4999999345118995, 0.16666520684764263, 0.041668387465361924,
               0.008368710295660768, 0.001381460828235819]
EXP_COEFFS = {F32: EXP_FIT_F32, F64: [1 / math.factorial(k) for k in range(14)]}
LOG_COEFFS = {F32: [2 / (2 * k + 1) for k in range(1, 5)],
              F64: [2 / (2 * k + 1) for k in range(1, 11)]}
# tanh(x) = x + x**3 * P(x*x) for f32 on |x| < TANH_SMALL: a degree-4 P fitted for relative
# error of tanh (Lawson-weighted least squares, 6000 points, mpmath tanh); max relative error
# 1.0e-9 before rounding: 5 fma where the Taylor series needs 8 for the same accuracy.
TANH_FIT_F32 = [-0.3333331756206965, 0.13332586219257592, -0.05385231821590042,
                0.021071712396161766, -0.006274285377321992]
TANH_COEFFS = {F32: [1.0] + TANH_FIT_F32, F64: _tanh_taylor(18)}
ERF_COEFFS = {F32: _erf_taylor(10)}
# erfc(x)*exp(x*x) on [1, 4] as a polynomial in t = (x - 2.5)/1.5: a degree-11 Chebyshev
# least-squares fit (numpy, 2000 Chebyshev nodes, math.erfc); max |erf error| 2e-8 in f32.
ERFC_FIT = [0.210806357528339, -0.11152100469538165, 0.056110958411634125,
            -0.027005725289746138, 0.012484035685734422, -0.00556733290949434,
            0.0024258851012579686, -0.001017117774376553, 0.0003678686724123819,
            -0.00014394859782819631, 9.640451524407513e-05, -3.692872359332621e-05]


def horner(b, x, coeffs):
    """sum(coeffs[k] * x**k) by Horner's rule with fma."""
    d = x.dtype
    acc = b.const(coeffs[-1], d)
    for c in reversed(coeffs[:-1]):
        acc = b.fma(acc, x, b.const(c, d))
    return acc


def _clamp(b, x, lo: float, hi: float):
    """Clamp with selects: NaN stays NaN (compares are false)."""
    d = x.dtype
    x = b.select(b.cmp("gt", x, b.const(hi, d)), b.const(hi, d), x)
    return b.select(b.cmp("lt", x, b.const(lo, d)), b.const(lo, d), x)


def _clamp_nan_low(b, x, lo: float, hi: float):
    """Clamp to [lo, hi] with NaN going to lo: exp's NaN would become poison in fptosi.
    NOTE: `x > lo ? x : lo` is one x86 `max` (it returns its second operand for NaN)."""
    d = x.dtype
    x = b.select(b.cmp("gt", x, b.const(lo, d)), x, b.const(lo, d))
    return b.select(b.cmp("lt", x, b.const(hi, d)), x, b.const(hi, d))


def _pow2(b, k, d: DType):
    """2**k as a float, for integer k within the normal exponent range."""
    lim = _LIMITS[d]
    i = lim.int_dtype
    biased = b.add(k, b.const(lim.bias, i))
    return b.bitcast(b.shl(biased, b.const(lim.mant_bits, i)), d)


def exp(b, x):
    """e**x; see the module docstring."""
    d, lim = x.dtype, _LIMITS[x.dtype]
    xc = _clamp_nan_low(b, x, lim.exp_lo, lim.exp_hi)
    n = b.roundeven(b.mul(xc, b.const(LOG2E, d)))
    minus_n = b.neg(n)
    r = b.fma(minus_n, b.const(lim.ln2_hi, d), xc)
    r = b.fma(minus_n, b.const(lim.ln2_lo, d), r)
    p = horner(b, r, EXP_COEFFS[d])
    return b.select(b.isnan(x), x, _scale(b, p, n))


def _scale(b, p, n):
    """p * 2**n for an integral float n in [-1076, 1076]: one ldexp where the host has a
    vector instruction for it, else two exact-power multiplications."""
    d, lim = p.dtype, _LIMITS[p.dtype]
    if fast_ldexp() if b.vector_ldexp is None else b.vector_ldexp:
        return b.ldexp(p, b.float_to_int_unchecked(n, DType.int32))
    # NOTE: 2**n can leave the exponent range (n up to +-1076 for f64): scale twice.
    ni = b.float_to_int_unchecked(n, lim.int_dtype)
    n1 = b.shr_signed(ni, b.const(1, lim.int_dtype))
    n2 = b.sub(ni, n1)
    return b.mul(b.mul(p, _pow2(b, n1, d)), _pow2(b, n2, d))


@functools.cache
def fast_ldexp() -> bool:
    """Whether LLVM lowers a vector `ldexp` on this host to one instruction (x86 AVX-512
    `vscalef`). NOTE: elsewhere it becomes one libm call per element, which stops the loop
    from vectorizing: the two multiplications are the portable form."""
    from .host import has_avx512f
    flag = has_avx512f()            # NOTE: CPUID itself, without loading LLVM
    if flag is not None:
        return flag
    from .llvm_cpu import _llvm
    return bool(_llvm().get_host_cpu_features().get("avx512f", False))


def _split_exponent(b, x):
    """x > 0 as (e, m): x = 2**e * m, m in [sqrt(1/2), sqrt(2)), e as a float."""
    d, lim = x.dtype, _LIMITS[x.dtype]
    i = lim.int_dtype
    tiny = b.cmp("lt", x, b.const(lim.min_normal, d))
    x = b.select(tiny, b.mul(x, b.const(2.0 ** lim.denorm_shift, d)), x)
    bits = b.bitcast(x, i)
    e = b.sub(b.shr_unsigned(bits, b.const(lim.mant_bits, i)), b.const(lim.bias, i))
    e = b.select(tiny, b.sub(e, b.const(lim.denorm_shift, i)), e)
    mant_mask = (1 << lim.mant_bits) - 1
    one_bits = lim.bias << lim.mant_bits
    m_bits = b.bor(b.band(bits, b.const(mant_mask, i)), b.const(one_bits, i))
    m = b.bitcast(m_bits, d)
    big = b.cmp("gt", m, b.const(SQRT2, d))
    m = b.select(big, b.mul(m, b.const(0.5, d)), m)
    e = b.select(big, b.add(e, b.const(1, i)), e)
    return b.cast(e, d), m


def log(b, x):
    """Natural log; log(0) = -inf, log(x<0) = NaN, log(inf) = inf."""
    d, lim = x.dtype, _LIMITS[x.dtype]
    e, m = _split_exponent(b, x)
    f = b.sub(m, b.const(1, d))
    s = b.div(f, b.add(f, b.const(2, d)))
    z = b.mul(s, s)
    big_r = b.mul(z, horner(b, z, LOG_COEFFS[d]))
    hfsq = b.mul(b.mul(f, f), b.const(0.5, d))
    # fdlibm: log(1+f) = f - (hfsq - s*(hfsq + R)); e*ln2_lo folded into the small part
    lo = b.fma(s, b.add(hfsq, big_r), b.mul(e, b.const(lim.ln2_lo, d)))
    small = b.sub(b.sub(hfsq, lo), f)
    y = b.fma(e, b.const(lim.ln2_hi, d), b.neg(small))
    return _log_specials(b, x, y)


def _log_specials(b, x, y):
    d = x.dtype
    y = b.select(b.cmp("lt", x, b.const(0, d)), b.const(math.nan, d), y)
    y = b.select(b.cmp("eq", x, b.const(0, d)), b.const(-math.inf, d), y)
    y = b.select(b.cmp("eq", x, b.const(math.inf, d)), x, y)
    return b.select(b.isnan(x), x, y)


def tanh(b, x):
    """tanh, with a Taylor form near 0 so the relative error stays small there."""
    d = x.dtype
    ax = b.abs(x)
    z = b.mul(x, x)
    near_zero = b.fma(b.mul(x, z), horner(b, z, TANH_COEFFS[d][1:]), x)
    # NOTE: exp(-|x|) squared inside fma, not exp(-2|x|): sigmoid's expansion computes the
    # same exp(-|x|), so LLVM shares it when both ops are in one kernel (W1).
    e = exp(b, b.neg(ax))
    one = b.const(1, d)
    num = b.fma(b.neg(e), e, one)
    far = b.copysign(b.div(num, b.fma(e, e, one)), x)
    return b.select(b.cmp("lt", ax, b.const(TANH_SMALL, d)), near_zero, far)


def sigmoid(b, x):
    """1/(1+exp(-x)), split by sign like the reference (exp never overflows)."""
    d = x.dtype
    e = exp(b, b.neg(b.abs(x)))
    inv = b.div(b.const(1, d), b.add(b.const(1, d), e))
    return b.select(b.cmp("ge", x, b.const(0, d)), inv, b.mul(e, inv))


def erf_f32(b, x):
    """erf for f32: Taylor near 0, 1 - exp(-x*x)*R(|x|) beyond 1."""
    d = x.dtype
    ax = b.abs(x)
    near_zero = b.mul(x, horner(b, b.mul(x, x), ERF_COEFFS[d]))
    ac = _clamp(b, ax, 0.0, 4.0)
    t = b.fma(ac, b.const(1 / 1.5, d), b.const(-2.5 / 1.5, d))
    tail = b.mul(exp(b, b.neg(b.mul(ac, ac))), horner(b, t, ERFC_FIT))
    far = b.copysign(b.sub(b.const(1, d), tail), x)
    return b.select(b.cmp("lt", ax, b.const(1, d)), near_zero, far)


def pow_f32(b, x, y):
    """x**y for f32: evaluated in f64 (exp/log expansions), then rounded once to f32."""
    xd, yd = b.cast(x, F64), b.cast(y, F64)
    mag = exp(b, b.mul(yd, log(b, b.abs(xd))))
    y_int = b.cmp("eq", b.roundeven(yd), yd)
    half = b.mul(yd, b.const(0.5, F64))
    y_odd = b.band(y_int, b.cmp("ne", b.roundeven(half), half))
    negative = b.cmp("lt", b.bitcast(x, DType.int32), b.const(0, DType.int32))
    r = b.select(b.band(negative, y_odd), b.neg(mag), mag)
    finite_neg = b.band(b.cmp("lt", xd, b.const(0, F64)),
                        b.cmp("gt", xd, b.const(-math.inf, F64)))
    r = b.select(b.band(finite_neg, b.logical_not(y_int)), b.const(math.nan, F64), r)
    return b.cast(_pow_ones(b, xd, yd, r), F32)


def _pow_ones(b, x, y, r):
    """C99: pow(x, +-0) = 1, pow(1, y) = 1, pow(-1, +-inf) = 1, even for NaN operands."""
    d = x.dtype
    one = b.const(1, d)
    inf = b.const(math.inf, d)
    unit_inf = b.band(b.cmp("eq", b.abs(x), one), b.cmp("eq", b.abs(y), inf))
    is_one = b.bor(b.cmp("eq", x, one), b.cmp("eq", y, b.const(0, d)))
    return b.select(b.bor(unit_inf, is_one), one, r)


def log1p(b, x):
    """log(1 + x) accurate near 0: log(u) for u = 1 + x, plus the rounding error of u divided
    by u (Goldberg's correction); u == 1 gives x itself."""
    d = x.dtype
    one = b.const(1, d)
    u = b.add(x, one)
    corr = b.div(b.sub(x, b.sub(u, one)), u)
    y = b.add(log(b, u), corr)
    y = b.select(b.cmp("eq", u, one), x, y)
    y = b.select(b.cmp("eq", x, b.const(-1, d)), b.const(-math.inf, d), y)
    y = b.select(b.cmp("eq", x, b.const(math.inf, d)), x, y)
    return b.select(b.isnan(x), x, y)


# NOTE: expm1 below lo rounds to -1 and above hi equals exp(x) to the last bit; between them
# 2**n stays a normal number with n <= 58.
EXPM1_RANGE = {F32: (-20.0, 20.0), F64: (-40.0, 40.0)}
# expm1(r) = r + r*r * Q(r) on |r| <= ln2/2: Taylor terms to r**8 (f32), r**16 (f64), the
# remainder below 0.1 ulp as for exp.
EXPM1_COEFFS = {F32: [1 / math.factorial(k) for k in range(2, 9)],
                F64: [1 / math.factorial(k) for k in range(2, 17)]}


def expm1(b, x):
    """e**x - 1 accurate near 0: x = n*ln2 + r, expm1(x) = 2**n * expm1(r) + (2**n - 1)."""
    d, lim = x.dtype, _LIMITS[x.dtype]
    lo, hi = EXPM1_RANGE[d]
    xc = _clamp_nan_low(b, x, lo, hi)
    n = b.roundeven(b.mul(xc, b.const(LOG2E, d)))
    minus_n = b.neg(n)
    r = b.fma(minus_n, b.const(lim.ln2_hi, d), xc)
    r = b.fma(minus_n, b.const(lim.ln2_lo, d), r)
    p = b.fma(b.mul(r, r), horner(b, r, EXPM1_COEFFS[d]), r)
    t = _pow2(b, b.float_to_int_unchecked(n, lim.int_dtype), d)
    y = b.fma(t, p, b.sub(t, b.const(1, d)))
    y = b.select(b.cmp("gt", x, b.const(hi, d)), exp(b, x), y)
    return b.select(b.isnan(x), x, y)


def _fmod_parts(b, x, y):
    """fmod(x, y) and whether it has the wrong sign for Python's `%` (nonzero, sign != y's)."""
    d = x.dtype
    zero = b.const(0, d)
    mod = b.fmod(x, y)
    off_sign = b.band(b.cmp("ne", mod, zero),
                      b.cmp("ne", b.cmp("lt", y, zero), b.cmp("lt", mod, zero)))
    return mod, off_sign


def float_remainder(b, x, y):
    """Python's `%` on floats (PyTorch's formula): fmod, moved by y when signs differ."""
    mod, off_sign = _fmod_parts(b, x, y)
    return b.select(off_sign, b.add(mod, y), mod)


def float_floor_divide(b, x, y):
    """Python's `//` on floats (PyTorch's and NumPy's formula): (x - fmod) / y, stepped down
    when fmod's sign is off, then rounded to the nearest integer; x / 0 is x / y."""
    d = x.dtype
    zero, one = b.const(0, d), b.const(1, d)
    mod, off_sign = _fmod_parts(b, x, y)
    div = b.div(b.sub(x, mod), y)
    div = b.select(off_sign, b.sub(div, one), div)
    floor = b.floor(div)
    floor = b.select(b.cmp("gt", b.sub(div, floor), b.const(0.5, d)), b.add(floor, one),
                     floor)
    quotient = b.div(x, y)
    out = b.select(b.cmp("ne", div, zero), floor, b.copysign(zero, quotient))
    return b.select(b.cmp("eq", y, zero), quotient, out)


def _int_divisor(b, y):
    """y with 0 and -1 replaced by 1 (x86 traps on x / 0 and INT_MIN / -1), and the masks."""
    d = y.dtype
    is_zero = b.cmp("eq", y, b.const(0, d))
    is_minus_one = b.cmp("eq", y, b.const(-1, d))
    safe = b.select(b.bor(is_zero, is_minus_one), b.const(1, d), y)
    return safe, is_zero, is_minus_one


def int_floor_divide(b, x, y):
    """Integer `//`: x // 0 is 0, x // -1 is -x (wrapping), like NumPy."""
    safe, is_zero, is_minus_one = _int_divisor(b, y)
    q = b.int_div("floordivsi", x, safe)
    q = b.select(is_minus_one, b.neg(x), q)
    return b.select(is_zero, b.const(0, x.dtype), q)


def int_remainder(b, x, y):
    """Integer `%` with the divisor's sign: x % 0 and x % -1 are 0, like NumPy."""
    d = x.dtype
    safe, is_zero, is_minus_one = _int_divisor(b, y)
    zero = b.const(0, d)
    r = b.int_div("remsi", x, safe)
    off_sign = b.band(b.cmp("ne", r, zero),
                      b.cmp("ne", b.cmp("lt", r, zero), b.cmp("lt", y, zero)))
    r = b.select(off_sign, b.add(r, y), r)
    return b.select(b.bor(is_zero, is_minus_one), zero, r)


def int_pow(b, x, e):
    """Integer x**e by squaring, unrolled over every exponent bit (wrapping like NumPy); a
    negative e gives PyTorch's 1, +-1 or 0."""
    d = x.dtype
    zero, one = b.const(0, d), b.const(1, d)
    result, base = one, x
    for bit in range(8 * d.itemsize - 1):
        mask = b.band(b.shr_signed(e, b.const(bit, d)), one)
        result = b.select(b.cmp("ne", mask, zero), b.mul(result, base), result)
        base = b.mul(base, base)
    odd = b.cmp("ne", b.band(e, one), zero)
    minus_one = b.const(-1, d)
    unit = b.select(b.cmp("eq", x, minus_one), b.select(odd, minus_one, one), zero)
    negative = b.select(b.cmp("eq", x, one), one, unit)
    return b.select(b.cmp("lt", e, zero), negative, result)


def _libm(op: str):
    def call(b, *xs):
        return b.libm(op, *xs)
    call.__name__ = f"libm_{op}"
    return call


# The one table: op -> dtype -> expansion(builder, *operands).
EXPANSIONS = {
    "exp": {F32: exp, F64: exp},
    "log": {F32: log, F64: log},
    "tanh": {F32: tanh, F64: tanh},
    "sigmoid": {F32: sigmoid, F64: sigmoid},
    "erf": {F32: erf_f32, F64: _libm("erf")},
    "pow": {F32: pow_f32, F64: _libm("powf")},
    "sin": {F32: _libm("sin"), F64: _libm("sin")},
    "cos": {F32: _libm("cos"), F64: _libm("cos")},
    "log1p": {F32: log1p, F64: log1p},
    "expm1": {F32: expm1, F64: expm1},
}


def expand(b, op: str, *xs):
    """Emit `op` on scalars xs through its table entry; errors name the op and dtype."""
    d = xs[0].dtype
    if not d.is_float:
        raise DTypeError(f"codegen {op}: needs a floating-point operand, got {d}")
    by_dtype = EXPANSIONS.get(op, {})
    if d not in by_dtype:
        raise NotSupportedError(f"not supported yet: codegen of {op} for {d}")
    return by_dtype[d](b, *xs)
