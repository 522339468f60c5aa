"""Elementwise primitives: unary math (softplus among it), stop_gradient, arithmetic with broadcasting, binary
cross-entropy from logits, xlogy, comparisons.

Each op is a module-level name (`relu = unary(...)`) so that its gradient rule
is attached right below its definition (its LLVM lowering is in nnc/backend/lower_pointwise.py).
"""

from __future__ import annotations

import numpy as np

from ..types import TensorType, broadcast_all, require_float, result_dtype
from .registry import BINARY, COMPARE, ELEMENTWISE, UNARY, VJP, defop, defvjp, nograd

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
        return TensorType(broadcast_all((t.shape for t in ts), name), dtype)
    return rule


def unary(name, ref, doc, attrs=()):
    """A float elementwise op of one operand."""
    return defop(name, arity=1, groups={ELEMENTWISE, UNARY}, shape=_float_unary(name), ref=ref, doc=doc, attrs=attrs)


def binary(name, ref, doc, *, ints_ok=False, groups=(), commutative=False):
    """An elementwise op of two operands with NumPy broadcasting."""
    return defop(name, arity=2, groups={ELEMENTWISE, BINARY, *groups},
                 shape=_broadcast_rule(name, ints_ok=ints_ok), ref=ref, doc=doc, commutative=commutative)


def _same_dtype(f):
    return lambda *xs, **attrs: np.asarray(f(*xs, **attrs)).astype(xs[0].dtype, copy=False)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _select(c, mask, a, b):
    """mask · a + (1 − mask) · b for a 0/1 mask, in backward nodes."""
    return c.add(c.mul(mask, a), c.mul(c.sub(c.const(1), mask), b))


def _mask(compare):
    """Comparisons yield 0.0 / 1.0 in the dtype of their operands."""
    return lambda a, b: compare(a, b).astype(np.result_type(a, b))


# ---- unary -----------------------------------------------------------------------------

relu = unary("relu", _same_dtype(lambda x: np.maximum(x, 0)), "max(x, 0)")
defvjp(relu, VJP("relu: dx = dy · [x > 0]", lambda c, dy: c.mul(dy, c.greater(c.x(0), c.const(0))),
                 partial="[{0} > 0]"))
leaky_relu = unary("leaky_relu", _same_dtype(lambda x, alpha=0.01: np.where(x > 0, x, alpha * x)),
                   "x if x > 0 else alpha·x", attrs=("alpha",))
defvjp(leaky_relu, VJP("leaky_relu: dx = dy · (x > 0 ? 1 : α)", lambda c, dy: c.mul(dy, c.add(
    c.mul(c.greater(c.x(0), c.const(0)), c.const(1 - c.attrs.get("alpha", 0.01))),
    c.const(c.attrs.get("alpha", 0.01)))), partial="({0} > 0 ? 1 : α)"))
elu = unary("elu", _same_dtype(lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))),
            "x if x > 0 else alpha·(e^x − 1)", attrs=("alpha",))
# α·eˣ, not y + α: that cancels, losing digits below x ≈ −7 and all of them below −17 in float32.
# e^min(x, 0) keeps the branch not taken finite (0 · inf would be NaN in _select).
defvjp(elu, VJP("elu: dx = dy · (x > 0 ? 1 : α·eˣ)", lambda c, dy: c.mul(dy, _select(
    c, c.greater(c.x(0), c.const(0)), c.const(1),
    c.mul(c.const(c.attrs.get("alpha", 1.0)), c.exp(c.minimum(c.x(0), c.const(0)))))),
    partial="({0} > 0 ? 1 : α·e^{0})"))


def _softplus(x, beta=1.0, threshold=20.0):
    z = x * beta
    return np.where(z > threshold, x, np.log1p(np.exp(np.minimum(z, threshold))) / beta)


# PyTorch's softplus: the identity where β·x > threshold, where log1p(e^βx)/β equals x to float precision.
softplus = unary("softplus", _same_dtype(_softplus), "log(1 + e^(β·x)) / β, x itself where β·x > threshold",
                 attrs=("beta", "threshold"))


def _softplus_vjp(c, dy):
    """dy · σ(β·x), and dy where β·x > threshold (the forward is x there), as PyTorch."""
    z = c.mul(c.x(0), c.const(c.attrs.get("beta", 1.0)))
    return c.mul(dy, _select(c, c.greater(z, c.const(c.attrs.get("threshold", 20.0))), c.const(1), c.sigmoid(z)))


defvjp(softplus, VJP("softplus: dx = dy · σ(β·x) (dy above the threshold)", _softplus_vjp,
                     partial="σ(β·{0})"))
sigmoid = unary("sigmoid", _same_dtype(_sigmoid), "1 / (1 + e^−x), stable for large |x|")
defvjp(sigmoid, VJP("sigmoid: dx = dy · σ(x)(1 − σ(x))",
                       lambda c, dy: c.mul(dy, c.mul(c.y, c.sub(c.const(1), c.y))), partial="{y}·(1 − {y})"))
tanh = unary("tanh", np.tanh, "hyperbolic tangent")
defvjp(tanh, VJP("tanh: dx = dy · (1 − tanh²(x))", lambda c, dy: c.mul(dy, c.sub(c.const(1), c.square(c.y))),
                 partial="1 − {y}²"))
exp = unary("exp", np.exp, "e^x")
defvjp(exp, VJP("exp: dx = dy · eˣ", lambda c, dy: c.mul(dy, c.y), partial="{y}"))
log = unary("log", np.log, "natural logarithm")
defvjp(log, VJP("log: dx = dy / x", lambda c, dy: c.div(dy, c.x(0)), partial="1/{0}"))  # inf at 0, as PyTorch
sqrt = unary("sqrt", np.sqrt, "square root")
defvjp(sqrt, VJP("sqrt: dx = dy / (2·√x)", lambda c, dy: c.div(dy, c.mul(c.const(2), c.y)),
                 partial="1/(2·{y})"))  # inf at 0, as PyTorch
abs_ = unary("abs", np.abs, "|x|")
defvjp(abs_, VJP("abs: dx = dy · sign(x)", lambda c, dy: c.mul(dy, c.sign(c.x(0))), partial="sign({0})"))
square = unary("square", np.square, "x²")
defvjp(square, VJP("square: dx = dy · 2x", lambda c, dy: c.mul(dy, c.mul(c.const(2), c.x(0))), partial="2·{0}"))
sign = unary("sign", np.sign, "−1, 0 or 1")
nograd(sign, "sign is piecewise constant: its derivative is 0 wherever it exists")
step = unary("step", _same_dtype(lambda x: x >= 0), "the perceptron's threshold: 1 if x >= 0 else 0")
nograd(step, "step is piecewise constant: its derivative is 0 wherever it exists")
neg = defop("neg", arity=1, groups={ELEMENTWISE, UNARY}, shape=_any_unary, ref=np.negative, doc="−x")
defvjp(neg, VJP("neg: dx = −dy", lambda c, dy: c.neg(dy), partial="−1"))
# The forward value unchanged, the gradient cut: nothing flows back to x through it, whatever x's other
# uses pass on. No rewrite removes it, so every gradient pass sees it; compiled, it is the value itself
# inside the loop it fuses into. Finite differences see the identity, so nnc/runtime/gradcheck.py holds
# its value fixed.
# A name given to a value as it is (`a2 = z2`): a node of its own so diagrams and explanations show the
# name the course writes; the simplifier removes it (identity(x) → x) before code is compiled.
identity = defop("identity", arity=1, groups={ELEMENTWISE, UNARY}, shape=_any_unary, ref=lambda x: x,
                 doc="x itself, under another name")
defvjp(identity, VJP("identity: dx = dy", lambda c, dy: dy, partial="1"))

stop_gradient = defop("stop_gradient", arity=1, groups={ELEMENTWISE, UNARY}, shape=_any_unary,
                      ref=lambda x: x, doc="x, with no gradient flowing back into x (PyTorch's detach)")
nograd(stop_gradient, "stop_gradient passes its value on as a constant: by definition no gradient flows into x")

# The float functions users call by name, e.g. relu(x); leaky_relu and elu take alpha too.
UNARY_FLOAT = (relu, sigmoid, tanh, exp, log, sqrt, abs_, square, sign, step)

# ---- binary -----------------------------------------------------------------------------

add = binary("add", np.add, "a + b", ints_ok=True, commutative=True)
defvjp(add, VJP("add: da = dy (add distributes)", lambda c, dy: dy, partial="1"),
       VJP("add: db = dy (add distributes)", lambda c, dy: dy, partial="1"))
sub = binary("sub", np.subtract, "a − b", ints_ok=True)
defvjp(sub, VJP("sub: da = dy", lambda c, dy: dy, partial="1"),
       VJP("sub: db = −dy", lambda c, dy: c.neg(dy), partial="−1"))
mul = binary("mul", np.multiply, "a · b", ints_ok=True, commutative=True)
defvjp(mul, VJP("mul: da = dy · b (mul switches)", lambda c, dy: c.mul(dy, c.x(1)), partial="{1}"),
       VJP("mul: db = dy · a (mul switches)", lambda c, dy: c.mul(dy, c.x(0)), partial="{0}"))
div = binary("div", np.divide, "a / b")
defvjp(div, VJP("div: da = dy / b", lambda c, dy: c.div(dy, c.x(1)), partial="1/{1}"),
       VJP("div: db = −dy · a / b²", lambda c, dy: c.neg(c.div(c.mul(dy, c.y), c.x(1))), partial="−{0}/{1}²"))
pow_ = binary("pow", np.power, "a ** b")


def _pow_da(c, dy):
    """dy · b · a^(b − 1), and 0 where b = 0 as PyTorch (0 · 0⁻¹ would be NaN at a = 0): the exponent
    b − 1 + [b = 0] is 0 there, so the power is 1; for a constant b it all folds to one number."""
    a, b = c.x(0), c.x(1)
    return c.mul(dy, c.mul(b, c.pow(a, c.add(c.sub(b, c.const(1)), c.equal(b, c.const(0))))))


def _pow_db(c, dy):
    """dy · aᵇ · ln a, and 0 where a = 0 and b ≥ 0 as PyTorch (0 · −inf would be NaN): ln is taken of
    a + [a = 0]·[b ≥ 0], which is ln 1 = 0 there and ln a everywhere else."""
    a, b = c.x(0), c.x(1)
    safe = c.add(a, c.mul(c.equal(a, c.const(0)), c.greater_equal(b, c.const(0))))
    return c.mul(dy, c.mul(c.y, c.log(safe)))


defvjp(pow_, VJP("pow: da = dy · b · a^(b−1) (0 where b = 0)", _pow_da, partial="{1}·{0}^({1}−1)"),
       VJP("pow: db = dy · aᵇ · ln a (0 where a = 0, b ≥ 0)", _pow_db, partial="{y}·ln {0}"))
maximum = binary("maximum", np.maximum, "elementwise max(a, b)", commutative=True)
defvjp(maximum, VJP("maximum: da = dy · [a ≥ b] (max routes)",
                          lambda c, dy: c.mul(dy, c.greater_equal(c.x(0), c.x(1))), partial="[{0} ≥ {1}]"),
       VJP("maximum: db = dy · [a < b] (max routes)", lambda c, dy: c.mul(dy, c.greater(c.x(1), c.x(0))),
           partial="[{0} < {1}]"))
minimum = binary("minimum", np.minimum, "elementwise min(a, b)", commutative=True)
defvjp(minimum, VJP("minimum: da = dy · [a ≤ b]", lambda c, dy: c.mul(dy, c.greater_equal(c.x(1), c.x(0))),
                    partial="[{0} ≤ {1}]"),
       VJP("minimum: db = dy · [a > b]", lambda c, dy: c.mul(dy, c.greater(c.x(0), c.x(1))), partial="[{0} > {1}]"))


def _bce_logits(z, t):
    # max(z, 0) − z·t first: at z = 17, t = 1 it is exactly 0 and log1p(e^−17) survives.
    return (np.maximum(z, 0) - z * t) + np.log1p(np.exp(-np.abs(z)))


bce_logits = binary("bce_logits", _bce_logits,
                    "sigmoid cross-entropy of logit a and target b: max(a, 0) − a·b + log(1 + e^−|a|)")
defvjp(bce_logits, VJP("binary_cross_entropy: dz = dy · (σ(z) − t)",
                       lambda c, dy: c.mul(dy, c.sub(c.sigmoid(c.x(0)), c.x(1))), partial="σ({0}) − {1}"),
       VJP("binary_cross_entropy: dt = −dy · z", lambda c, dy: c.neg(c.mul(dy, c.x(0))), partial="−{0}"))


def _xlogy(x, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        product = x * np.log(y)
    return np.where(np.isnan(y), y, np.where(x == 0, np.zeros((), product.dtype), product))


# torch.xlogy: 0 where x = 0 (unless y is NaN), so Σ p·log p of a one-hot p is 0 rather than 0·(−inf) = NaN.
xlogy = binary("xlogy", _same_dtype(_xlogy), "a · log(b), 0 where a = 0 (NaN where b is)")
defvjp(xlogy, VJP("xlogy: da = dy · log b", lambda c, dy: c.mul(dy, c.log(c.x(1))), partial="ln {1}"),
       VJP("xlogy: db = dy · a / b", lambda c, dy: c.mul(dy, c.div(c.x(0), c.x(1))), partial="{0}/{1}"))

# ---- comparisons (0.0 / 1.0 masks used by gradient rules) ---------------------------------

greater = binary("greater", _mask(np.greater), "[a > b] as 0.0 / 1.0", groups={COMPARE})
nograd(greater, "a comparison is piecewise constant")
greater_equal = binary("greater_equal", _mask(np.greater_equal), "[a >= b] as 0.0 / 1.0", groups={COMPARE})
nograd(greater_equal, "a comparison is piecewise constant")
equal = binary("equal", _mask(np.equal), "[a == b] as 0.0 / 1.0", groups={COMPARE}, commutative=True)
nograd(equal, "a comparison is piecewise constant")

# ---- choice -------------------------------------------------------------------------------------------


def _where_rule(ts, **attrs):
    for i, t in enumerate(ts):
        require_float("where", t, operand=i, what=("condition", "operand 2", "operand 3")[i])
    return TensorType(broadcast_all((t.shape for t in ts), "where"), result_dtype(ts, "where"))


def _where(c, a, b):
    return np.where(c != 0, a, b).astype(np.result_type(c, a, b), copy=False)


# a where c ≠ 0, else b: a choice, so an infinity or NaN in the branch not taken stays out (c·a + (1 − c)·b
# would give NaN there). The condition is a 0/1 mask (a comparison's), so it gets no gradient.
where = defop("where", arity=3, groups={ELEMENTWISE}, shape=_where_rule, ref=_where,
              doc="a where the condition is not 0, else b, broadcasting the three")
defvjp(where, None,
       VJP("where: da = dy where c ≠ 0", lambda c, dy: c.mul(dy, c.sub(c.const(1), c.equal(c.x(0), c.const(0)))),
           partial="[{0} ≠ 0]"),
       VJP("where: db = dy where c = 0", lambda c, dy: c.mul(dy, c.equal(c.x(0), c.const(0))), partial="[{0} = 0]"))
