"""GEMM: C = op(A)·op(B) with register blocking, explicit vectors and FMA, for all three forms.

The micro-kernel keeps an MR x NR block of C in vector registers (NR = 2
vectors of the host width) and walks K once, so each step is NR/W vector loads
of B, MR broadcasts of A and MR·NR/W FMAs. It is a function of its own, one per
block shape in a module (full blocks, row tails, column tails with a masked last
vector), with the strides as arguments, so every GEMM of a model shares it and
the module stays small. Aᵀ is just a different address of A's scalars; B's
column panel (K x NR) is packed contiguous into kernel scratch when enough row
blocks reuse it and it is deep (K large), and always for Bᵀ, W x W tiles at a
time transposed in registers. The micro-kernel leaves its block in a
small stack buffer; a loop over its rows hands each vector to a
`store(i, j, acc, active)` callback, where the epilogue (bias, activation, the
optimizer's update) runs before the single store. With threads, the shares
are column blocks, or row blocks when there are too few column blocks.

Batches of matrices (`emit_matmul` on [..., M, K] operands) are one GEMM over
the stacked rows when the right factor is shared by the whole batch
([B, T, D] @ [D, H] is [B·T, D] @ [D, H]), else a loop with one GEMM per
element of the batch at its operands' (broadcast) offsets; the threads share
the loop when it has an element for every share, else each GEMM.
`emit_matmul_sum` adds the products of a batch up: Aᵀ·B is one GEMM over the
stacked rows, the other forms accumulate one GEMM per element.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

from llvmlite import ir

from .. import irmath as m, llvmutil as u
from ..kernel_context import broadcast_strides, collapse
from .pointwise import external_reads, finish_epilogue

MR = 6         # rows of C per micro-kernel: 6 x 2 vectors + 2 B vectors + 1 broadcast fit 16 registers
NR_VECTORS = 2
PARALLEL_FLOPS = 400_000   # smaller products are not worth splitting between threads
PACK_ROWS = 4 * MR         # B's panels are packed when this many rows of C will reuse them
PACK_DEPTH = 640           # and they are this deep: shallower strided panels stream as fast unpacked


def gemm_scratch_bytes(K: int, tb: bool, width: int) -> int:
    return K * NR_VECTORS * width * 4 if tb else 0


def emit_gemm(kc, M: int, N: int, K: int, a, a_at, ta: bool, bmat, b_at, tb: bool, store, panel=None,
              split: bool = False) -> None:
    """Emit C = op(A)·op(B); op(A) is M x K at element offset `a_at` of `a`, op(B) K x N at `b_at` of
    `bmat` (offsets are ints or i64 values); `panel` is K·NR floats of scratch, needed when `tb`.
    With `split`, the threads share the column blocks (or the row blocks when there are fewer
    column blocks than threads); the tails go to the last thread."""
    b = kc.b
    W = kc.width
    NR = NR_VECTORS * W

    vec_t = ir.VectorType(m.F32, W)
    acc_buf = u.entry_alloca(b, ir.ArrayType(vec_t, MR * NR_VECTORS), "accs")
    a_row, a_k = (1, M) if ta else (K, 1)

    def micro(i0, rows: int, j0, cols: int, source, source_at):
        nvec = -(-cols // W)
        active = cols - (nvec - 1) * W
        fn = micro_function(b.module, rows, nvec, active, W)
        a_ptr = u.element(b, a, u.offset(b, [(i0, a_row)], a_at))
        b_ptr = u.element(b, source, source_at(0, 0))
        b_k = NR if source is panel else N
        b.call(fn, [a_ptr, u.i64(a_row), u.i64(a_k), b_ptr, u.i64(b_k), u.i64(K), acc_buf])
        with u.for_range(b, rows, name="r", vectorize=False) as r:   # a loop: the epilogue is emitted once
            i = b.add(i0, r) if not isinstance(i0, int) else u.plus(b, r, i0)
            for v in range(nvec):
                last = v == nvec - 1
                acc = u.load_vector(b, acc_buf, u.offset(b, [(r, nvec * W)], v * W), W)
                store(i, u.plus(b, j0, v * W), acc, active if last else None)

    full_cols, tail_cols = divmod(N, NR)
    split_cols = split and full_cols >= kc.threads
    split_rows = split and not split_cols and M // MR >= kc.threads

    def column_block(j0, cols: int):
        if tb:
            _pack_transposed(kc, bmat, b_at, j0, cols, K, panel)

            def source_at(k, jv):
                return u.offset(b, [(k, NR)], jv)
            source = panel
        elif panel is not None:   # B's rows are far apart: copy the K x cols panel together once
            nvec = -(-cols // W)
            active = cols - (nvec - 1) * W
            with u.for_range(b, K, name="pack", vectorize=False) as k:
                src = u.offset(b, [(k, N), (j0, 1)], b_at)
                for v in range(nvec):
                    lanes = active if v == nvec - 1 else None
                    vec = u.load_vector(b, bmat, u.plus(b, src, v * W), W, lanes)
                    u.store_vector(b, vec, panel, u.offset(b, [(k, NR)], v * W), lanes)

            def source_at(k, jv):
                return u.offset(b, [(k, NR)], jv)
            source = panel
        else:
            def source_at(k, jv):
                return u.plus(b, u.offset(b, [(k, N), (j0, 1)], b_at), jv)
            source = bmat
        full_rows, tail_rows = divmod(M, MR)
        lo, hi = kc.share(full_rows) if split_rows else (0, full_rows)
        with u.for_range(b, hi, start=lo, name="ib", vectorize=False) as ib:
            if ib is not None:
                micro(b.mul(ib, u.i64(MR)), MR, j0, cols, source, source_at)
        if tail_rows:
            with kc.on_thread(kc.threads - 1) if split_rows else _nothing():
                micro(u.i64(full_rows * MR), tail_rows, j0, cols, source, source_at)

    lo, hi = kc.share(full_cols) if split_cols else (0, full_cols)
    with u.for_range(b, hi, start=lo, name="jb", vectorize=False) as jb:
        if jb is not None:
            column_block(b.mul(jb, u.i64(NR)), NR)
    if tail_cols:
        with kc.on_thread(kc.threads - 1) if split_cols else _nothing():
            column_block(u.i64(full_cols * NR), tail_cols)


def _pack_transposed(kc, bmat, b_at, j0, cols: int, K: int, panel) -> None:
    """panel[k·NR + jj] = B[j0 + jj, k] for jj < cols, k < K (B is N x K at element offset b_at): W x W tiles
    transposed in registers for full column blocks, then element by element for what is left of K (and
    for a column tail)."""
    b, W = kc.b, kc.width
    NR = NR_VECTORS * W
    first_row = u.offset(b, [(j0, K)], b_at)
    tiled = K // W * W if cols == NR else 0
    if tiled:
        with u.for_range(b, K // W, name="kt", vectorize=False) as kt:
            k0 = b.mul(kt, u.i64(W))
            for v in range(NR_VECTORS):
                u.transpose_tile(b, bmat, b.add(u.plus(b, first_row, v * W * K), k0), K,
                                 panel, u.offset(b, [(k0, NR)], v * W), NR, W)
    if tiled == K:
        return
    with u.for_range(b, cols, name="jj", vectorize=False) as jj:
        row_start = b.add(first_row, b.mul(jj, u.i64(K)))
        with u.for_range(b, K, start=tiled, name="pack", vectorize=False) as k:
            u.store(b, u.load(b, bmat, b.add(row_start, k)), panel, b.add(b.mul(k, u.i64(NR)), jj))


@contextmanager
def _nothing():
    yield


def micro_function(module: ir.Module, rows: int, nvec: int, active: int, W: int) -> ir.Function:
    """The micro-kernel for a rows x (nvec vectors, the last with `active` lanes) block of C, one
    function per shape in a module, shared by every GEMM (compile time grows with code size):

        void (ptr a, i64 a_row, i64 a_k, ptr b, i64 b_k, i64 K, ptr accs)

    accs[r·nvec + v] = Σ_k a[r·a_row + k·a_k] · b[k·b_k + v·W : +W] (a vector per r, v)."""
    name = f"nnc_gemm_{rows}x{nvec}x{W}_{active}"
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [u.PTR, m.I64, m.I64, u.PTR, m.I64, m.I64, u.PTR]), name)
    fn.linkage = "internal"
    for attr in ("noinline", "nounwind"):
        fn.attributes.add(attr)
    a, a_row, a_k, bmat, b_k, K, out = fn.args
    for ptr in (a, bmat, out):
        ptr.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    vec_t = ir.VectorType(m.F32, W)
    accs = [[u.entry_alloca(b, vec_t, f"acc{r}_{v}") for v in range(nvec)] for r in range(rows)]
    for row in accs:
        for slot in row:
            b.store(ir.Constant(vec_t, 0.0), slot)
    rows_at = [b.mul(a_row, u.i64(r)) for r in range(rows)]
    with u.for_range(b, K, name="k", vectorize=False) as k:
        b_at = b.mul(k, b_k)
        bvecs = [u.load_vector(b, bmat, u.plus(b, b_at, v * W), W, active if v == nvec - 1 else None)
                 for v in range(nvec)]
        a_at = b.mul(k, a_k)
        for r in range(rows):
            av = m.splat(b, u.load(b, a, b.add(rows_at[r], a_at)), W)
            for v in range(nvec):
                acc = b.load(accs[r][v], typ=vec_t)
                b.store(m.fma(b, av, bvecs[v], acc), accs[r][v])
    for r in range(rows):
        for v in range(nvec):
            u.store_vector(b, b.load(accs[r][v], typ=vec_t), out, (r * nvec + v) * W)
    b.ret_void()
    return fn


def _gemm(kc, M: int, N: int, K: int, ta: bool, tb: bool, store, a_at=0, b_at=0, split: bool | None = None,
          panel=None) -> None:
    """One GEMM of the anchor's operands (at element offsets a_at, b_at); the threads share it when it is
    large enough. Asks for the packing panel unless given one (a batch loop asks once)."""
    if panel is None and _packs(kc, M, N, K, tb):
        panel = kc.request_scratch(gemm_scratch_bytes(K, True, kc.width))
    if split is None:
        split = kc.threads > 1 and 2 * M * N * K >= PARALLEL_FLOPS
    emit_gemm(kc, M, N, K, kc.ptr(kc.operand(0)), a_at, ta, kc.ptr(kc.operand(1)), b_at, tb, store, panel,
              split=split)


def _packs(kc, M: int, N: int, K: int, tb: bool) -> bool:
    # A panel row of two cache lines or more (AVX-512) streams as fast unpacked, and leaves the cache to A and
    # B: on Zen 4, 128×784×256 ran at 104–107 GFLOP/s unpacked against 99–103 packed, 256×1024×512 at 101 / 98
    wide = NR_VECTORS * kc.width * 4 >= 128
    return tb or (not wide and M >= PACK_ROWS and N > NR_VECTORS * kc.width and K >= PACK_DEPTH)


def _flags(kc) -> tuple[bool, bool]:
    return bool(kc.attrs.get("ta", False)), bool(kc.attrs.get("tb", False))


def emit_matmul(kc) -> None:
    """C = op(A)·op(B): one GEMM for matrices, and for a batch `[..., M, K] @ [K, N]` whose right factor is
    shared by the whole batch (the batch's rows stacked: [count·M, K] @ [K, N]); else a loop over the
    batch, one GEMM per element, the threads sharing the batch when it has enough elements for them."""
    a, bmat = kc.operand(0), kc.operand(1)
    ta, tb = _flags(kc)
    out_shape = kc.shape(kc.anchor)
    M, N = out_shape[-2:]
    K = kc.shape(a)[-2] if ta else kc.shape(a)[-1]
    if len(out_shape) == 2:
        def store(i, j, acc, active):
            kc.emit_result([i, j], acc, kc.width, active)

        _gemm(kc, M, N, K, ta, tb, store)
        return
    nb = len(out_shape) - 2
    batch = out_shape[:nb]
    a_strides, b_strides = (_batch_strides(kc.shape(x), batch) for x in (a, bmat))
    reads = [kc.read_strides(r, out_shape) for r in _epilogue_reads(kc)]
    stacked = (not ta and not any(b_strides) and a_strides == _batch_strides(batch + (M, K), batch)
               and all(st[d] == st[d + 1] * out_shape[d + 1] for st in reads for d in range(nb)))
    if stacked:   # the batch's rows one after another: one [count·M, K] GEMM
        groups = [list(range(nb + 1)), [nb + 1]]

        def store(i, j, acc, active):
            kc.emit_result([i, j], acc, kc.width, active, space=out_shape, groups=groups)

        _gemm(kc, math.prod(batch) * M, N, K, ta, tb, store)
        return
    out_strides = _batch_strides(out_shape, batch)
    groups = collapse(batch, [a_strides, b_strides, out_strides] + [st[:nb] for st in reads])
    sizes = [math.prod(batch[d] for d in grp) for grp in groups]
    count = math.prod(batch)
    parallel = kc.threads > 1 and 2 * count * M * N * K >= PARALLEL_FLOPS
    share_batch = parallel and count >= kc.threads
    panel = kc.request_scratch(gemm_scratch_bytes(K, True, kc.width)) if _packs(kc, M, N, K, tb) else None
    lo, hi = kc.share(count) if share_batch else (0, count)
    b = kc.b
    with u.for_range(b, hi, start=lo, name="batch", vectorize=False) as element:
        if element is None:
            return
        digits = _digits(b, element, sizes)
        a_at = u.offset(b, [(i, a_strides[grp[-1]]) for i, grp in zip(digits, groups)])
        b_at = u.offset(b, [(i, b_strides[grp[-1]]) for i, grp in zip(digits, groups)])
        space_groups = groups + [[nb], [nb + 1]]

        def store(i, j, acc, active):
            kc.emit_result(digits + [i, j], acc, kc.width, active, space=out_shape, groups=space_groups)

        _gemm(kc, M, N, K, ta, tb, store, a_at, b_at, split=parallel and not share_batch, panel=panel)


def emit_matmul_sum(kc) -> None:
    """C = Σ over the batch of op(A)·op(B). Aᵀ·B is one GEMM over the stacked rows of the batch,
    [count·R, M]ᵀ @ [count·R, N]; the other forms add one GEMM per batch element into C (each thread
    into the blocks of C it owns in every one of them), then apply the epilogue."""
    a, bmat = kc.operand(0), kc.operand(1)
    ta, tb = _flags(kc)
    a_shape, b_shape = kc.shape(a), kc.shape(bmat)
    M, N = kc.shape(kc.anchor)
    K = a_shape[-2] if ta else a_shape[-1]
    count = math.prod(a_shape[:-2])
    if ta and not tb:
        def store(i, j, acc, active):
            kc.emit_result([i, j], acc, kc.width, active)

        _gemm(kc, M, N, count * K, ta, tb, store)
        return
    b = kc.b
    panel = kc.request_scratch(gemm_scratch_bytes(K, True, kc.width)) if _packs(kc, M, N, K, tb) else None
    with u.for_range(b, count, name="batch", vectorize=False) as element:
        first = b.icmp_signed("==", element, u.i64(0))

        def accumulate(i, j, acc, active):
            at = u.offset(b, [(i, N), (j, 1)])
            old = u.load_vector(b, kc.out, at, kc.width, active)
            u.store_vector(b, b.select(first, acc, b.fadd(old, acc)), kc.out, at, active)

        a_at = b.mul(element, u.i64(a_shape[-2] * a_shape[-1]))
        b_at = b.mul(element, u.i64(b_shape[-2] * b_shape[-1]))
        _gemm(kc, M, N, K, ta, tb, accumulate, a_at, b_at, panel=panel)
    finish_epilogue(kc)


def _batch_strides(shape, batch) -> list[int]:
    """Element strides of the matrices of a [..., rows, columns] operand along the product's batch axes
    (0 along the axes it is broadcast over)."""
    matrix = shape[-2] * shape[-1]
    return [s * matrix for s in broadcast_strides(shape[:-2], batch)]


def _epilogue_reads(kc) -> list:
    return [r for r in external_reads(kc, kc.kernel.output) if r != kc.anchor] if kc.kernel.epilogue else []


def _digits(b, flat, sizes) -> list:
    """The index along each of `sizes` (row-major) of the flat i64 index `flat`."""
    digits, rest = [], flat
    for k, size in enumerate(reversed(sizes)):
        if k == len(sizes) - 1:
            digits.append(rest)
        else:
            digits.append(b.urem(rest, u.i64(size)))
            rest = b.udiv(rest, u.i64(size))
    return digits[::-1]
