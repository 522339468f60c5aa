"""Elementwise primitives: unary math, arithmetic with broadcasting, comparisons.

Each op is a module-level name (`relu = unary(...)`) so that its gradient rule
and its LLVM lowering are attached right below its definition.
"""

from __future__ import annotations

import numpy as np

from ..types import TensorType, broadcast_all, require_float, result_dtype
from .registry import BINARY, COMPARE, ELEMENTWISE, UNARY, defop

# ---- shape rules -------------------------------------------------------------------


def _float_unary(name):
    def rule(ts, **attrs):
        require_float(name, ts[0])
        return ts[0]
    return rule


def _any_unary(ts, **attrs):
    return ts[0]


def _broadcast_rule(name, *, ints_ok: bool):
    def rule(ts, **attrs):
        dtype = result_dtype(ts, name)
        if not ints_ok:
            for i, t in enumerate(ts):
                require_float(name, t, operand=i, what=f"operand {i + 1}")
        return TensorType(broadcast_all(t.shape for t in ts), dtype)
    return rule


def unary(name, ref, doc, attrs=()):
    """A float elementwise op of one operand."""
    return defop(name, arity=1, groups={ELEMENTWISE, UNARY}, shape=_float_unary(name), ref=ref, doc=doc, attrs=attrs)


def binary(name, ref, doc, *, ints_ok=False, groups=()):
    """An elementwise op of two operands with NumPy broadcasting."""
    return defop(name, arity=2, groups={ELEMENTWISE, BINARY, *groups},
                 shape=_broadcast_rule(name, ints_ok=ints_ok), ref=ref, doc=doc)


def _same_dtype(f):
    return lambda *xs, **attrs: np.asarray(f(*xs, **attrs)).astype(xs[0].dtype, copy=False)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _mask(compare):
    """Comparisons yield 0.0 / 1.0 in the dtype of their operands."""
    return lambda a, b: compare(a, b).astype(np.result_type(a, b))


# ---- unary -----------------------------------------------------------------------------

relu = unary("relu", _same_dtype(lambda x: np.maximum(x, 0)), "max(x, 0)")
leaky_relu = unary("leaky_relu", _same_dtype(lambda x, alpha=0.01: np.where(x > 0, x, alpha * x)),
                   "x if x > 0 else alpha·x", attrs=("alpha",))
elu = unary("elu", _same_dtype(lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))),
            "x if x > 0 else alpha·(e^x − 1)", attrs=("alpha",))
sigmoid = unary("sigmoid", _same_dtype(_sigmoid), "1 / (1 + e^−x), stable for large |x|")
tanh = unary("tanh", np.tanh, "hyperbolic tangent")
exp = unary("exp", np.exp, "e^x")
log = unary("log", np.log, "natural logarithm")
sqrt = unary("sqrt", np.sqrt, "square root")
abs_ = unary("abs", np.abs, "|x|")
square = unary("square", np.square, "x²")
sign = unary("sign", np.sign, "−1, 0 or 1")
step = unary("step", _same_dtype(lambda x: x >= 0), "the perceptron's threshold: 1 if x >= 0 else 0")
neg = defop("neg", arity=1, groups={ELEMENTWISE, UNARY}, shape=_any_unary, ref=np.negative, doc="−x")

# The float functions users call by name, e.g. relu(x); leaky_relu and elu take alpha too.
UNARY_FLOAT = {op.name: (op.ref, op.doc) for op in (relu, sigmoid, tanh, exp, log, sqrt, abs_, square, sign, step)}

# ---- binary -----------------------------------------------------------------------------

add = binary("add", np.add, "a + b", ints_ok=True)
sub = binary("sub", np.subtract, "a − b", ints_ok=True)
mul = binary("mul", np.multiply, "a · b", ints_ok=True)
div = binary("div", np.divide, "a / b")
pow_ = binary("pow", np.power, "a ** b")
maximum = binary("maximum", np.maximum, "elementwise max(a, b)")
minimum = binary("minimum", np.minimum, "elementwise min(a, b)")

# ---- comparisons (0.0 / 1.0 masks used by gradient rules) ---------------------------------

greater = binary("greater", _mask(np.greater), "[a > b] as 0.0 / 1.0", groups={COMPARE})
greater_equal = binary("greater_equal", _mask(np.greater_equal), "[a >= b] as 0.0 / 1.0", groups={COMPARE})
equal = binary("equal", _mask(np.equal), "[a == b] as 0.0 / 1.0", groups={COMPARE})
