"""Reductions over axes: sum, mean, max, prod (all axes by default, `keepdims` optional)."""

from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..types import TensorType, normalize_axes, require_float
from .registry import REDUCE, VJP, defop, defvjp


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
        axis = None if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
        return np.asarray(f(x, axis=axis, keepdims=keepdims), dtype=x.dtype)
    return ref


def _canon(ts, attrs):
    """axis as a sorted tuple of non-negative axes (None: all of them); keepdims a bool."""
    rank = ts[0].rank
    try:
        attrs["axis"] = normalize_axes(attrs.get("axis"), rank, "reduce")
    except ShapeError:  # reported by the shape rule, with the user's location
        return attrs
    attrs["keepdims"] = bool(attrs.get("keepdims", False))
    return attrs


sum_ = defop("sum", arity=1, groups={REDUCE}, shape=_rule("sum", needs_float=False), ref=_reducer(np.sum),
      doc="sum over axes", attrs=("axis", "keepdims"),
      canon=_canon)
mean = defop("mean", arity=1, groups={REDUCE}, shape=_rule("mean", needs_float=True), ref=_reducer(np.mean),
      doc="mean over axes", attrs=("axis", "keepdims"),
      canon=_canon)
max_ = defop("max", arity=1, groups={REDUCE}, shape=_rule("max", needs_float=True), ref=_reducer(np.max),
      doc="maximum over axes", attrs=("axis", "keepdims"),
      canon=_canon)


def _axes(c):
    return normalize_axes(c.attrs.get("axis"), c.type(c.x(0)).rank, "reduce")


def _reduced_dims(c):
    shape = c.shape(c.x(0))
    return tuple(shape[a] for a in _axes(c))


defvjp(sum_, VJP("sum: dx = dy broadcast back over the summed axes",
                 lambda c, dy: c.expand(dy, c.shape(c.x(0)), _axes(c))))
defvjp(mean, VJP("mean: dx = dy / n broadcast back over the averaged axes",
                 lambda c, dy: c.div(c.expand(dy, c.shape(c.x(0)), _axes(c)), c.count(_reduced_dims(c)))))


def _max_vjp(c, dy):
    """The gradient goes to the maxima, shared evenly between ties."""
    shape, axes = c.shape(c.x(0)), _axes(c)
    hits = c.equal(c.x(0), c.expand(c.y, shape, axes))
    ties = c.expand(c.sum(hits, axis=axes, keepdims=True), shape, axes)
    return c.mul(c.expand(dy, shape, axes), c.div(hits, ties))


defvjp(max_, VJP("max: dx = dy at the maximum (max routes)", _max_vjp))

prod = defop("prod", arity=1, groups={REDUCE}, shape=_rule("prod", needs_float=True), ref=_reducer(np.prod),
             doc="product over axes", attrs=("axis", "keepdims"), canon=_canon)


def _prod_vjp(c, dy):
    """dy times the product of the other entries, exactly as PyTorch: y / x where no entry is 0; where one is,
    the product of the rest at that entry and 0 elsewhere; where two or more are, 0 (a choice, never 0 / 0)."""
    shape, axes, x = c.shape(c.x(0)), _axes(c), c.x(0)
    zero = c.equal(x, c.const(0))
    zeros = c.expand(c.sum(zero, axis=axes, keepdims=True), shape, axes)
    rest = c.expand(c.prod(c.where(zero, c.const(1), x), axis=axes, keepdims=True), shape, axes)
    one_zero = c.mul(zero, c.mul(c.equal(zeros, c.const(1)), rest))
    others = c.where(c.equal(zeros, c.const(0)), c.div(rest, x), one_zero)
    return c.mul(c.expand(dy, shape, axes), others)


defvjp(prod, VJP("prod: dx = dy · the product of the other entries", _prod_vjp))
