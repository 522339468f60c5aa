"""Float functions beyond the activations: rounding (floor, ceil, round), the trigonometric and hyperbolic
functions and their inverses, and the error function erf.

They are what ONNX models (and the ONNX operator tests) use around the layers: positional encodings (sin, cos),
the exact GELU (erf), quantization-style rounding. Each is a float elementwise op of one operand, lowered in
nnc/backend/lower_pointwise.py; rounding is piecewise constant, so its gradient is 0 where it exists.
"""

from __future__ import annotations

import math

import numpy as np

from .elementwise import unary
from .registry import VJP, defvjp, nograd


def _erf(x):
    # math.erf is exact to the last bit in double; NumPy has no erf of its own.
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype, copy=False)


floor = unary("floor", np.floor, "the largest integer ≤ x")
nograd(floor, "floor is piecewise constant: its derivative is 0 wherever it exists")
ceil = unary("ceil", np.ceil, "the smallest integer ≥ x")
nograd(ceil, "ceil is piecewise constant: its derivative is 0 wherever it exists")
round_ = unary("round", np.round, "the nearest integer, halves to even (2.5 → 2), as NumPy, PyTorch and ONNX")
nograd(round_, "round is piecewise constant: its derivative is 0 wherever it exists")

sin = unary("sin", np.sin, "sine")
cos = unary("cos", np.cos, "cosine")
tan = unary("tan", np.tan, "tangent")
defvjp(sin, VJP("sin: dx = dy · cos x", lambda c, dy: c.mul(dy, c.cos(c.x(0))), partial="cos {0}"))
defvjp(cos, VJP("cos: dx = −dy · sin x", lambda c, dy: c.neg(c.mul(dy, c.sin(c.x(0)))), partial="−sin {0}"))
defvjp(tan, VJP("tan: dx = dy · (1 + tan² x)", lambda c, dy: c.mul(dy, c.add(c.const(1), c.square(c.y))),
                partial="1 + {y}²"))

asin = unary("asin", np.arcsin, "inverse sine, in [−π/2, π/2]; NaN outside [−1, 1]")
acos = unary("acos", np.arccos, "inverse cosine, in [0, π]; NaN outside [−1, 1]")
atan = unary("atan", np.arctan, "inverse tangent, in (−π/2, π/2)")


def _inv_sqrt(c, value):
    return c.div(c.const(1), c.sqrt(value))


defvjp(asin, VJP("asin: dx = dy / √(1 − x²)",
                 lambda c, dy: c.mul(dy, _inv_sqrt(c, c.sub(c.const(1), c.square(c.x(0))))),
                 partial="1/√(1 − {0}²)"))
defvjp(acos, VJP("acos: dx = −dy / √(1 − x²)",
                 lambda c, dy: c.neg(c.mul(dy, _inv_sqrt(c, c.sub(c.const(1), c.square(c.x(0)))))),
                 partial="−1/√(1 − {0}²)"))
defvjp(atan, VJP("atan: dx = dy / (1 + x²)", lambda c, dy: c.div(dy, c.add(c.const(1), c.square(c.x(0)))),
                 partial="1/(1 + {0}²)"))

sinh = unary("sinh", np.sinh, "hyperbolic sine")
cosh = unary("cosh", np.cosh, "hyperbolic cosine")
defvjp(sinh, VJP("sinh: dx = dy · cosh x", lambda c, dy: c.mul(dy, c.cosh(c.x(0))), partial="cosh {0}"))
defvjp(cosh, VJP("cosh: dx = dy · sinh x", lambda c, dy: c.mul(dy, c.sinh(c.x(0))), partial="sinh {0}"))

asinh = unary("asinh", np.arcsinh, "inverse hyperbolic sine")
acosh = unary("acosh", np.arccosh, "inverse hyperbolic cosine; NaN below 1")
atanh = unary("atanh", np.arctanh, "inverse hyperbolic tangent; NaN outside [−1, 1]")
defvjp(asinh, VJP("asinh: dx = dy / √(x² + 1)",
                  lambda c, dy: c.mul(dy, _inv_sqrt(c, c.add(c.square(c.x(0)), c.const(1)))),
                  partial="1/√({0}² + 1)"))
defvjp(acosh, VJP("acosh: dx = dy / √(x² − 1)",
                  lambda c, dy: c.mul(dy, _inv_sqrt(c, c.sub(c.square(c.x(0)), c.const(1)))),
                  partial="1/√({0}² − 1)"))
defvjp(atanh, VJP("atanh: dx = dy / (1 − x²)", lambda c, dy: c.div(dy, c.sub(c.const(1), c.square(c.x(0)))),
                  partial="1/(1 − {0}²)"))

erf = unary("erf", _erf, "the error function (2/√π)·∫₀ˣ e^(−t²) dt")
defvjp(erf, VJP("erf: dx = dy · (2/√π)·e^(−x²)", lambda c, dy: c.mul(dy, c.mul(
    c.const(2 / math.sqrt(math.pi)), c.exp(c.neg(c.square(c.x(0)))))), partial="(2/√π)·e^(−{0}²)"))

# The functions users call by name, each of one tensor: sin(x), floor(x), erf(x).
SPECIAL = (floor, ceil, round_, sin, cos, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh, erf)
