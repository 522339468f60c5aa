"""Movement kernels that really move data: transpose, slice, concat and strided_slice as strided copies,
and strided_slice_grad as zeros plus a strided copy.

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
    perm = kc.attrs["perm"]
    in_strides = contiguous_strides(kc.shape(x))
    out_shape = kc.shape(kc.anchor)
    _copy(kc, out_shape, kc.ptr(x), [in_strides[p] for p in perm], 0, contiguous_strides(out_shape), 0,
          _etype(kc, x))
    finish_epilogue(kc)


def emit_slice(kc) -> None:
    x = kc.operand(0)
    shape = kc.shape(x)
    axis = kc.attrs["axis"] % len(shape)
    in_strides = contiguous_strides(shape)
    out_shape = kc.shape(kc.anchor)
    _copy(kc, out_shape, kc.ptr(x), in_strides, kc.attrs["start"] * in_strides[axis],
          contiguous_strides(out_shape), 0, _etype(kc, x))
    finish_epilogue(kc)


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
