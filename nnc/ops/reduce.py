"""Reductions over axes: sum, mean, max (all axes by default, `keepdims` optional)."""

from __future__ import annotations

import numpy as np

from ..types import TensorType, normalize_axes, require_float
from .registry import REDUCE, defop


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _rule(name, *, needs_float):
    def rule(ts, axis=None, keepdims=False):
        t = ts[0]
        if needs_float:
            require_float(name, t)
        axes = normalize_axes(axis, t.rank, name)
        return TensorType(reduced_shape(t.shape, axes, keepdims), t.dtype)
    return rule


def _reducer(f):
    def ref(x, axis=None, keepdims=False):
        return np.asarray(f(x, axis=None if axis is None else tuple(axis), keepdims=keepdims), dtype=x.dtype)
    return ref


defop("sum", arity=1, groups={REDUCE}, shape=_rule("sum", needs_float=False), ref=_reducer(np.sum),
      doc="sum over axes", attrs=("axis", "keepdims"))
defop("mean", arity=1, groups={REDUCE}, shape=_rule("mean", needs_float=True), ref=_reducer(np.mean),
      doc="mean over axes", attrs=("axis", "keepdims"))
defop("max", arity=1, groups={REDUCE}, shape=_rule("max", needs_float=True), ref=_reducer(np.max),
      doc="maximum over axes", attrs=("axis", "keepdims"))
