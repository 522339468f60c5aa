"""Max and average pooling over NCHW windows, forward and backward.

Windows never leave the input (no padding; the output size rounds down), so
every window position is a compile-time offset from its corner. The backward
forms zero dx and scatter-add into it, so overlapping windows sum correctly;
maxpool routes each window's gradient to the first position of its maximum,
like the reference.
"""

from __future__ import annotations

from llvmlite import ir

from .. import irmath as m, llvmutil as u
from ..irmath import F32
from .pointwise import finish_epilogue

PARALLEL_PLANES = 64   # fewer planes (images x channels) run on one thread


def _planes(kc, shape):
    """This thread's share [lo, hi) of the N·C planes of `shape`."""
    n, c = shape[0], shape[1]
    if kc.threads > 1 and n * c >= PARALLEL_PLANES:
        return kc.share(n * c)
    return 0, n * c


def _windows(kc, x_shape, out_shape, body) -> None:
    """Call body(corner offset into x, offset into the output) for every window of this thread's planes."""
    b = kc.b
    _, _, h, w = x_shape
    n, c, ho, wo = out_shape
    stride = kc.attrs["stride"]
    lo, hi = _planes(kc, out_shape)
    with u.for_range(b, hi, start=lo, name="nc", vectorize=False) as nc:
        with u.for_range(b, ho, name="y", vectorize=False) as y:
            with u.for_range(b, wo, name="x", vectorize=False) as xo:
                corner = u.offset(b, [(nc, h * w), (y, stride * w), (xo, stride)])
                body(corner, u.offset(b, [(nc, ho * wo), (y, wo), (xo, 1)]))


def _taps(kc, width: int):
    size = kc.attrs["size"]
    return [i * width + j for i in range(size) for j in range(size)]


def _zero_planes(kc, ptr, shape) -> None:
    """Zero this thread's planes of a [N, C, H, W] buffer."""
    lo, hi = _planes(kc, shape)
    plane = shape[2] * shape[3]
    end, start = u.offset(kc.b, [(hi, plane)]), u.offset(kc.b, [(lo, plane)])
    with u.for_range(kc.b, end, start=start, name="z", vectorize=False) as i:
        u.store(kc.b, ir.Constant(F32, 0.0), ptr, i)


def _emit_pool(kc, is_max: bool) -> None:
    b = kc.b
    xnode = kc.operand(0)
    x, x_shape = kc.ptr(xnode), kc.shape(xnode)
    taps = _taps(kc, x_shape[3])
    scale = ir.Constant(F32, 1.0 / len(taps))

    def body(corner, at):
        values = [u.load(b, x, u.plus(b, corner, t)) for t in taps]
        acc = values[0]
        for v in values[1:]:
            acc = m.maximum(b, acc, v) if is_max else b.fadd(acc, v)
        u.store(b, acc if is_max else b.fmul(acc, scale), kc.out, at)

    _windows(kc, x_shape, kc.shape(kc.anchor), body)
    finish_epilogue(kc)


def emit_maxpool(kc) -> None:
    _emit_pool(kc, is_max=True)


def emit_avgpool(kc) -> None:
    _emit_pool(kc, is_max=False)


def emit_maxpool_grad(kc) -> None:
    b = kc.b
    xnode, dynode = kc.operand(0), kc.operand(1)
    x, dy, x_shape = kc.ptr(xnode), kc.ptr(dynode), kc.shape(xnode)
    _zero_planes(kc, kc.out, x_shape)
    taps = _taps(kc, x_shape[3])

    def body(corner, at):
        best, where = u.load(b, x, corner), corner
        for t in taps[1:]:
            pos = u.plus(b, corner, t)
            v = u.load(b, x, pos)
            better = b.fcmp_ordered(">", v, best)
            best, where = b.select(better, v, best), b.select(better, pos, where)
        u.store(b, b.fadd(u.load(b, kc.out, where), u.load(b, dy, at)), kc.out, where)

    _windows(kc, x_shape, kc.shape(dynode), body)
    finish_epilogue(kc)


def emit_avgpool_grad(kc) -> None:
    b = kc.b
    dynode = kc.operand(0)
    dy, out_shape = kc.ptr(dynode), kc.shape(kc.anchor)
    _zero_planes(kc, kc.out, out_shape)
    taps = _taps(kc, out_shape[3])
    scale = ir.Constant(F32, 1.0 / len(taps))

    def body(corner, at):
        share = b.fmul(u.load(b, dy, at), scale)
        for t in taps:
            pos = u.plus(b, corner, t)
            u.store(b, b.fadd(u.load(b, kc.out, pos), share), kc.out, pos)

    _windows(kc, out_shape, kc.shape(dynode), body)
    finish_epilogue(kc)
