"""Upsampling of NCHW planes, forward and backward, nearest or bilinear.

Each output position o along an axis reads one input (nearest: o / factor) or two
(bilinear, PyTorch's align_corners=False: the source (o + ½)/factor − ½, clamped
at 0, in float32 as PyTorch computes it, between its floor and the next input,
the last one repeated at the edge). The forward gathers those taps for every
output; the backward zeroes dx and scatter-adds each dy back along the same
taps and weights, so the two are each other's transpose exactly. The threads
share the N·C planes.
"""

from __future__ import annotations

from llvmlite import ir

from .. import llvmutil as u
from ..irmath import F32, I64
from .pointwise import PARALLEL_ELEMENTS, finish_epilogue


def _taps(b, o, size: int, factor: int, mode: str) -> list:
    """[(input index, weight or None for 1)] of output position `o` (an i64) along an axis of `size` inputs."""
    if mode == "nearest":
        return [(b.sdiv(o, u.i64(factor)), None)]
    zero = ir.Constant(F32, 0.0)
    src = b.fsub(b.fmul(b.fadd(b.sitofp(o, F32), ir.Constant(F32, 0.5)), ir.Constant(F32, 1.0 / factor)),
                 ir.Constant(F32, 0.5))
    src = b.select(b.fcmp_ordered("<", src, zero), zero, src)
    lo = b.fptosi(src, I64)
    nxt = b.add(lo, u.i64(1))
    hi = b.select(b.icmp_signed("<", nxt, u.i64(size)), nxt, u.i64(size - 1))
    frac = b.fsub(src, b.sitofp(lo, F32))
    return [(lo, b.fsub(ir.Constant(F32, 1.0), frac)), (hi, frac)]


def _scaled(b, value, weight):
    return value if weight is None else b.fmul(weight, value)


def _planes(kc, in_shape):
    """This thread's share [lo, hi) of the N·C planes (all of them when the output is small)."""
    n, c, h, w = in_shape
    factor = kc.attrs["factor"]
    if kc.threads > 1 and n * c * h * w * factor * factor >= PARALLEL_ELEMENTS:
        return kc.share(n * c)
    return 0, n * c


def _walk(kc, in_shape, planes, body) -> None:
    """body(input plane offset, output offset, row taps, column taps) for every output position of `planes`."""
    b = kc.b
    _, _, h, w = in_shape
    factor, mode = kc.attrs["factor"], kc.attrs.get("mode", "nearest")
    ho, wo = h * factor, w * factor
    with u.for_range(b, planes[1], start=planes[0], name="nc", vectorize=False) as plane:
        with u.for_range(b, ho, name="y", vectorize=False) as y:
            rows = _taps(b, y, h, factor, mode)
            with u.for_range(b, wo, name="x", vectorize=False) as x:
                cols = _taps(b, x, w, factor, mode)
                body(u.offset(b, [(plane, h * w)]), u.offset(b, [(plane, ho * wo), (y, wo), (x, 1)]), rows, cols)


def emit_upsample(kc) -> None:
    b = kc.b
    xnode = kc.operand(0)
    x, shape = kc.ptr(xnode), kc.shape(xnode)

    def body(plane, at, rows, cols):
        total = None
        for r, wr in rows:
            line = None
            for col, wc in cols:
                v = _scaled(b, u.load(b, x, b.add(plane, u.offset(b, [(r, shape[3]), (col, 1)]))), wc)
                line = v if line is None else b.fadd(line, v)
            line = _scaled(b, line, wr)
            total = line if total is None else b.fadd(total, line)
        u.store(b, total, kc.out, at)

    _walk(kc, shape, _planes(kc, shape), body)
    finish_epilogue(kc)


def emit_upsample_grad(kc) -> None:
    b = kc.b
    dy, shape = kc.ptr(kc.operand(0)), kc.shape(kc.anchor)

    def body(plane, at, rows, cols):
        g = u.load(b, dy, at)
        for r, wr in rows:
            gr = _scaled(b, g, wr)
            for col, wc in cols:
                pos = b.add(plane, u.offset(b, [(r, shape[3]), (col, 1)]))
                u.store(b, b.fadd(u.load(b, kc.out, pos), _scaled(b, gr, wc)), kc.out, pos)

    lo, hi = _planes(kc, shape)
    size = shape[2] * shape[3]
    with u.for_range(b, u.offset(b, [(hi, size)]), start=u.offset(b, [(lo, size)]), name="z", vectorize=False) as i:
        u.store(b, ir.Constant(F32, 0.0), kc.out, i)
    _walk(kc, shape, (lo, hi), body)
    finish_epilogue(kc)
