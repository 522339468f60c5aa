"""How each elementwise op computes one value in LLVM IR: the pointwise lowering table.

Every rule has one signature, `rule(b, xs, attrs) -> value`: an IR builder, the operand values (all
float32 or all int32, scalars or vectors of one width) and the node's concrete attributes. Fused
kernels evaluate prologues and epilogues with these rules, so one rule serves the scalar loop of an
elementwise kernel and the vector epilogue of a matmul. The math vocabulary is nnc/backend/irmath.py.
"""

from __future__ import annotations

from llvmlite import ir

from ..ir import ops
from . import irmath


def _libm(b, name: str, x):
    """The float32 C library function `name` (asinhf, erff, ...) of every lane of x: the functions LLVM has no
    intrinsic for, called once per lane (they do not vectorize, which only ONNX's rarer ops pay for)."""
    fn = b.module.globals.get(name)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(irmath.F32, [irmath.F32]), name)
    if not isinstance(x.type, ir.VectorType):
        return b.call(fn, [x])
    out = ir.Constant(x.type, ir.Undefined)
    for lane in range(x.type.count):
        at = ir.Constant(irmath.I32, lane)
        out = b.insert_element(out, b.call(fn, [b.extract_element(x, at)]), at)
    return out


# special.py's functions: an LLVM intrinsic where there is one (it becomes an instruction or a libm call), else libm
SPECIAL_LOWERING = {
    ops.floor: "floor", ops.ceil: "ceil", ops.round: "roundeven", ops.sin: "sin", ops.cos: "cos", ops.tan: "tan",
    ops.asin: "asin", ops.acos: "acos", ops.atan: "atan", ops.sinh: "sinh", ops.cosh: "cosh",
}
SPECIAL_LIBM = {ops.asinh: "asinhf", ops.acosh: "acoshf", ops.atanh: "atanhf", ops.erf: "erff"}


def _intrinsic_rule(name: str):
    return lambda b, xs, attrs: irmath.intrinsic(b, name, xs)


def _libm_rule(name: str):
    return lambda b, xs, attrs: _libm(b, name, xs[0])


POINTWISE = {
    ops.relu: lambda b, xs, attrs: irmath.relu(b, xs[0]),
    ops.leaky_relu: lambda b, xs, attrs: irmath.leaky_relu(b, xs[0], attrs.get("alpha", 0.01)),
    ops.elu: lambda b, xs, attrs: irmath.elu(b, xs[0], attrs.get("alpha", 1.0)),
    ops.softplus: lambda b, xs, attrs: irmath.softplus(b, xs[0], attrs.get("beta", 1.0), attrs.get("threshold", 20.0)),
    ops.sigmoid: lambda b, xs, attrs: irmath.sigmoid(b, xs[0]),
    ops.tanh: lambda b, xs, attrs: irmath.tanh(b, xs[0]),
    ops.exp: lambda b, xs, attrs: irmath.exp(b, xs[0]),
    ops.log: lambda b, xs, attrs: irmath.log(b, xs[0]),
    ops.sqrt: lambda b, xs, attrs: irmath.intrinsic(b, "sqrt", xs),
    ops.abs: lambda b, xs, attrs: irmath.intrinsic(b, "fabs", xs),
    ops.square: lambda b, xs, attrs: b.fmul(xs[0], xs[0]),
    ops.sign: lambda b, xs, attrs: irmath.sign(b, xs[0]),
    ops.step: lambda b, xs, attrs: irmath.step(b, xs[0]),
    ops.neg: lambda b, xs, attrs: irmath.negate(b, xs[0]),
    ops.identity: lambda b, xs, attrs: xs[0],
    ops.stop_gradient: lambda b, xs, attrs: xs[0],  # the value itself: only the gradient pass sees a difference
    ops.add: lambda b, xs, attrs: irmath.arith(b, "fadd", "add", *xs),
    ops.sub: lambda b, xs, attrs: irmath.arith(b, "fsub", "sub", *xs),
    ops.mul: lambda b, xs, attrs: irmath.arith(b, "fmul", "mul", *xs),
    ops.div: lambda b, xs, attrs: b.fdiv(*xs),
    ops.pow: lambda b, xs, attrs: irmath.power(b, *xs),
    ops.maximum: lambda b, xs, attrs: irmath.maximum(b, *xs),
    ops.minimum: lambda b, xs, attrs: irmath.minimum(b, *xs),
    ops.bce_logits: lambda b, xs, attrs: irmath.bce_logits(b, *xs),
    ops.xlogy: lambda b, xs, attrs: irmath.xlogy(b, *xs),
    ops.greater: lambda b, xs, attrs: irmath.compare(b, ">", *xs),
    ops.greater_equal: lambda b, xs, attrs: irmath.compare(b, ">=", *xs),
    ops.equal: lambda b, xs, attrs: irmath.compare(b, "==", *xs),
    ops.broadcast_to: lambda b, xs, attrs: xs[0],
    ops.where: lambda b, xs, attrs: b.select(b.fcmp_unordered("!=", xs[0], irmath.fconst(xs[0], 0.0)), xs[1], xs[2]),
    **{op: _intrinsic_rule(name) for op, name in SPECIAL_LOWERING.items()},
    **{op: _libm_rule(name) for op, name in SPECIAL_LIBM.items()},
}

# Ops a pointwise kernel reads in place, at their position in their operand's storage, instead of
# computing: a slice is its operand at an offset (KernelContext.read_strides). Fusion keeps their
# operands stored, so there is memory to read.
READ_IN_PLACE = frozenset({ops.slice})
