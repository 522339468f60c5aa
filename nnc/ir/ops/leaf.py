"""Leaf primitives: model inputs, parameters (trainable or running state) and constants.

Their type is fixed when they are created (attr `type`); the interpreter and the
backend supply their values (`value=`) rather than computing them.
"""

from __future__ import annotations

import math

import numpy as np

from .registry import CONSTANT, LEAF, defop, defvjp


def _declared(ts, *, type, **attrs):
    return type


def _fed(*, value, **attrs):
    return value


def _const(*, value, type, **attrs):
    return np.asarray(value)


input_ = defop("input", arity=0, groups={LEAF}, shape=_declared, ref=_fed,
      doc="a model input, fed by name", attrs=("name", "type"))
param = defop("param", arity=0, groups={LEAF}, shape=_declared, ref=_fed,
      doc="a parameter (trainable) or running statistic (trainable=False)",
      attrs=("name", "type", "init", "trainable"))
const = defop("const", arity=0, groups={LEAF, CONSTANT}, shape=_declared, ref=_const,
      doc="a constant folded into the graph", attrs=("value", "type"))
count = defop("count", arity=0, groups={LEAF, CONSTANT}, shape=_declared,
              ref=lambda *, dims: np.asarray(math.prod(dims)),
              doc="the number of elements spanned by dims (symbolic dims resolved at run time)", attrs=("dims", "type"))

for _leaf in (input_, param, const, count):
    defvjp(_leaf)  # no operands, so no rules: gradients stop here
