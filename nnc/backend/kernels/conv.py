"""Convolutions: forward, and both backward forms, as GEMMs over one image at a time or, where the
geometry suits them, as direct kernels that read the images and dy in place.

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

The copies cost more than the products when the products are small (LeNet-5's first weight gradient:
6 x 25 outputs, a scalar scatter of 19,600 elements per image), so where the geometry suits them
direct kernels do FMAs on vectors of the operands as they lie in memory (the choice is per geometry,
the GEMMs stay for the rest):
  - weight gradient, whole vectors of filters per group and no padding: vectors along the filters
    (dy transposed per image), one image element broadcast per tap (`_emit_grad_weight_channels`);
  - stride 1, rows of a few vectors: vectors along the output rows for the forward form (when they
    are well filled: `_emit_conv2d_direct`) and the weight gradient (`_emit_grad_weight_direct`), along
    the input rows for the input gradient (`_emit_grad_input_direct`). The lanes a row vector must not
    read (padding, past the row) are masked off in the load, by masks known at compile time.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from llvmlite import ir

from .. import irmath as m, llvmutil as u
from ..irmath import F32
from .matmul import emit_gemm
from .pointwise import external_reads, finish_epilogue
from .reduce import reduce_line


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
    direct = _epilogue_fits_rows(kc, out_shape)

    def store(n, g, fi, q, acc, active):
        f = u.offset(b, [(g, geo.fg), (fi, 1)])
        if direct:
            kc.emit_result([n, f, q], acc, kc.width, active, space=out_shape, groups=[[0], [1], [2, 3]])
        else:
            u.store_vector(b, acc, kc.out, u.offset(b, [(n, geo.f * geo.p), (f, geo.p), (q, 1)]), active)

    if _direct_fits(kc, geo, geo.wo, FORWARD_LANES):
        _emit_conv2d_direct(kc, geo, store)
    else:
        x = kc.ptr(xnode)
        col = kc.request_scratch(geo.ck * geo.p * 4)
        _zero(kc, col, geo.ck * geo.p)
        lo, hi = _images(kc, geo)
        with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n, _groups(b, geo) as g:
            image = u.offset(b, [(n, geo.image), (g, geo.cg * geo.h * geo.w)])
            _patches(kc, geo, lambda src, dst: u.store(b, u.load(b, x, b.add(image, src)), col, dst))
            emit_gemm(kc, geo.fg, geo.p, geo.ck, kc.ptr(wnode), _weights_at(b, geo, g), False, col, 0,
                      False, lambda fi, q, acc, active: store(n, g, fi, q, acc, active))
    if not direct:
        finish_epilogue(kc)


def emit_conv2d_grad_input(kc) -> None:
    """dx by the direct kernel where it fits (`_direct_fits`, on the input rows), else per image as a GEMM,
    col = Wᵀ · dy_n, whose columns are scatter-added back into dx_n (col2im)."""
    b = kc.b
    dynode, wnode = kc.operand(0), kc.operand(1)
    geo = geometry(kc, kc.shape(kc.anchor), kc.shape(wnode), kc.shape(dynode))
    if _direct_fits(kc, geo, geo.w):
        _emit_grad_input_direct(kc, geo)
        finish_epilogue(kc)
        return
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
    """dW summed over the batch, by the direct kernel where it is the faster one (`_direct_fits`), else
    as GEMMs: dW += dy_n · rows_n, rows_n the image's receptive fields laid out [Ho·Wo, C·kh·kw]
    (im2row, so the GEMM reads them in place, no packing). With threads, each share sums its images
    into its own buffer (share 0 into dW itself), added up in a second phase."""
    xnode, dynode = kc.operand(0), kc.operand(1)
    geo = geometry(kc, kc.shape(xnode), kc.shape(kc.anchor), kc.shape(dynode))
    if _channels_fit(kc, geo):
        _emit_grad_weight_channels(kc, geo)
    elif _direct_fits(kc, geo, geo.wo):
        _emit_grad_weight_direct(kc, geo)
    else:
        _emit_grad_weight_gemm(kc, geo)
    finish_epilogue(kc)


def _share_buffer(kc, scratch, at: int):
    """Where this share sums its part of dW: dW itself for share 0 (and without threads), else its
    scratch from element `at`."""
    if kc.threads == 1:
        return kc.out
    return kc.b.select(kc.b.icmp_signed("==", kc.tid, u.i64(0)), kc.out, u.element(kc.b, scratch, at))


def _add_share_buffers(kc, at: int, floats: int) -> None:
    """Once every share is done, share 0 adds the other shares' sums (from element `at` of their
    scratch) into dW, in share order."""
    if kc.threads == 1:
        return
    b = kc.b
    kc.barrier()
    with kc.on_thread(0):
        for t in range(1, kc.threads):
            partial = u.element(b, kc.thread_scratch(t), at)
            with u.for_range(b, floats, name="sum", vectorize=False) as i:
                u.store(b, b.fadd(u.load(b, kc.out, i), u.load(b, partial, i)), kc.out, i)


def _emit_grad_weight_gemm(kc, geo: Geometry) -> None:
    b = kc.b
    x = kc.ptr(kc.operand(0))
    rows_floats = geo.ck * geo.p
    dw_floats = geo.f * geo.ck
    rows = kc.request_scratch((rows_floats + (dw_floats if kc.threads > 1 else 0)) * 4)
    lo, hi = _images(kc, geo)
    dw = _share_buffer(kc, rows, rows_floats)
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
        emit_gemm(kc, geo.fg, geo.ck, geo.p, kc.ptr(kc.operand(1)), dy_at, False, rows, 0, False, accumulate)
    _add_share_buffers(kc, rows_floats, dw_floats)


# ---- direct kernels: no im2col / im2row -----------------------------------------------------------

DIRECT_ROWS = 3              # filters per register block: 3 x up to 7 taps of accumulators, the taps' x
DIRECT_TAPS = 7              # vectors and one dy vector fit in 32 vector registers
DIRECT_VECTORS = 4           # rows of at most this many vectors (the row is unrolled)
GRAD_INPUT_ROWS = 2          # input rows per register block of the input gradient
CHUNK_BYTES = 192 * 1024     # a chunk's images (dy and x) stay in the cache while every block walks them
FORWARD_LANES = 0.75         # the forward GEMM is the faster one unless the row vectors are this full


def _direct_fits(kc, geo: Geometry, row: int, lanes: float = 0.5) -> bool:
    """Stride 1, and the rows the kernel vectorizes along (`row` long) a few vectors, at least `lanes` full."""
    vectors = -(-row // kc.width)
    return geo.stride == 1 and vectors <= DIRECT_VECTORS and row >= lanes * vectors * kc.width


def _in_blocks(b, count: int, block: int, name: str, body) -> None:
    """body(first, rows) over range(count) in blocks of `block` rows (`first` an i64), then the shorter last."""
    full, tail = divmod(count, block)
    with u.for_range(b, full, name=name, vectorize=False) as k:
        if k is not None:
            body(b.mul(k, u.i64(block)), block)
    if tail:
        body(u.i64(full * block), tail)


def _zero_slots(b, slots, rows: int) -> None:
    """Zero the accumulators (allocas) of the first `rows` register rows."""
    for row in slots[:rows]:
        for slot in row:
            b.store(ir.Constant(slot.allocated_type, 0.0), slot)


def _fma_taps(b, kw: int, slots, rows: int, loads, weight) -> None:
    """For each tap j of a kernel row: the vectors loads(j), each times register row r's broadcast weight(r, j),
    added into slots[r] (one accumulator per vector)."""
    for j in range(kw):
        vectors = loads(j)
        for r in range(rows):
            wv = weight(r, j)
            for v, vec in enumerate(vectors):
                b.store(m.fma(b, wv, vec, b.load(slots[r][v], typ=vec.type)), slots[r][v])


def _emit_grad_weight_direct(kc, geo: Geometry) -> None:
    """dW[f, c, i, j] = Σ_n Σ_y Σ_x dy[n, f, y, x] · x[n, c, y + i·d − pad, x + j·d − pad] with vectors
    along the output row x: a register block of DIRECT_ROWS filters by up to DIRECT_TAPS taps of one
    kernel row (i) holds a vector accumulator each; a step loads each tap's vector of the image row
    (lanes in the padding or past the row masked off, so never read) and each filter's vector of dy,
    and does every product. The output rows y a tap row reaches are a range (no bounds checks); the
    images come in chunks that stay in the cache while every block walks them, the accumulators
    kept between chunks in scratch as vectors and summed across their lanes at the end."""
    b, W = kc.b, kc.width
    x, dy = kc.ptr(kc.operand(0)), kc.ptr(kc.operand(1))
    vectors = -(-geo.wo // W)
    taps = geo.kh * geo.kw
    acc_floats = geo.f * geo.ck * W
    dw_floats = geo.f * geo.ck
    scratch = kc.request_scratch((acc_floats + (dw_floats if kc.threads > 1 else 0)) * 4)
    dw = _share_buffer(kc, scratch, acc_floats)
    u.memset(b, scratch, 0, acc_floats * 4)
    lo, hi = _images(kc, geo)
    chunk = max(1, CHUNK_BYTES // (4 * (geo.f * geo.p + geo.image)))
    vec_t = ir.VectorType(F32, W)
    cols_max = min(geo.kw, DIRECT_TAPS)
    slots = [[u.entry_alloca(b, vec_t, f"acc{r}_{c}") for c in range(cols_max)] for r in range(DIRECT_ROWS)]
    d, pad = geo.dilation, geo.pad

    def lanes(v: int, j: int) -> list[bool]:
        return [v * W + k < geo.wo and 0 <= v * W + k + j * d - pad < geo.w for k in range(W)]

    with u.for_range(b, hi, start=lo, step=chunk, name="chunk", vectorize=False) as n0:
        end = b.add(n0, u.i64(chunk))
        n1 = b.select(b.icmp_signed("<", end, u.as_i64(hi)), end, u.as_i64(hi))
        with _groups(b, geo) as g, u.for_range(b, geo.cg, name="c", vectorize=False) as c:
            with u.for_range(b, geo.kh, name="i", vectorize=False) as i:
                y_lo, y_hi = _valid(b, u.offset(b, [(i, d)]), geo.h, geo.ho, 1, pad)

                def block(f0, rows: int, j0: int, cols: int):
                    """Accumulate filters f0.. (rows of them) by taps j0.. (cols) over the chunk."""
                    filt = u.offset(b, [(g, geo.fg), (f0, 1)])
                    tap = u.offset(b, [(c, taps), (i, geo.kw)], j0)
                    at = [[u.offset(b, [(filt, geo.ck * W), (tap, W)], (r * geo.ck + k) * W) for k in range(cols)]
                          for r in range(rows)]
                    for r in range(rows):
                        for k in range(cols):
                            b.store(u.load_vector(b, scratch, at[r][k], W), slots[r][k])
                    with u.for_range(b, n1, start=n0, name="n", vectorize=False) as n:
                        x_at = u.offset(b, [(n, geo.image), (g, geo.cg * geo.h * geo.w), (c, geo.h * geo.w),
                                            (i, d * geo.w)], -pad * geo.w)
                        dy_at = u.offset(b, [(n, geo.f * geo.p), (filt, geo.p)])
                        with u.for_range(b, y_hi, start=y_lo, name="y", vectorize=False) as y:
                            x_row = b.add(x_at, b.mul(y, u.i64(geo.w)))
                            dy_row = b.add(dy_at, b.mul(y, u.i64(geo.wo)))
                            for v in range(vectors):
                                xs = [u.load_lanes(b, x, u.plus(b, x_row, v * W + (j0 + k) * d - pad),
                                                   lanes(v, j0 + k)) for k in range(cols)]
                                active = min(W, geo.wo - v * W)
                                for r in range(rows):
                                    dv = u.load_vector(b, dy, u.plus(b, dy_row, r * geo.p + v * W), W, active)
                                    for k in range(cols):
                                        b.store(m.fma(b, dv, xs[k], b.load(slots[r][k], typ=vec_t)), slots[r][k])
                    for r in range(rows):
                        for k in range(cols):
                            u.store_vector(b, b.load(slots[r][k], typ=vec_t), scratch, at[r][k])

                for j0 in range(0, geo.kw, cols_max):
                    cols = min(cols_max, geo.kw - j0)
                    _in_blocks(b, geo.fg, DIRECT_ROWS, "fb", lambda f0, rows, j0=j0, cols=cols:
                               block(f0, rows, j0, cols))
    with u.for_range(b, dw_floats, name="lanes", vectorize=False) as e:
        base = b.mul(e, u.i64(W))
        u.store(b, reduce_line(b, "sum", W, W, lambda k, n, active: u.load_vector(b, scratch, b.add(base, k), n,
                                                                                  active)), dw, e)
    _add_share_buffers(kc, acc_floats, dw_floats)


CHANNEL_TAPS = 28            # taps per register block of the filter-vector kernel


def _channels_fit(kc, geo: Geometry) -> bool:
    """Whole vectors of filters per group, and every tap inside the image (no padding)."""
    return geo.pad == 0 and geo.fg % kc.width == 0


def _emit_grad_weight_channels(kc, geo: Geometry) -> None:
    """dWᵀ[c, i, j, f] with vectors along the filters f: per image, dy is transposed to [Ho·Wo, F]; then a
    register block of taps (up to CHANNEL_TAPS of one channel) by one vector of filters walks the
    output positions, each step one vector of dy and, per tap, one image element broadcast (an FMA
    with a memory operand). Without padding every tap reads the image at every output position."""
    b, W = kc.b, kc.width
    x, dy = kc.ptr(kc.operand(0)), kc.ptr(kc.operand(1))
    taps = geo.kh * geo.kw
    dw_floats = geo.f * geo.ck
    dyt_floats = geo.p * geo.f
    scratch = kc.request_scratch((dw_floats * (2 if kc.threads > 1 else 1) + dyt_floats) * 4)
    acc = scratch                                  # [groups, cg, kh, kw, fg]
    dyt = u.element(b, scratch, dw_floats)         # [Ho·Wo, F]
    dw = _share_buffer(kc, scratch, dw_floats + dyt_floats)
    u.memset(b, acc, 0, dw_floats * 4)
    lo, hi = _images(kc, geo)
    vec_t = ir.VectorType(F32, W)
    rows = geo.kw if taps > CHANNEL_TAPS else taps
    slots = [u.entry_alloca(b, vec_t, f"acc{r}") for r in range(rows)]
    s, d = geo.stride, geo.dilation
    with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n:
        dy_at = u.offset(b, [(n, geo.f * geo.p)])
        with u.for_range(b, geo.f, name="f", vectorize=False) as f:
            with u.for_range(b, geo.p, name="q", vectorize=False) as q:
                u.store(b, u.load(b, dy, b.add(dy_at, u.offset(b, [(f, geo.p), (q, 1)]))), dyt,
                        u.offset(b, [(q, geo.f), (f, 1)]))
        with _groups(b, geo) as g, u.for_range(b, geo.cg, name="c", vectorize=False) as c:
            with u.for_range(b, taps // rows, name="i", vectorize=False) as i:
                with u.for_range(b, geo.fg // W, name="fb", vectorize=False) as fb:
                    filt = u.offset(b, [(g, geo.fg), (fb, W)])
                    first = u.offset(b, [(g, geo.cg * taps), (c, taps), (i, rows)])
                    at = [b.add(u.offset(b, [(first, geo.fg), (fb, W)]), u.i64(r * geo.fg)) for r in range(rows)]
                    for r in range(rows):
                        b.store(u.load_vector(b, acc, at[r], W), slots[r])
                    image = u.offset(b, [(n, geo.image), (g, geo.cg * geo.h * geo.w), (c, geo.h * geo.w)])
                    if rows != taps:
                        image = b.add(image, b.mul(i, u.i64(d * geo.w)))
                    with u.for_range(b, geo.ho, name="y", vectorize=False) as y:
                        x_row = b.add(image, b.mul(y, u.i64(s * geo.w)))
                        q_row = b.mul(y, u.i64(geo.wo))
                        with u.for_range(b, geo.wo, name="x", vectorize=False) as xo:
                            dv = u.load_vector(b, dyt, b.add(b.mul(b.add(q_row, xo), u.i64(geo.f)), filt), W)
                            x_at = b.add(x_row, b.mul(xo, u.i64(s)))
                            for r in range(rows):
                                ti, tj = divmod(r, geo.kw) if rows == taps else (0, r)
                                xv = u.broadcast_load(b, x, u.plus(b, x_at, ti * d * geo.w + tj * d), W)
                                b.store(m.fma(b, xv, dv, b.load(slots[r], typ=vec_t)), slots[r])
                    for r in range(rows):
                        u.store_vector(b, b.load(slots[r], typ=vec_t), acc, at[r])
    with _groups(b, geo) as g, u.for_range(b, geo.fg, name="f", vectorize=False) as f:
        with u.for_range(b, geo.ck, name="k", vectorize=False) as k:
            src = u.offset(b, [(g, geo.fg * geo.ck), (k, geo.fg), (f, 1)])
            u.store(b, u.load(b, acc, src), dw, u.offset(b, [(g, geo.fg * geo.ck), (f, geo.ck), (k, 1)]))
    _add_share_buffers(kc, dw_floats + dyt_floats, dw_floats)


def _row_registers(kc, row: int, rows: int, name: str, copies: int = 1):
    """The register block of a row-vector kernel: (vectors per row of `row` floats, register rows: at most
    `rows` and DIRECT_ROWS·DIRECT_TAPS vectors in all, their accumulators [row][vector] as allocas), each
    register row holding `copies` rows of vectors (copy t's at t·vectors)."""
    vectors = -(-row // kc.width)
    block = max(1, min(rows, DIRECT_ROWS * DIRECT_TAPS // (vectors * copies)))
    vec_t = ir.VectorType(F32, kc.width)
    return vectors, block, [[u.entry_alloca(kc.b, vec_t, f"{name}{r}_{v}") for v in range(vectors * copies)]
                            for r in range(block)]


def _emit_grad_input_direct(kc, geo: Geometry) -> None:
    """dx[n, c, y, x] = Σ_f Σ_i Σ_j dy[n, f, y + pad − i·d, x + pad − j·d] · w[f, c, i, j] with vectors along
    the input row x: a register block of channels' vectors of GRAD_INPUT_ROWS rows y at once (each broadcast
    weight feeds every row's FMA: with one row, 7 loads fed 6 FMAs); for each filter f and each kernel row i
    that reaches one of the rows (the ranges where it reaches the first only, both, the second only), each tap
    j loads one vector of dy per row (lanes outside dy's row masked off, never read) and does one FMA per
    channel and row with w's element broadcast. Every dx element sums its products in the order of f, i, j,
    as with one row."""
    b, W = kc.b, kc.width
    dy, wt = kc.ptr(kc.operand(0)), kc.ptr(kc.operand(1))
    pair = min(GRAD_INPUT_ROWS, geo.h)
    vectors, block, slots = _row_registers(kc, geo.w, geo.cg, "dx", pair)
    vec_t = ir.VectorType(F32, W)
    d, pad, taps = geo.dilation, geo.pad, geo.kh * geo.kw

    def lanes(v: int, j: int) -> list[bool]:
        return [v * W + k < geo.w and 0 <= v * W + k + pad - j * d < geo.wo for k in range(W)]

    def reach_range(reach):
        """[lo, hi) of the kernel rows i with 0 <= reach − i·d < Ho, for an i64 `reach` = y + pad."""
        lo = b.sdiv(b.add(b.sub(reach, u.i64(geo.ho)), u.i64(d)), u.i64(d))
        lo = b.select(b.icmp_signed("<", lo, u.i64(0)), u.i64(0), lo)
        hi = b.add(b.sdiv(reach, u.i64(d)), u.i64(1))
        return lo, b.select(b.icmp_signed(">", hi, u.i64(geo.kh)), u.i64(geo.kh), hi)

    def at_least(x, y):
        return b.select(b.icmp_signed("<", x, y), y, x)

    def at_most(x, y):
        return b.select(b.icmp_signed(">", x, y), y, x)

    lo, hi = _images(kc, geo)
    with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n, _groups(b, geo) as g:
        def channels(c0, rows: int):
            def input_rows(y0, ys: int):
                _zero_slots(b, slots, rows)
                reach = b.add(y0, u.i64(pad))
                first = reach_range(reach)
                # kernel rows reaching row y0 only, rows y0 and y0 + 1, row y0 + 1 only (the window moves down)
                parts = [(first, (0,))]
                if ys == 2:
                    second = reach_range(b.add(reach, u.i64(1)))
                    both = (second[0], at_least(first[1], second[0]))
                    parts = [((first[0], at_most(second[0], first[1])), (0,)), (both, (0, 1)),
                             ((at_least(first[1], second[0]), second[1]), (1,))]
                with u.for_range(b, geo.fg, name="f", vectorize=False) as f:
                    filt = u.offset(b, [(g, geo.fg), (f, 1)])
                    w_at = u.offset(b, [(filt, geo.cg * taps), (c0, taps)])
                    image = u.offset(b, [(n, geo.f * geo.p), (filt, geo.p), (reach, geo.wo)])
                    for (i_lo, i_hi), ts in parts:
                        with u.for_range(b, i_hi, start=i_lo, name="i", vectorize=False) as i:
                            dy_rows = [b.add(image, u.offset(b, [(i, -d * geo.wo)], t * geo.wo)) for t in ts]
                            w_tap = b.add(w_at, b.mul(i, u.i64(geo.kw)))
                            def loads(j, dy_rows=dy_rows):   # the rows' dy vectors, row after row
                                return [u.load_lanes(b, dy, u.plus(b, at, v * W + pad - j * d), lanes(v, j))
                                        for at in dy_rows for v in range(vectors)]

                            def weight(r, j, w_tap=w_tap):
                                return u.broadcast_load(b, wt, u.plus(b, w_tap, r * taps + j), W)
                            # the accumulators of rows ts: row t's at t·vectors
                            _fma_taps(b, geo.kw, [row[ts[0] * vectors:(ts[-1] + 1) * vectors] for row in slots],
                                      rows, loads, weight)
                for r in range(rows):
                    for t in range(ys):
                        at = u.offset(b, [(n, geo.image), (g, geo.cg * geo.h * geo.w), (c0, geo.h * geo.w),
                                          (y0, geo.w)], r * geo.h * geo.w + t * geo.w)
                        for v in range(vectors):
                            u.store_vector(b, b.load(slots[r][t * vectors + v], typ=vec_t), kc.out,
                                           u.plus(b, at, v * W), min(W, geo.w - v * W))

            _in_blocks(b, geo.h, pair, "yb", input_rows)

        _in_blocks(b, geo.cg, block, "cb", channels)


def _emit_conv2d_direct(kc, geo: Geometry, store) -> None:
    """out[n, f, y, x] = Σ_c Σ_i Σ_j x[n, c, y + i·d − pad, x + j·d − pad] · w[f, c, i, j] with vectors along
    the output row x: a register block of filters' vectors of one output row; for each channel c and
    each kernel row i that stays inside the image (a range), each tap j loads one vector of the image
    row (lanes in the padding or past the row masked off) and does one FMA per filter with w's element
    broadcast; then store(n, g, filter in group, output position, vector, active lanes)."""
    b, W = kc.b, kc.width
    x, wt = kc.ptr(kc.operand(0)), kc.ptr(kc.operand(1))
    vectors, block, slots = _row_registers(kc, geo.wo, geo.fg, "y")
    vec_t = ir.VectorType(F32, W)
    d, pad, taps = geo.dilation, geo.pad, geo.kh * geo.kw

    def lanes(v: int, j: int) -> list[bool]:
        return [v * W + k < geo.wo and 0 <= v * W + k + j * d - pad < geo.w for k in range(W)]

    lo, hi = _images(kc, geo)
    with u.for_range(b, hi, start=lo, name="n", vectorize=False) as n, _groups(b, geo) as g:
        def filters(f0, rows: int):
            with u.for_range(b, geo.ho, name="y", vectorize=False) as y:
                _zero_slots(b, slots, rows)
                i_lo, i_hi = _valid(b, y, geo.h, geo.kh, d, pad)     # kernel rows i inside the image
                with u.for_range(b, geo.cg, name="c", vectorize=False) as c:
                    w_at = u.offset(b, [(g, geo.fg * geo.cg * taps), (f0, geo.cg * taps), (c, taps)])
                    image = u.offset(b, [(n, geo.image), (g, geo.cg * geo.h * geo.w), (c, geo.h * geo.w),
                                         (y, geo.w)], -pad * geo.w)
                    with u.for_range(b, i_hi, start=i_lo, name="i", vectorize=False) as i:
                        x_row = b.add(image, b.mul(i, u.i64(d * geo.w)))
                        w_tap = b.add(w_at, b.mul(i, u.i64(geo.kw)))
                        _fma_taps(b, geo.kw, slots, rows,
                                  lambda j, x_row=x_row: [u.load_lanes(b, x, u.plus(b, x_row, v * W + j * d - pad),
                                                                       lanes(v, j)) for v in range(vectors)],
                                  lambda r, j, w_tap=w_tap: u.broadcast_load(b, wt, u.plus(b, w_tap,
                                                                                           r * geo.cg * taps + j), W))
                for r in range(rows):
                    q = b.mul(y, u.i64(geo.wo))
                    for v in range(vectors):
                        active = min(W, geo.wo - v * W)
                        store(n, g, u.plus(b, f0, r), u.plus(b, q, v * W), b.load(slots[r][v], typ=vec_t),
                              active if active < W else None)

        _in_blocks(b, geo.fg, block, "fb", filters)
