"""GEMM: C = op(A)·op(B) with register blocking, explicit vectors and FMA, for all three forms.

The micro-kernel keeps an MR x NR block of C in vector registers (NR = 2
vectors of the host width) and walks K once, so each step is NR/W vector loads
of B, MR broadcasts of A and MR·NR/W FMAs. Every size is a compile-time
constant: row and column tails get their own smaller micro-kernel, the last
vector of a column tail is a masked load/store. Aᵀ is just a different
address of A's scalars; Bᵀ is packed, one K x NR panel per column block, into
kernel scratch so its loads stay contiguous. Each finished accumulator goes to
a `store(i, j, acc, active)` callback, where the epilogue (bias, activation)
runs on the registers before the single store.
"""

from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

from .. import irmath as m
from .. import llvmutil as u

MR = 6         # rows of C per micro-kernel: 6 x 2 vectors + 2 B vectors + 1 broadcast fit 16 registers
NR_VECTORS = 2
PARALLEL_FLOPS = 400_000   # smaller products are not worth a barrier


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

    def a_index(i, k):
        return u.offset(b, [(k, M), (i, 1)] if ta else [(i, K), (k, 1)], a_at)

    def micro(i0, rows: int, j0, cols: int, source, source_at):
        nvec = -(-cols // W)
        active = cols - (nvec - 1) * W
        vec_t = ir.VectorType(m.F32, W)
        accs = [[u.entry_alloca(b, vec_t, f"acc{r}_{v}") for v in range(nvec)] for r in range(rows)]
        for row in accs:
            for slot in row:
                b.store(ir.Constant(vec_t, 0.0), slot)
        with u.for_range(b, K, name="k") as k:
            bvecs = [u.load_vector(b, source, source_at(k, v * W), W, active if v == nvec - 1 else None)
                     for v in range(nvec)]
            for r in range(rows):
                i = u.plus(b, i0, r)
                av = m.splat(b, u.load(b, a, a_index(i, k)), W)
                for v in range(nvec):
                    acc = b.load(accs[r][v], typ=vec_t)
                    b.store(m.fma(b, av, bvecs[v], acc), accs[r][v])
        for r in range(rows):
            i = u.plus(b, i0, r)
            for v in range(nvec):
                j = u.plus(b, j0, v * W)
                store(i, j, b.load(accs[r][v], typ=vec_t), active if v == nvec - 1 else None)

    full_cols, tail_cols = divmod(N, NR)
    split_cols = split and full_cols >= kc.threads
    split_rows = split and not split_cols and M // MR >= kc.threads

    def column_block(j0, cols: int):
        if tb:
            for jj in range(cols):
                col = u.plus(b, j0, jj)
                row_start = u.offset(b, [(col, K)], b_at)
                with u.for_range(b, K, name="pack") as k:
                    u.store(b, u.load(b, bmat, b.add(row_start, k)), panel, u.offset(b, [(k, NR)], jj))

            def source_at(k, jv):
                return u.offset(b, [(k, NR)], jv)
            source = panel
        else:
            def source_at(k, jv):
                return u.plus(b, u.offset(b, [(k, N), (j0, 1)], b_at), jv)
            source = bmat
        full_rows, tail_rows = divmod(M, MR)
        lo, hi = kc.share(full_rows) if split_rows else (0, full_rows)
        with u.for_range(b, hi, start=lo, name="ib") as ib:
            if ib is not None:
                micro(b.mul(ib, u.i64(MR)), MR, j0, cols, source, source_at)
        if tail_rows:
            with kc.on_thread(kc.threads - 1) if split_rows else _nothing():
                micro(u.i64(full_rows * MR), tail_rows, j0, cols, source, source_at)

    lo, hi = kc.share(full_cols) if split_cols else (0, full_cols)
    with u.for_range(b, hi, start=lo, name="jb") as jb:
        if jb is not None:
            column_block(b.mul(jb, u.i64(NR)), NR)
    if tail_cols:
        with kc.on_thread(kc.threads - 1) if split_cols else _nothing():
            column_block(u.i64(full_cols * NR), tail_cols)


@contextmanager
def _nothing():
    yield


def emit_matmul(kc) -> None:
    a, bmat = kc.operand(0), kc.operand(1)
    ta, tb = bool(kc.attrs.get("ta", False)), bool(kc.attrs.get("tb", False))
    M, N = kc.shape(kc.anchor)
    K = kc.shape(a)[0] if ta else kc.shape(a)[1]
    panel = kc.request_scratch(gemm_scratch_bytes(K, tb, kc.width)) if tb else None

    def store(i, j, acc, active):
        kc.emit_result([i, j], acc, kc.width, active)

    split = kc.threads > 1 and 2 * M * N * K >= PARALLEL_FLOPS
    emit_gemm(kc, M, N, K, kc.ptr(a), 0, ta, kc.ptr(bmat), 0, tb, store, panel, split=split)
