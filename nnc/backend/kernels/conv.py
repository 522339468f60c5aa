"""Convolutions as GEMMs over one image at a time: forward, and both backward forms.

Per image, `im2col` lays the receptive fields out as a [C·kh·kw, Ho·Wo]
matrix in kernel scratch (zero where a window overhangs the padding: those
entries are zeroed once and never written again), then

  conv2d              out_n [F, P]   = W [F, CK] · col_n
  conv2d_grad_weight  dW    [F, CK] += dy_n [F, P] · row_n   (row_n = col_nᵀ, laid out so: im2row)
  conv2d_grad_input   col   [CK, P]  = Wᵀ · dy_n, scatter-added back into dx_n (col2im)

with P = Ho·Wo and CK = C·kh·kw. The valid output rows and columns of each
kernel tap are compile-time ranges, so the copy loops carry no bounds checks.
The forward GEMM applies the epilogue (bias, activation) to its registers
whenever the epilogue's operands do not vary within an image row differently
from the output (always so for per-channel bias).
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from .. import llvmutil as u
from ..irmath import F32
from .matmul import emit_gemm
from .pointwise import external_reads, finish_epilogue


@dataclass(frozen=True)
class Geometry:
    """The sizes of one convolution: images N x C x H x W, kernels F x C x kh x kw, outputs Ho x Wo."""

    n: int
    c: int
    h: int
    w: int
    f: int
    kh: int
    kw: int
    ho: int
    wo: int
    stride: int
    pad: int

    @property
    def p(self) -> int:
        return self.ho * self.wo

    @property
    def ck(self) -> int:
        return self.c * self.kh * self.kw

    @property
    def image(self) -> int:
        return self.c * self.h * self.w


def geometry(kc, image_shape, kernel_shape, out_shape) -> Geometry:
    n, c, h, w = image_shape
    f, _, kh, kw = kernel_shape
    return Geometry(n, c, h, w, f, kh, kw, out_shape[2], out_shape[3],
                    kc.attrs.get("stride", 1), kc.attrs.get("pad", 0))


def _valid(b, tap, size: int, out: int, stride: int, pad: int):
    """[lo, hi): the output positions o with 0 <= o·stride + tap − pad < size, for an i64 `tap`."""
    zero = u.i64(0)
    first = b.sub(u.i64(pad), tap)                        # o·stride >= pad − tap
    lo = b.select(b.icmp_signed("<=", first, zero), zero, b.sdiv(b.add(first, u.i64(stride - 1)), u.i64(stride)))
    last = b.sub(u.i64(size - 1 + pad), tap)              # o·stride <= size − 1 + pad − tap
    hi = b.select(b.icmp_signed("<", last, zero), zero, b.add(b.sdiv(last, u.i64(stride)), u.i64(1)))
    hi = b.select(b.icmp_signed("<", hi, u.i64(out)), hi, u.i64(out))
    return lo, b.select(b.icmp_signed("<", hi, lo), lo, hi)


def _patches(kc, geo: Geometry, visit, transposed: bool = False) -> None:
    """visit(image element offset, col element offset) for every in-bounds (c, tap, y, x); the col
    matrix is [C·kh·kw, Ho·Wo], or [Ho·Wo, C·kh·kw] when `transposed` (im2row)."""
    b = kc.b
    s, pad = geo.stride, geo.pad
    with u.for_range(b, geo.c, name="c", vectorize=False) as c:
        with u.for_range(b, geo.kh, name="i", vectorize=False) as i:
            y_lo, y_hi = _valid(b, i, geo.h, geo.ho, s, pad)
            with u.for_range(b, geo.kw, name="j", vectorize=False) as j:
                x_lo, x_hi = _valid(b, j, geo.w, geo.wo, s, pad)
                row = u.offset(b, [(c, geo.kh * geo.kw), (i, geo.kw), (j, 1)])
                tap = u.offset(b, [(c, geo.h * geo.w), (i, geo.w), (j, 1)], -pad * geo.w - pad)
                with u.for_range(b, y_hi, start=y_lo, name="y", vectorize=False) as y:
                    with u.for_range(b, x_hi, start=x_lo, name="x", vectorize=False) as x:
                        src = b.add(tap, u.offset(b, [(y, s * geo.w), (x, s)]))
                        dst = u.offset(b, [(y, geo.wo * geo.ck), (x, geo.ck), (row, 1)] if transposed
                                       else [(row, geo.p), (y, geo.wo), (x, 1)])
                        visit(src, dst)


def _zero(kc, ptr, count, start=0) -> None:
    with u.for_range(kc.b, count, start=start, name="z", vectorize=False) as i:
        u.store(kc.b, ir.Constant(F32, 0.0), ptr, i)


def _images(kc, geo: Geometry):
    """This thread's images [lo, hi): the threads share the batch."""
    return kc.share(geo.n)


def _epilogue_fits_rows(kc, out_shape) -> bool:
    """Can the epilogue be evaluated on [N, F, Ho·Wo] (each operand constant or contiguous over Ho·Wo)?"""
    reads = [r for r in external_reads(kc, kc.kernel.output) if r != kc.anchor] if kc.kernel.epilogue else []
    for r in reads:
        st = kc.read_strides(r, out_shape)
        if st[2] != st[3] * out_shape[3]:
            return False
    return True


def emit_conv2d(kc) -> None:
    b = kc.b
    xnode, wnode = kc.operand(0), kc.operand(1)
    out_shape = kc.shape(kc.anchor)
    geo = geometry(kc, kc.shape(xnode), kc.shape(wnode), out_shape)
    x = kc.ptr(xnode)
    col = kc.request_scratch(geo.ck * geo.p * 4)
    _zero(kc, col, geo.ck * geo.p)
    direct = _epilogue_fits_rows(kc, out_shape)
    lo, hi = _images(kc, geo)
    with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n:
        image = b.mul(n, u.i64(geo.image))
        _patches(kc, geo, lambda src, dst: u.store(b, u.load(b, x, b.add(image, src)), col, dst))

        def store(f, q, acc, active):
            if direct:
                kc.emit_result([n, f, q], acc, kc.width, active, space=out_shape, groups=[[0], [1], [2, 3]])
            else:
                u.store_vector(b, acc, kc.out, u.offset(b, [(n, geo.f * geo.p), (f, geo.p), (q, 1)]), active)

        emit_gemm(kc, geo.f, geo.p, geo.ck, kc.ptr(wnode), 0, False, col, 0, False, store)
    if not direct:
        finish_epilogue(kc)


def emit_conv2d_grad_input(kc) -> None:
    b = kc.b
    dynode, wnode = kc.operand(0), kc.operand(1)
    geo = geometry(kc, kc.shape(kc.anchor), kc.shape(wnode), kc.shape(dynode))
    col = kc.request_scratch(geo.ck * geo.p * 4)
    lo, hi = _images(kc, geo)
    _zero(kc, kc.out, u.offset(b, [(hi, geo.image)]), u.offset(b, [(lo, geo.image)]))
    with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n:
        def store(i, j, acc, active):
            u.store_vector(b, acc, col, u.offset(b, [(i, geo.p), (j, 1)]), active)

        dy_at = b.mul(n, u.i64(geo.f * geo.p))
        emit_gemm(kc, geo.ck, geo.p, geo.f, kc.ptr(wnode), 0, True, kc.ptr(dynode), dy_at, False, store)
        image = b.mul(n, u.i64(geo.image))

        def scatter(src, dst):
            at = b.add(image, src)
            u.store(b, b.fadd(u.load(b, kc.out, at), u.load(b, col, dst)), kc.out, at)

        _patches(kc, geo, scatter)
    finish_epilogue(kc)


def emit_conv2d_grad_weight(kc) -> None:
    """dW summed over the batch: dW += dy_n · rows_n, rows_n the image's receptive fields laid out
    [Ho·Wo, C·kh·kw] (im2row, so the GEMM reads them in place, no packing). With threads, each
    share sums its images into its own buffer (share 0 into dW itself), added up in a second phase."""
    b = kc.b
    xnode, dynode = kc.operand(0), kc.operand(1)
    geo = geometry(kc, kc.shape(xnode), kc.shape(kc.anchor), kc.shape(dynode))
    x = kc.ptr(xnode)
    rows_floats = geo.ck * geo.p
    dw_floats = geo.f * geo.ck
    rows = kc.request_scratch((rows_floats + (dw_floats if kc.threads > 1 else 0)) * 4)
    lo, hi = _images(kc, geo)
    if kc.threads > 1:
        dw = b.select(b.icmp_signed("==", kc.tid, u.i64(0)), kc.out, u.element(b, rows, rows_floats))
    else:
        dw = kc.out
    _zero(kc, rows, rows_floats)
    _zero(kc, dw, dw_floats)
    with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n:
        image = b.mul(n, u.i64(geo.image))
        _patches(kc, geo, lambda src, dst: u.store(b, u.load(b, x, b.add(image, src)), rows, dst), transposed=True)

        def accumulate(f, j, acc, active):
            at = u.offset(b, [(f, geo.ck), (j, 1)])
            old = u.load_vector(b, dw, at, kc.width, active)
            u.store_vector(b, b.fadd(old, acc), dw, at, active)

        dy_at = b.mul(n, u.i64(geo.f * geo.p))
        emit_gemm(kc, geo.f, geo.ck, geo.p, kc.ptr(dynode), dy_at, False, rows, 0, False, accumulate)
    if kc.threads > 1:
        kc.barrier()
        with kc.on_thread(0):
            for t in range(1, kc.threads):
                partial = u.element(b, kc.thread_scratch(t), rows_floats)
                with u.for_range(b, dw_floats, name="sum", vectorize=False) as i:
                    u.store(b, b.fadd(u.load(b, kc.out, i), u.load(b, partial, i)), kc.out, i)
    finish_epilogue(kc)
