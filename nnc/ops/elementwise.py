"""Elementwise primitives: unary math, arithmetic with broadcasting, comparisons."""

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


# ---- references ---------------------------------------------------------------------


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


def _leaky_relu(x, alpha=0.01):
    return np.where(x > 0, x, alpha * x).astype(x.dtype, copy=False)


def _mask(compare):
    """Comparisons yield 0.0 / 1.0 in the dtype of their operands."""
    return lambda a, b: compare(a, b).astype(np.result_type(a, b))


# ---- unary ---------------------------------------------------------------------------

UNARY_FLOAT = {
    # name: (reference, doc)
    "relu": (lambda x: np.maximum(x, 0).astype(x.dtype, copy=False), "max(x, 0)"),
    "sigmoid": (_sigmoid, "1 / (1 + e^-x), stable for large |x|"),
    "tanh": (np.tanh, "hyperbolic tangent"),
    "exp": (np.exp, "e^x"),
    "log": (np.log, "natural logarithm"),
    "sqrt": (np.sqrt, "square root"),
    "abs": (np.abs, "|x|"),
    "square": (np.square, "x²"),
    "sign": (np.sign, "-1, 0 or 1"),
    "step": (lambda x: (x >= 0).astype(x.dtype), "the perceptron's threshold: 1 if x >= 0 else 0"),
}

for _name, (_ref, _doc) in UNARY_FLOAT.items():
    defop(_name, arity=1, groups={ELEMENTWISE, UNARY}, shape=_float_unary(_name), ref=_ref, doc=_doc)

defop("leaky_relu", arity=1, groups={ELEMENTWISE, UNARY}, shape=_float_unary("leaky_relu"),
      ref=_leaky_relu, doc="x if x > 0 else alpha·x", attrs=("alpha",))
defop("elu", arity=1, groups={ELEMENTWISE, UNARY}, shape=_float_unary("elu"),
      ref=_elu, doc="x if x > 0 else alpha·(e^x − 1)", attrs=("alpha",))
defop("neg", arity=1, groups={ELEMENTWISE, UNARY}, shape=_any_unary, ref=np.negative, doc="−x")

# ---- binary ----------------------------------------------------------------------------

defop("add", arity=2, groups={ELEMENTWISE, BINARY}, shape=_broadcast_rule("add", ints_ok=True),
      ref=np.add, doc="a + b")
defop("sub", arity=2, groups={ELEMENTWISE, BINARY}, shape=_broadcast_rule("sub", ints_ok=True),
      ref=np.subtract, doc="a − b")
defop("mul", arity=2, groups={ELEMENTWISE, BINARY}, shape=_broadcast_rule("mul", ints_ok=True),
      ref=np.multiply, doc="a · b")
defop("div", arity=2, groups={ELEMENTWISE, BINARY}, shape=_broadcast_rule("div", ints_ok=False),
      ref=np.divide, doc="a / b")
defop("pow", arity=2, groups={ELEMENTWISE, BINARY}, shape=_broadcast_rule("pow", ints_ok=False),
      ref=np.power, doc="a ** b")
defop("maximum", arity=2, groups={ELEMENTWISE, BINARY}, shape=_broadcast_rule("maximum", ints_ok=False),
      ref=np.maximum, doc="elementwise max(a, b)")
defop("minimum", arity=2, groups={ELEMENTWISE, BINARY}, shape=_broadcast_rule("minimum", ints_ok=False),
      ref=np.minimum, doc="elementwise min(a, b)")

# ---- comparisons (0.0 / 1.0 masks used by gradient rules) ------------------------------

defop("greater", arity=2, groups={ELEMENTWISE, BINARY, COMPARE}, shape=_broadcast_rule("greater", ints_ok=False),
      ref=_mask(np.greater), doc="[a > b] as 0.0 / 1.0")
defop("greater_equal", arity=2, groups={ELEMENTWISE, BINARY, COMPARE},
      shape=_broadcast_rule("greater_equal", ints_ok=False),
      ref=_mask(np.greater_equal), doc="[a >= b] as 0.0 / 1.0")
defop("equal", arity=2, groups={ELEMENTWISE, BINARY, COMPARE}, shape=_broadcast_rule("equal", ints_ok=False),
      ref=_mask(np.equal), doc="[a == b] as 0.0 / 1.0")
