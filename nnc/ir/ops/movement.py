"""Movement primitives: reshape, transpose, broadcast_to, concat, slice, and strided_slice (x[...]) with
strided_slice_grad, its gradient: the values put back at their positions among zeros."""

from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..types import TensorType, broadcast_shapes, format_shape, normalize_axis, reshape_target, result_dtype
from .registry import EXPAND, MOVEMENT, VIEW, VJP, defop, defvjp


def _reshape(ts, *, shape):
    return TensorType(reshape_target(ts[0].shape, tuple(shape)), ts[0].dtype)


def _transpose(ts, *, perm):
    t = ts[0]
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(f"transpose: perm {list(perm)} is not a permutation of the {t.rank} axes of "
                         f"{format_shape(t.shape)}")
    return TensorType(tuple(t.shape[p] for p in perm), t.dtype)


def _broadcast_to(ts, *, shape):
    t = ts[0]
    shape = tuple(shape)
    if broadcast_shapes(t.shape, shape, "broadcast_to") != shape:
        raise ShapeError(f"broadcast_to: cannot broadcast {format_shape(t.shape)} to {format_shape(shape)}")
    return TensorType(shape, t.dtype)


def _concat(ts, *, axis):
    if not ts:
        raise ShapeError("concat: needs at least one tensor")
    first = ts[0]
    ax = normalize_axis(axis, first.rank, "concat")
    dtype = result_dtype(ts, "concat")
    total = 0
    for i, t in enumerate(ts):
        if t.rank != first.rank or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != ax):
            raise ShapeError(f"concat: tensor {i + 1} has shape {format_shape(t.shape)}, expected "
                             f"{format_shape(first.shape)} except along axis {axis}", operand=i)
        if not isinstance(t.shape[ax], int):
            raise ShapeError(f"concat: cannot concatenate along the symbolic dim {t.shape[ax]}", operand=i)
        total += t.shape[ax]
    return TensorType(first.shape[:ax] + (total,) + first.shape[ax + 1:], dtype)


def _slice(ts, *, axis, start, stop):
    t = ts[0]
    ax = normalize_axis(axis, t.rank, "slice")
    size = t.shape[ax]
    if not isinstance(size, int) or not 0 <= start < stop <= size:
        raise ShapeError(f"slice: [{start}:{stop}] is out of range for axis {axis} of {format_shape(t.shape)}")
    return TensorType(t.shape[:ax] + (stop - start,) + t.shape[ax + 1:], t.dtype)


def _slice_ref(x, *, axis, start, stop):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _check_strides(op: str, full: tuple, start, step, shape) -> None:
    """Positions start + step·k, k < shape[i], must lie inside axis i of `full`; a symbolic axis is taken whole."""
    if not len(start) == len(step) == len(shape) == len(full):
        raise ShapeError(f"{op}: start {list(start)}, step {list(step)} and shape {format_shape(shape)} need one "
                         f"entry per axis of {format_shape(full)}", operand=0)
    for axis, (dim, first, stride, size) in enumerate(zip(full, start, step, shape)):
        if isinstance(dim, str) or isinstance(size, str):
            if (dim, first, stride) != (size, 0, 1):
                raise ShapeError(f"{op}: axis {axis} of {format_shape(full)} is the symbolic dim {dim}, which can "
                                 f"only be taken whole", operand=0)
            continue
        last = first + stride * (size - 1)
        if size < 1 or stride == 0 or not (0 <= first < dim and 0 <= last < dim):
            raise ShapeError(f"{op}: positions {first}, {first + stride}, ... ({size} of them) are out of range for "
                             f"axis {axis} of {format_shape(full)}", operand=0)


def _strided_slice(ts, *, start, step, shape):
    _check_strides("strided_slice", ts[0].shape, start, step, shape)
    return TensorType(tuple(shape), ts[0].dtype)


def _strided_slice_grad(ts, *, start, step, in_shape):
    _check_strides("strided_slice_grad", tuple(in_shape), start, step, ts[0].shape)
    return TensorType(tuple(in_shape), ts[0].dtype)


def _strided_index(start, step, shape) -> tuple:
    """The Python slices that take positions start + step·k, k < shape[i], of each axis."""
    return tuple(slice(first, first + stride * size if first + stride * size >= 0 else None, stride)
                 for first, stride, size in zip(start, step, shape))


def _strided_slice_grad_ref(dy, *, start, step, in_shape):
    dx = np.zeros(in_shape, dtype=dy.dtype)
    dx[_strided_index(start, step, dy.shape)] = dy
    return dx


reshape = defop("reshape", arity=1, groups={MOVEMENT, VIEW}, shape=_reshape,
      ref=lambda x, *, shape: np.reshape(x, shape), doc="same elements, new shape", attrs=("shape",))
transpose = defop("transpose", arity=1, groups={MOVEMENT}, shape=_transpose,
      ref=lambda x, *, perm: np.array(np.transpose(x, perm), order="C"), doc="permute axes", attrs=("perm",))
# np.array(..., order="C") rather than np.ascontiguousarray, which turns a scalar into shape [1]
broadcast_to = defop("broadcast_to", arity=1, groups={MOVEMENT, EXPAND}, shape=_broadcast_to,
      ref=lambda x, *, shape: np.array(np.broadcast_to(x, shape), order="C"),
      doc="repeat along broadcast axes", attrs=("shape",))
# Pointwise: the fused loop already reads x at the broadcast index, so the value passes through.
concat = defop("concat", arity=None, groups={MOVEMENT}, shape=_concat,
      ref=lambda *xs, axis: np.concatenate(xs, axis=axis),
      doc="join tensors along an axis", attrs=("axis",))
slice_ = defop("slice", arity=1, groups={MOVEMENT}, shape=_slice, ref=_slice_ref,
      doc="x[start:stop] along one axis", attrs=("axis", "start", "stop"))
strided_slice = defop("strided_slice", arity=1, groups={MOVEMENT}, shape=_strided_slice,
      ref=lambda x, *, start, step, shape: np.array(x[_strided_index(start, step, shape)], order="C"),
      doc="x at positions start + step·k along each axis (x[a:b:c, ...]; a negative step walks backwards)",
      attrs=("start", "step", "shape"))
strided_slice_grad = defop("strided_slice_grad", arity=1, groups={MOVEMENT}, shape=_strided_slice_grad,
      ref=_strided_slice_grad_ref, doc="dx of strided_slice: dy at the positions it took, zeros elsewhere",
      attrs=("start", "step", "in_shape"))


def _inverse(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _concat_vjp(c, dy):
    axis = c.attrs["axis"] % c.type(c.y).rank
    start = sum(c.shape(c.x(i))[axis] for i in range(c.index))
    return c.slice(dy, axis=axis, start=start, stop=start + c.shape(c.x(c.index))[axis])


def _slice_vjp(c, dy):
    """Pad dy with zeros back to the input's extent along the sliced axis."""
    shape, axis = c.shape(c.x(0)), c.attrs["axis"] % c.type(c.x(0)).rank
    start, stop = c.attrs["start"], c.attrs["stop"]
    pieces = []
    for lo, hi in ((0, start), (stop, shape[axis])):
        if hi > lo:
            pieces.append(c.broadcast_to(c.const(0), shape=shape[:axis] + (hi - lo,) + shape[axis + 1:]))
    if not pieces:
        return dy
    return c.concat(*([pieces[0], dy] + pieces[1:] if start > 0 else [dy] + pieces), axis=axis)


defvjp(reshape, VJP("reshape: dx = dy reshaped back", lambda c, dy: c.reshape(dy, shape=c.shape(c.x(0)))))
defvjp(transpose, VJP("transpose: dx = dy with the inverse permutation",
                      lambda c, dy: c.transpose(dy, perm=_inverse(c.attrs["perm"]))))
defvjp(broadcast_to, VJP("broadcast_to: dx = dy summed over the broadcast axes", lambda c, dy: dy))
defvjp(concat, VJP("concat: dx_i = dy sliced at x_i's place", _concat_vjp))
defvjp(slice_, VJP("slice: dx = dy padded with zeros", _slice_vjp))
defvjp(strided_slice, VJP("index: dx = dy at the positions taken, zeros elsewhere",
                          lambda c, dy: c.strided_slice_grad(dy, start=c.attrs["start"], step=c.attrs["step"],
                                                             in_shape=c.shape(c.x(0)))))
defvjp(strided_slice_grad, VJP("strided_slice_grad: d dy = the same positions taken from the gradient",
                               lambda c, g: c.strided_slice(g, start=c.attrs["start"], step=c.attrs["step"],
                                                            shape=c.shape(c.x(0)))))
