"""Rows picked by int ids (`take`, the embedding lookup) and their gradient (`scatter_add`), as row copies.

Each id is checked before its row is touched: an id outside [0, rows) makes the kernel return the
label status (nnc/backend/kernel_context.py), which the executable reports with the input and the
position at fault. Both run on one thread: the check needs a serial kernel, and scatter_add's rows
may collide. The epilogue, if any, is applied to the stored result afterwards.
"""

from __future__ import annotations

import math

from llvmlite import ir

from .. import llvmutil as u
from ..irmath import F32, I32, I64
from ..kernel_context import STATUS_BAD_LABEL
from .pointwise import finish_epilogue


def _checked_id(kc, ids, r, rows: int):
    """The id at flat position r, as an i64 row offset's factor, after checking it is below `rows`."""
    b = kc.b
    value = u.load(b, ids, r, I32)
    ok = b.and_(b.icmp_signed(">=", value, ir.Constant(I32, 0)), b.icmp_signed("<", value, ir.Constant(I32, rows)))
    kc.check(ok, STATUS_BAD_LABEL)
    return b.sext(value, I64)


def _etype(kc, n):
    return I32 if kc.dtype(n) == "int32" else F32


def emit_take(kc) -> None:
    """out[r, :] = table[ids[r], :] for every flat position r of the ids."""
    b = kc.b
    table, ids = kc.operand(0), kc.operand(1)
    table_shape = kc.shape(table)
    width = math.prod(table_shape[1:])
    src, dst, id_ptr = kc.ptr(table), kc.out, kc.ptr(ids)
    etype = _etype(kc, table)
    with u.for_range(b, math.prod(kc.shape(ids)), name="r", vectorize=False) as r:
        row = _checked_id(kc, id_ptr, r, table_shape[0])
        with u.for_range(b, width, name="c") as c:
            value = u.load(b, src, u.offset(b, [(row, width), (c, 1)]), etype)
            u.store(b, value, dst, u.offset(b, [(r, width), (c, 1)]))
    finish_epilogue(kc)


def emit_scatter_add(kc) -> None:
    """out = 0, then out[ids[r], :] += values[r, :] for every flat position r of the ids."""
    b = kc.b
    values, ids = kc.operand(0), kc.operand(1)
    out_shape = kc.shape(kc.anchor)
    width = math.prod(out_shape[1:])
    src, dst, id_ptr = kc.ptr(values), kc.out, kc.ptr(ids)
    with u.for_range(b, math.prod(out_shape), name="z") as i:
        u.store(b, ir.Constant(F32, 0.0), dst, i)
    with u.for_range(b, math.prod(kc.shape(ids)), name="r", vectorize=False) as r:
        row = _checked_id(kc, id_ptr, r, out_shape[0])
        with u.for_range(b, width, name="c") as c:
            at = u.offset(b, [(row, width), (c, 1)])
            u.store(b, b.fadd(u.load(b, dst, at), u.load(b, src, u.offset(b, [(r, width), (c, 1)]))), dst, at)
    finish_epilogue(kc)
