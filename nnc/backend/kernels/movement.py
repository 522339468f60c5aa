"""Movement kernels that really move data: transpose, slice and concat as strided copies.

(Reshape is a view and broadcast_to is pointwise; neither reaches here.)
Each copy walks a block in the output's row-major order and reads the source
through per-dim strides, so one generator serves all three.
"""

from __future__ import annotations

import math

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
