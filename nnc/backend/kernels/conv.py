"""Convolutions as GEMMs over one image at a time: forward, and both backward forms.

Per image, `im2col` lays the receptive fields out as a [C·kh·kw, Ho·Wo]
matrix in kernel scratch (zero where a window overhangs the padding: those
entries are zeroed once and never written again), then

  conv2d              out_n [F, P]   = W [F, CK] · col_n
  conv2d_grad_weight  dW    [F, CK] += dy_n [F, P] · row_n   (row_n = col_nᵀ, laid out so: im2row)
  conv2d_grad_input   col   [CK, P]  = Wᵀ · dy_n, scatter-added back into dx_n (col2im)

with P = Ho·Wo and CK = C·kh·kw. With groups, each image is that many of these
products, one per group of C/groups channels and F/groups filters (CK =
C/groups·kh·kw), in a loop around them; a dilated kernel's taps are `dilation`
apart in the image. The valid output rows and columns of each kernel tap are
ranges computed once per tap, so the copy loops carry no bounds checks.
The forward GEMM applies the epilogue (bias, activation) to its registers
whenever the epilogue's operands do not vary within an image row differently
from the output (always so for per-channel bias).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from llvmlite import ir

from .. import llvmutil as u
from ..irmath import F32
from .matmul import emit_gemm
from .pointwise import external_reads, finish_epilogue


@dataclass(frozen=True)
class Geometry:
    """The sizes of one convolution: images N x C x H x W, kernels F x C/groups x kh x kw, outputs Ho x Wo."""

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
    groups: int = 1
    dilation: int = 1

    @property
    def p(self) -> int:
        return self.ho * self.wo

    @property
    def cg(self) -> int:
        """Channels per group."""
        return self.c // self.groups

    @property
    def fg(self) -> int:
        """Filters per group."""
        return self.f // self.groups

    @property
    def ck(self) -> int:
        """Rows of one group's col matrix."""
        return self.cg * self.kh * self.kw

    @property
    def image(self) -> int:
        return self.c * self.h * self.w


def geometry(kc, image_shape, kernel_shape, out_shape) -> Geometry:
    n, c, h, w = image_shape
    f, _, kh, kw = kernel_shape
    return Geometry(n, c, h, w, f, kh, kw, out_shape[2], out_shape[3], kc.attrs.get("stride", 1),
                    kc.attrs.get("pad", 0), kc.attrs.get("groups", 1), kc.attrs.get("dilation", 1))


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
    """visit(image element offset, col element offset) for every in-bounds (c, tap, y, x) of one group's
    C/groups channels (image offsets from its first channel); the col matrix is [CK, Ho·Wo], or
    [Ho·Wo, CK] when `transposed` (im2row)."""
    b = kc.b
    s, pad, d = geo.stride, geo.pad, geo.dilation
    with u.for_range(b, geo.cg, name="c", vectorize=False) as c:
        with u.for_range(b, geo.kh, name="i", vectorize=False) as i:
            y_lo, y_hi = _valid(b, u.offset(b, [(i, d)]), geo.h, geo.ho, s, pad)
            with u.for_range(b, geo.kw, name="j", vectorize=False) as j:
                x_lo, x_hi = _valid(b, u.offset(b, [(j, d)]), geo.w, geo.wo, s, pad)
                row = u.offset(b, [(c, geo.kh * geo.kw), (i, geo.kw), (j, 1)])
                tap = u.offset(b, [(c, geo.h * geo.w), (i, d * geo.w), (j, d)], -pad * geo.w - pad)
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


@contextmanager
def _groups(b, geo: Geometry):
    """`with _groups(b, geo) as g:` the body once per group: g is 0 (an int) without groups, else an i64."""
    if geo.groups == 1:
        yield 0
        return
    with u.for_range(b, geo.groups, name="g", vectorize=False) as g:
        yield g


def _weights_at(b, geo: Geometry, g):
    """The element offset of group g's weights (an int for group 0 of an ungrouped convolution)."""
    return g * geo.fg * geo.ck if isinstance(g, int) else u.offset(b, [(g, geo.fg * geo.ck)])


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
    with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n, _groups(b, geo) as g:
        image = u.offset(b, [(n, geo.image), (g, geo.cg * geo.h * geo.w)])
        _patches(kc, geo, lambda src, dst: u.store(b, u.load(b, x, b.add(image, src)), col, dst))

        def store(fi, q, acc, active):
            f = u.offset(b, [(g, geo.fg), (fi, 1)])
            if direct:
                kc.emit_result([n, f, q], acc, kc.width, active, space=out_shape, groups=[[0], [1], [2, 3]])
            else:
                u.store_vector(b, acc, kc.out, u.offset(b, [(n, geo.f * geo.p), (f, geo.p), (q, 1)]), active)

        emit_gemm(kc, geo.fg, geo.p, geo.ck, kc.ptr(wnode), _weights_at(b, geo, g), False, col, 0,
                  False, store)
    if not direct:
        finish_epilogue(kc)


def emit_conv2d_grad_input(kc) -> None:
    b = kc.b
    dynode, wnode = kc.operand(0), kc.operand(1)
    geo = geometry(kc, kc.shape(kc.anchor), kc.shape(wnode), kc.shape(dynode))
    col = kc.request_scratch(geo.ck * geo.p * 4)
    lo, hi = _images(kc, geo)
    _zero(kc, kc.out, u.offset(b, [(hi, geo.image)]), u.offset(b, [(lo, geo.image)]))
    with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n, _groups(b, geo) as g:
        def store(i, j, acc, active):
            u.store_vector(b, acc, col, u.offset(b, [(i, geo.p), (j, 1)]), active)

        dy_at = u.offset(b, [(n, geo.f * geo.p), (g, geo.fg * geo.p)])
        emit_gemm(kc, geo.ck, geo.p, geo.fg, kc.ptr(wnode), _weights_at(b, geo, g), True,
                  kc.ptr(dynode), dy_at, False, store)
        image = u.offset(b, [(n, geo.image), (g, geo.cg * geo.h * geo.w)])

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
    with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n, _groups(b, geo) as g:
        image = u.offset(b, [(n, geo.image), (g, geo.cg * geo.h * geo.w)])
        _patches(kc, geo, lambda src, dst: u.store(b, u.load(b, x, b.add(image, src)), rows, dst), transposed=True)

        def accumulate(fi, j, acc, active):
            at = u.offset(b, [(g, geo.fg * geo.ck), (fi, geo.ck), (j, 1)])
            old = u.load_vector(b, dw, at, kc.width, active)
            u.store_vector(b, b.fadd(old, acc), dw, at, active)

        dy_at = u.offset(b, [(n, geo.f * geo.p), (g, geo.fg * geo.p)])
        emit_gemm(kc, geo.fg, geo.ck, geo.p, kc.ptr(dynode), dy_at, False, rows, 0, False, accumulate)
    if kc.threads > 1:
        kc.barrier()
        with kc.on_thread(0):
            for t in range(1, kc.threads):
                partial = u.element(b, kc.thread_scratch(t), rows_floats)
                with u.for_range(b, dw_floats, name="sum", vectorize=False) as i:
                    u.store(b, b.fadd(u.load(b, kc.out, i), u.load(b, partial, i)), kc.out, i)
    finish_epilogue(kc)
