"""Movement kernels that really move data: transpose, concat and strided_slice as strided copies,
and strided_slice_grad as zeros plus a strided copy (a slice is read in place by pointwise kernels).

(Reshape is a view and broadcast_to is pointwise; neither reaches here.)
Each copy walks a block in row-major order and reads the source and writes the
destination through per-dim strides (negative for a backward step), so one
generator serves them all.
"""

from __future__ import annotations

import math

from llvmlite import ir

from .. import llvmutil as u
from ..irmath import F32, I32
from ..kernel_context import contiguous_strides
from .pointwise import finish_epilogue


def _copy(kc, space, src, src_strides, src_base: int, dst_strides, dst_base: int, etype) -> None:
    b = kc.b

    def nest(index):
        d = len(index)
        if d == len(space):
            value = u.load(b, src, u.offset(b, list(zip(index, src_strides)), src_base), etype)
            u.store(b, value, kc.out, u.offset(b, list(zip(index, dst_strides)), dst_base))
            return
        with u.for_range(b, space[d], name=f"d{d}") as i:
            nest(index + [i])

    nest([])


def _etype(kc, n):
    return I32 if kc.dtype(n) == "int32" else F32


def emit_transpose(kc) -> None:
    x = kc.operand(0)
    perm = list(kc.attrs["perm"])
    in_strides = contiguous_strides(kc.shape(x))
    out_shape = kc.shape(kc.anchor)
    src_strides, dst_strides = [in_strides[p] for p in perm], contiguous_strides(out_shape)
    rank, W = len(perm), kc.width
    across = perm.index(rank - 1) if rank else None   # the output axis that runs along the input's rows
    if rank >= 2 and across != rank - 1 and W > 1 and out_shape[across] >= W and out_shape[-1] >= W:
        _tiled_copy(kc, out_shape, kc.ptr(x), src_strides, dst_strides, across)
    else:
        _copy(kc, out_shape, kc.ptr(x), src_strides, 0, dst_strides, 0, _etype(kc, x))
    finish_epilogue(kc)


def _tiled_copy(kc, space, src, src_strides, dst_strides, across: int) -> None:
    """The strided copy of a transpose whose innermost axis moves: W x W tiles transposed in registers
    (contiguous along the input's last axis `across` of the output, and along the output's last axis),
    the rows and columns past the last whole tile element by element."""
    b, W = kc.b, kc.width
    last = len(space) - 1
    full = {across: space[across] // W * W, last: space[last] // W * W}
    outer = [d for d in range(len(space)) if d not in full]

    def nest(index: dict, dims):
        if dims:
            with u.for_range(b, space[dims[0]], name=f"d{dims[0]}") as i:
                nest({**index, dims[0]: i}, dims[1:])
            return
        with u.for_range(b, full[across] // W, name="ta", vectorize=False) as ta, \
                u.for_range(b, full[last] // W, name="tl", vectorize=False) as tl:
            at = {**index, across: b.mul(ta, u.i64(W)), last: b.mul(tl, u.i64(W))}
            u.transpose_tile(b, src, u.offset(b, [(at[d], src_strides[d]) for d in at]), src_strides[last],
                             kc.out, u.offset(b, [(at[d], dst_strides[d]) for d in at]), dst_strides[across], W)

    nest({}, outer)
    etype = F32   # 32-bit elements either way: the copy keeps their bits
    for d in (across, last):   # what the tiles left: the tail of one axis over the whole of the other
        if full[d] == space[d]:
            continue
        rest = list(space)
        rest[d] = space[d] - full[d]
        if d == last and full[across] != space[across]:
            rest[across] = full[across]   # the corner was copied with the other tail
        _copy(kc, rest, src, src_strides, full[d] * src_strides[d], dst_strides, full[d] * dst_strides[d], etype)


def emit_strided_slice(kc) -> None:
    """out[k] = x[start + step·k] along every axis: the source read through its strides times the steps."""
    x = kc.operand(0)
    start, step = kc.attrs["start"], kc.attrs["step"]
    in_strides = contiguous_strides(kc.shape(x))
    out_shape = kc.shape(kc.anchor)
    _copy(kc, out_shape, kc.ptr(x), [s * k for s, k in zip(in_strides, step)],
          sum(s * a for s, a in zip(in_strides, start)), contiguous_strides(out_shape), 0, _etype(kc, x))
    finish_epilogue(kc)


def emit_strided_slice_grad(kc) -> None:
    """dx = 0, then dx[start + step·k] = dy[k]: the copy of strided_slice with source and destination swapped."""
    dy = kc.operand(0)
    etype = _etype(kc, dy)
    out_shape = kc.shape(kc.anchor)
    with u.for_range(kc.b, math.prod(out_shape), name="zero") as i:
        u.store(kc.b, ir.Constant(etype, 0), kc.out, i)
    out_strides = contiguous_strides(out_shape)
    start, step = kc.attrs["start"], kc.attrs["step"]
    _copy(kc, kc.shape(dy), kc.ptr(dy), contiguous_strides(kc.shape(dy)), 0,
          [s * k for s, k in zip(out_strides, step)], sum(s * a for s, a in zip(out_strides, start)), etype)
    finish_epilogue(kc)


def emit_concat(kc) -> None:
    out_shape = kc.shape(kc.anchor)
    axis = kc.attrs["axis"] % len(out_shape)
    out_strides = contiguous_strides(out_shape)
    start = 0
    for x in kc.g.operands(kc.anchor):
        shape = kc.shape(x)
        _copy(kc, shape, kc.ptr(x), contiguous_strides(shape), 0, out_strides, start * out_strides[axis],
              _etype(kc, x))
        start += shape[axis]
    finish_epilogue(kc)


def emit_reshape(kc) -> None:
    """Reshape is normally a view (fusion gives it its operand's storage); as a kernel it is a flat copy."""
    x = kc.operand(0)
    _copy(kc, [math.prod(kc.shape(x))], kc.ptr(x), [1], 0, [1], 0, _etype(kc, x))
    finish_epilogue(kc)
