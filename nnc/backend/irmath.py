"""Scalar-or-vector LLVM IR math: the vocabulary the ops' `lower` rules are written in.

Every function takes an `ir.IRBuilder` and values that are all float32 (or all
int32) scalars, or all vectors of them, and returns a value of the same type,
so one lowering serves the scalar loops of an elementwise kernel and the
vector epilogue of a matmul. `exp` and `log` are polynomial (Cephes) rather
than calls to libm so that loops using them still vectorize.
Imports nothing but `llvmlite.ir`: the op modules import it.
"""

from __future__ import annotations

import math

from llvmlite import ir

F32 = ir.FloatType()
I32 = ir.IntType(32)
I64 = ir.IntType(64)
I1 = ir.IntType(1)


# ---- types and constants ---------------------------------------------------------------


def lanes(typ) -> int:
    return typ.count if isinstance(typ, ir.VectorType) else 1


def element_type(typ):
    return typ.element if isinstance(typ, ir.VectorType) else typ


def like(typ, element):
    """`element` with the lane count of `typ`."""
    return ir.VectorType(element, typ.count) if isinstance(typ, ir.VectorType) else element


def const(typ, value) -> ir.Constant:
    """A constant of `typ`, splatted over the lanes of a vector type."""
    return ir.Constant(typ, value)


def is_float(value) -> bool:
    return isinstance(element_type(value.type), ir.FloatType)


def splat(b: ir.IRBuilder, scalar, count: int) -> ir.Value:
    """Broadcast a scalar value into every lane of a vector."""
    if count == 1:
        return scalar
    vec_t = ir.VectorType(scalar.type, count)
    one = b.insert_element(ir.Constant(vec_t, ir.Undefined), scalar, ir.Constant(I32, 0))
    return b.shuffle_vector(one, ir.Constant(vec_t, ir.Undefined), ir.Constant(ir.VectorType(I32, count), [0] * count))


def intrinsic(b: ir.IRBuilder, name: str, args, typ=None) -> ir.Value:
    """Call `llvm.<name>.<f32|v8f32|...>` overloaded on the type of the first argument."""
    typ = typ or args[0].type
    elem = element_type(typ)
    suffix = {F32: "f32", I32: "i32", I64: "i64"}[elem]
    if isinstance(typ, ir.VectorType):
        suffix = f"v{typ.count}{suffix}"
    full = f"llvm.{name}.{suffix}"
    fn = b.module.globals.get(full)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(typ, [a.type for a in args]), full)
    return b.call(fn, args)


# ---- basic float helpers ------------------------------------------------------------------


def fconst(x, value: float) -> ir.Constant:
    return const(x.type, float(value))


def mask_to_float(b, cond, typ):
    return b.uitofp(cond, typ)


def is_nan(b, x):
    return b.fcmp_unordered("uno", x, x)


def polynomial(b, x, coefficients):
    """Horner: c0·x^n + c1·x^(n-1) + ... + cn."""
    acc = fconst(x, coefficients[0])
    for c in coefficients[1:]:
        acc = fma(b, acc, x, fconst(x, c))
    return acc


def fma(b, x, y, z):
    return intrinsic(b, "fma", [x, y, z])


def clamp(b, x, lo: float, hi: float):
    x = b.select(b.fcmp_ordered("<", x, fconst(x, lo)), fconst(x, lo), x)
    return b.select(b.fcmp_ordered(">", x, fconst(x, hi)), fconst(x, hi), x)


def pow2i(b, n_int, typ):
    """2**n for int32 lanes n in the normal exponent range [-126, 127]."""
    bits = b.shl(b.add(n_int, const(n_int.type, 127)), const(n_int.type, 23))
    return b.bitcast(bits, typ)


# ---- transcendental functions -------------------------------------------------------------

LOG2E = 1.44269504088896341
LN2_HI = 0.693359375
LN2_LO = -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
LOG_POLY = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
            -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
TANH_POLY = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1)


def exp(b, x):
    """e^x: Cephes expf, ~1 ulp; underflows through denormals to 0, overflows to inf, keeps NaN."""
    int_t = like(x.type, I32)
    xc = clamp(b, x, -104.0, 89.0)
    n = intrinsic(b, "rint", [b.fmul(xc, fconst(x, LOG2E))])
    r = b.fsub(xc, b.fmul(n, fconst(x, LN2_HI)))
    r = b.fsub(r, b.fmul(n, fconst(x, LN2_LO)))
    p = polynomial(b, r, EXP_POLY)
    y = b.fadd(fma(b, p, b.fmul(r, r), r), fconst(x, 1.0))
    # 2^n in two halves so that n in [-150, 129] reaches denormals and infinity.
    ni = b.fptosi(n, int_t)
    half = b.ashr(ni, const(int_t, 1))
    y = b.fmul(b.fmul(y, pow2i(b, half, x.type)), pow2i(b, b.sub(ni, half), x.type))
    return b.select(is_nan(b, x), x, y)


def log(b, x):
    """Natural log: Cephes logf; log(0) = -inf, log(<0) = NaN, log(inf) = inf, denormals handled."""
    int_t = like(x.type, I32)
    tiny = b.fcmp_ordered("<", x, fconst(x, 1.17549435e-38))
    xs = b.select(tiny, b.fmul(x, fconst(x, 8388608.0)), x)  # 2^23 lifts denormals
    bits = b.bitcast(xs, int_t)
    e = b.sub(b.and_(b.lshr(bits, const(int_t, 23)), const(int_t, 0xFF)), const(int_t, 126))
    e = b.select(tiny, b.sub(e, const(int_t, 23)), e)
    m = b.bitcast(b.or_(b.and_(bits, const(int_t, 0x807FFFFF)), const(int_t, 0x3F000000)), x.type)
    small = b.fcmp_ordered("<", m, fconst(x, 0.707106781186547524))
    e = b.select(small, b.sub(e, const(int_t, 1)), e)
    m = b.fsub(b.select(small, b.fadd(m, m), m), fconst(x, 1.0))
    ef = b.sitofp(e, x.type)
    z = b.fmul(m, m)
    y = b.fmul(b.fmul(polynomial(b, m, LOG_POLY), m), z)
    y = fma(b, ef, fconst(x, LN2_LO), y)
    y = fma(b, z, fconst(x, -0.5), y)
    y = fma(b, ef, fconst(x, LN2_HI), b.fadd(m, y))
    y = b.select(b.fcmp_ordered("==", x, fconst(x, math.inf)), x, y)
    y = b.select(b.fcmp_ordered("==", x, fconst(x, 0.0)), fconst(x, -math.inf), y)
    return b.select(b.fcmp_unordered("<", x, fconst(x, 0.0)), fconst(x, math.nan), y)


def expm1(b, x):
    return b.fsub(exp(b, x), fconst(x, 1.0))


def log1p(b, x):
    """log(1 + x), accurate for tiny x: log(w)·x/(w − 1) with w = 1 + x rounded (Goldberg), x itself where
    w rounds to 1; log1p(inf) = inf, log1p(−1) = −inf, below −1 NaN."""
    one = fconst(x, 1.0)
    w = b.fadd(x, one)
    d = b.fsub(w, one)
    y = b.fmul(log(b, w), b.fdiv(x, d))
    y = b.select(b.fcmp_ordered("==", d, fconst(x, 0.0)), x, y)
    return b.select(b.fcmp_ordered("==", w, fconst(x, math.inf)), w, y)


def tanh(b, x):
    """A polynomial near 0 (no cancellation), (1 - e^-2|x|) / (1 + e^-2|x|) elsewhere."""
    ax = intrinsic(b, "fabs", [x])
    e = exp(b, b.fmul(ax, fconst(x, -2.0)))
    far = b.fdiv(b.fsub(fconst(x, 1.0), e), b.fadd(fconst(x, 1.0), e))
    far = intrinsic(b, "copysign", [far, x])
    z = b.fmul(x, x)
    near = fma(b, b.fmul(polynomial(b, z, TANH_POLY), z), x, x)
    return b.select(b.fcmp_ordered("<", ax, fconst(x, 0.625)), near, far)


def sigmoid(b, x):
    """1/(1+e^-x) for x >= 0, e^x/(1+e^x) below: never exp of a large positive number."""
    e = exp(b, b.fneg(intrinsic(b, "fabs", [x])))
    s = b.fdiv(fconst(x, 1.0), b.fadd(fconst(x, 1.0), e))
    return b.select(b.fcmp_ordered(">=", x, fconst(x, 0.0)), s, b.fmul(e, s))


def bce_logits(b, z, t):
    """max(z, 0) − z·t + log1p(e^−|z|), summed in that order: z = 17, t = 1 gives log1p(e^−17), not 0."""
    soft = log1p(b, exp(b, b.fneg(intrinsic(b, "fabs", [z]))))
    return b.fadd(b.fsub(relu(b, z), b.fmul(z, t)), soft)


def softplus(b, x, beta: float, threshold: float):
    """PyTorch's: log1p(e^(β·x)) / β, and x itself where β·x > threshold (e^(β·x) is never taken of more)."""
    z = b.fmul(x, fconst(x, beta))
    soft = b.fdiv(log1p(b, exp(b, z)), fconst(x, beta))
    return b.select(b.fcmp_ordered(">", z, fconst(x, threshold)), x, soft)


def xlogy(b, x, y):
    """x · log(y), 0 where x = 0, NaN where y is NaN (torch.xlogy)."""
    product = b.select(b.fcmp_ordered("==", x, fconst(x, 0.0)), fconst(x, 0.0), b.fmul(x, log(b, y)))
    return b.select(is_nan(b, y), y, product)


def power(b, x, y):
    """x ** y like NumPy (C99 pow) for float32: a finite negative base needs an integer exponent; 1 ** y and
    (-1) ** ±inf are 1; -0.0 and -inf keep their sign for odd integer exponents."""
    absx = intrinsic(b, "fabs", [x])
    mag = b.select(b.fcmp_ordered("==", absx, fconst(x, 1.0)), fconst(x, 1.0),
                   exp(b, b.fmul(y, log(b, absx))))  # inf * log(1) would be NaN
    half = b.fmul(y, fconst(y, 0.5))
    is_int = b.fcmp_ordered("==", intrinsic(b, "rint", [y]), y)
    is_odd = b.and_(is_int, b.fcmp_unordered("!=", intrinsic(b, "rint", [half]), half))
    negative = b.icmp_signed("<", b.bitcast(x, like(x.type, I32)), const(like(x.type, I32), 0))  # -0.0 too
    finite_negative = b.and_(b.fcmp_ordered("<", x, fconst(x, 0.0)), b.fcmp_ordered(">", x, fconst(x, -math.inf)))
    signed = b.select(is_odd, b.fneg(mag), mag)
    fractional = b.select(finite_negative, fconst(x, math.nan), mag)
    out = b.select(negative, b.select(is_int, signed, fractional), mag)
    return b.select(b.fcmp_ordered("==", y, fconst(y, 0.0)), fconst(x, 1.0), out)


# ---- the elementwise vocabulary -------------------------------------------------------------


def relu(b, x):
    # `x < 0 ? 0 : x` keeps NaN like np.maximum and compiles to one max instruction.
    return b.select(b.fcmp_ordered("<", x, fconst(x, 0.0)), fconst(x, 0.0), x)


def leaky_relu(b, x, alpha: float):
    return b.select(b.fcmp_ordered(">", x, fconst(x, 0.0)), x, b.fmul(x, fconst(x, alpha)))


def elu(b, x, alpha: float):
    # min(x, 0) by `x < 0 or NaN ? x : 0`, so that a NaN goes through expm1 and comes out (np.minimum keeps it).
    neg = b.fmul(fconst(x, alpha), expm1(b, b.select(b.fcmp_unordered("<", x, fconst(x, 0.0)), x, fconst(x, 0.0))))
    return b.select(b.fcmp_ordered(">", x, fconst(x, 0.0)), x, neg)


def sign(b, x):
    pos = b.select(b.fcmp_ordered(">", x, fconst(x, 0.0)), fconst(x, 1.0), x)
    return b.select(b.fcmp_ordered("<", x, fconst(x, 0.0)), fconst(x, -1.0), pos)


def step(b, x):
    return mask_to_float(b, b.fcmp_ordered(">=", x, fconst(x, 0.0)), x.type)


def negate(b, x):
    return b.fneg(x) if is_float(x) else b.sub(const(x.type, 0), x)


def arith(b, float_op: str, int_op: str, x, y):
    """One of fadd/fsub/fmul for floats, add/sub/mul for ints."""
    return getattr(b, float_op if is_float(x) else int_op)(x, y)


def compare(b, op: str, x, y):
    """[x op y] as 0.0 / 1.0 in the operands' type."""
    return mask_to_float(b, b.fcmp_ordered(op, x, y), x.type)


def maximum(b, x, y):
    return intrinsic(b, "maximum", [x, y])


def minimum(b, x, y):
    return intrinsic(b, "minimum", [x, y])
