"""Reductions (sum, mean, max over any axes), with their fused prologue and epilogue.

The loop nest walks the input in memory order (adjacent reduced or kept dims
merged), evaluating the prologue at each element and combining it into the
output element it belongs to. When the innermost merged dim is reduced, the
combination runs in a register accumulator (reassociation allowed, so LLVM
vectorizes it); otherwise it accumulates into the output row, which
vectorizes over the kept dim. Mean scales at the end, then the epilogue runs.
"""

from __future__ import annotations

import math

from llvmlite import ir

from .. import irmath as m
from .. import llvmutil as u
from ..codegen import broadcast_strides, collapse
from ..irmath import F32, I32
from .pointwise import external_reads

REASSOC = ("reassoc", "nsz")


def _identity(kind: str, etype):
    if kind == "max":
        return ir.Constant(etype, -math.inf)
    return ir.Constant(etype, 0.0 if etype == F32 else 0)


def combine(b, kind: str, acc, v):
    if kind == "max":
        return m.maximum(b, acc, v)
    if acc.type == F32:
        return b.fadd(acc, v, flags=REASSOC)
    return b.add(acc, v)


def _axes(attr, rank: int) -> tuple:
    if attr is None:
        return tuple(range(rank))
    axes = [attr] if isinstance(attr, int) else list(attr)
    return tuple(sorted(a % rank for a in axes))


def emit_reduce(kc) -> None:
    b = kc.b
    kind = kc.kernel.kind
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
    reads = [broadcast_strides(kc.shape(r), space) for r in external_reads(kc, x)]
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
            acc = u.entry_alloca(b, etype, "acc")
            b.store(_identity(kind, etype), acc)
            with u.for_range(b, sizes[depth], name="r") as r:
                v = kc.value_at(x, space, groups, index + [r])
                b.store(combine(b, kind, b.load(acc, typ=etype), v), acc)
            at = out_at(index + [0])
            u.store(b, combine(b, kind, u.load(b, out, at, etype), b.load(acc, typ=etype)), out, at)
            return
        if depth == len(groups):
            at = out_at(index)
            v = kc.value_at(x, space, groups, index)
            u.store(b, combine(b, kind, u.load(b, out, at, etype), v), out, at)
            return
        with u.for_range(b, sizes[depth], name=f"d{depth}") as i:
            nest(index + [i])

    nest([])
    if kind == "mean":
        scale = ir.Constant(F32, 1.0 / max(1, math.prod(space[a] for a in axes)))
        with u.for_range(b, out_count, name="scale") as i:
            u.store(b, b.fmul(u.load(b, out, i), scale), out, i)
    kc.finish_epilogue()
