"""Reductions (sum, mean, max, prod over any axes), with their fused prologue and epilogue.

The loop nest walks the input in memory order (adjacent reduced or kept dims
merged), evaluating the prologue at each element and combining it into the
output element it belongs to. When the innermost merged dim is reduced, the
line is combined by `reduce_line` (explicit vector accumulators); otherwise it
accumulates into the output row, which LLVM vectorizes over the kept dim.
Mean scales at the end, then the epilogue runs.

No float operation carries fast-math flags: with `reassoc nsz` on the add,
LLVM folds Σ (x − x) to 0 where x is infinite (NaN in IEEE arithmetic). Without
`reassoc` LLVM does not vectorize a float sum, so `reduce_line` writes the
vectorization out (the same reassociation, but of IEEE operations on values
computed as written, so no NaN or infinity can be folded away).
"""

from __future__ import annotations

import math

from llvmlite import ir

from ...ir import ops
from .. import irmath as m, llvmutil as u
from ..irmath import F32, I32
from ..kernel_context import collapse
from .pointwise import external_reads, finish_epilogue

ACCUMULATORS = 4   # host vectors per step of a line: about an add's latency over its issue interval


def _identity(kind: str, etype):
    if kind == "max":
        return ir.Constant(etype, -math.inf)
    if kind == "prod":
        return ir.Constant(etype, 1.0 if etype == F32 else 1)
    return ir.Constant(etype, 0.0 if etype == F32 else 0)


def combine(b, kind: str, acc, v):
    """acc ⊕ v for max, a product for prod, else a sum: scalars or vectors, float or int."""
    if kind == "max":
        return m.maximum(b, acc, v)
    if kind == "prod":
        return m.arith(b, "fmul", "mul", acc, v)
    return m.arith(b, "fadd", "add", acc, v)


def reduce_line(b, kind: str, count: int, width: int, value) -> ir.Value:
    """The max (kind "max"), product ("prod") or sum of float32 value(i, lanes, active) over i in range(count),
    where value(i, lanes, active) is the `lanes` elements from i as a vector (with `active`, only
    the lanes before it are read; the others are ignored); `width` is the host's vector width.

    A loop steps through the line ACCUMULATORS·width lanes at a time (fewer for a short line, not
    fewer than `width`) into one accumulator that LLVM keeps in that many registers, computed in
    lock-step like the loop vectorizer's interleaved parts. Then the accumulator is halved (upper
    half into lower), taking at each width down to `width` at most one more vector of the line,
    and the last elements as one masked vector; then halved down to one lane."""
    lanes = width * ACCUMULATORS
    while lanes > count and lanes > width:
        lanes //= 2
    vec_t = ir.VectorType(F32, lanes)
    identity = _identity(kind, F32).constant
    slot = u.entry_alloca(b, vec_t, "acc")
    b.store(ir.Constant(vec_t, identity), slot)
    done = count // lanes * lanes
    if done:
        with u.for_range(b, done, step=lanes, name="r", vectorize=False) as i:
            b.store(combine(b, kind, b.load(slot, typ=vec_t), value(i, lanes, None)), slot)
    acc = b.load(slot, typ=vec_t)
    while lanes > width:
        acc, lanes = _halve(b, kind, acc), lanes // 2
        if count - done >= lanes:
            acc = combine(b, kind, acc, value(u.i64(done), lanes, None))
            done += lanes
    if count > done:
        active = count - done
        tail = value(u.i64(done), lanes, active)
        acc = combine(b, kind, acc, b.select(u.lane_mask(lanes, active), tail, ir.Constant(acc.type, identity)))
    while lanes > 1:
        acc, lanes = _halve(b, kind, acc), lanes // 2
    return acc


def _halve(b, kind: str, v) -> ir.Value:
    """The upper half of the lanes of `v` combined into the lower half (a scalar from two lanes)."""
    n = v.type.count // 2
    if n == 1:
        halves = [b.extract_element(v, ir.Constant(I32, at)) for at in (0, 1)]
    else:
        halves = [b.shuffle_vector(v, ir.Constant(v.type, ir.Undefined),
                                   ir.Constant(ir.VectorType(I32, n), list(range(at, at + n)))) for at in (0, n)]
    return combine(b, kind, *halves)


def _axes(attr, rank: int) -> tuple:
    if attr is None:
        return tuple(range(rank))
    axes = [attr] if isinstance(attr, int) else list(attr)
    return tuple(sorted(a % rank for a in axes))


def emit_reduce(kc) -> None:
    b = kc.b
    op = kc.g.op(kc.anchor)
    kind = {ops.max: "max", ops.prod: "prod"}.get(op, "sum")   # how values combine; a mean: a sum, scaled
    x = kc.operand(0)
    space = kc.shape(x)
    axes = _axes(kc.attrs.get("axis"), len(space))
    etype = I32 if kc.dtype(kc.anchor) == "int32" else F32
    kept = [d for d in range(len(space)) if d not in axes]
    out_strides = [0] * len(space)
    step = 1
    for d in reversed(kept):
        out_strides[d] = step
        step *= space[d]
    reads = [kc.read_strides(r, space) for r in external_reads(kc, x)]
    groups = collapse(space, [out_strides, *reads])
    sizes = [math.prod(space[d] for d in grp) for grp in groups]
    reduced = [out_strides[grp[-1]] == 0 and all(d in axes for d in grp) for grp in groups]
    out_count = math.prod(space[d] for d in kept)
    out = kc.out

    with u.for_range(b, out_count, name="init") as i:
        u.store(b, _identity(kind, etype), out, i)

    def out_at(index):
        return u.offset(b, [(i, out_strides[grp[-1]]) for i, grp in zip(index, groups)])

    def nest(index):
        depth = len(index)
        if depth == len(groups) - 1 and reduced[depth] and sizes[depth] > 1:
            if etype == F32:
                total = reduce_line(b, kind, sizes[depth], kc.width,
                                    lambda r, lanes, active: kc.value_at(x, space, groups, index + [r], lanes, active))
            else:  # integer addition is associative: LLVM vectorizes this loop itself
                acc = u.entry_alloca(b, etype, "acc")
                b.store(_identity(kind, etype), acc)
                with u.for_range(b, sizes[depth], name="r") as r:
                    v = kc.value_at(x, space, groups, index + [r])
                    b.store(combine(b, kind, b.load(acc, typ=etype), v), acc)
                total = b.load(acc, typ=etype)
            at = out_at(index + [0])
            u.store(b, combine(b, kind, u.load(b, out, at, etype), total), out, at)
            return
        if depth == len(groups):
            at = out_at(index)
            v = kc.value_at(x, space, groups, index)
            u.store(b, combine(b, kind, u.load(b, out, at, etype), v), out, at)
            return
        with u.for_range(b, sizes[depth], name=f"d{depth}") as i:
            nest(index + [i])

    nest([])
    if op is ops.mean:
        scale = ir.Constant(F32, 1.0 / max(1, math.prod(space[a] for a in axes)))
        with u.for_range(b, out_count, name="scale") as i:
            u.store(b, b.fmul(u.load(b, out, i), scale), out, i)
    finish_epilogue(kc)
