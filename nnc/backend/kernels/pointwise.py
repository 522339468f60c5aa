"""The pointwise kernel: one loop nest over the output, every fused node computed in registers
(and every stored node of a merged kernel written at each index).

Adjacent output dims that every operand walks the same way (all broadcast or
all contiguous) are merged, so `[B, 6, 28, 28] + [6, 1, 1]` runs as a
`[B, 6, 784]` nest whose inner loop LLVM vectorizes.
"""

from __future__ import annotations

import math

from .. import llvmutil as u
from ..kernel_context import collapse, contiguous_strides


def external_reads(kc, root) -> list[int]:
    """The nodes the fused expression of `root` loads from memory (a fused slice: read in place in its
    operand, see `kc.read_strides`)."""
    seen, reads, stack = set(), [], [root]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if kc.reads_memory(n):
            reads.append(n)
        else:
            stack.extend(kc.g.operands(n))
    return reads


PARALLEL_ELEMENTS = 16384   # smaller loops run on one thread


def finish_epilogue(kc) -> None:
    """For anchors that wrote their raw result to the output: apply the epilogue in place
    (in a parallel kernel, after every thread is done, each on its share)."""
    if kc.kernel.epilogue:
        if kc.parallel:
            kc.barrier()
        emit_pointwise(kc, reads_output=True, split=kc.parallel)


def emit_pointwise(kc, reads_output: bool = False, split: bool | None = None) -> None:
    """Compute the kernel's output element by element; with `reads_output`, the anchor's
    stored result is read back from the output and the epilogue applied in place. With `split`
    (by default: threads and a large enough output) the threads share the outermost loop."""
    out = kc.kernel.output
    if reads_output:
        kc.aliases[kc.anchor] = out
    space = kc.shape(out)
    stride_lists = [contiguous_strides(space)]
    for value in kc.kernel.values:
        stride_lists += [kc.read_strides(m, space) for m in external_reads(kc, value)]
        stride_lists += [_placement(kc, value)[1]] if value in kc.kernel.placed else []
    groups = collapse(space, stride_lists)
    sizes = [math.prod(space[d] for d in grp) for grp in groups]
    if split is None:
        split = kc.threads > 1 and math.prod(space) >= PARALLEL_ELEMENTS
    if split and all(size == 1 for size in sizes):   # one element: thread 0 computes it
        with kc.on_thread(0):
            _nest(kc, space, groups, sizes, [])
        return
    _nest(kc, space, groups, sizes, [], split)


def _placement(kc, value) -> tuple:
    """(concat node, its strides, the element offset of `value`'s place) for a value written in place."""
    c = kc.kernel.placed[value]
    shape = kc.shape(c)
    axis = kc.g.nodes[c]["attrs"]["axis"] % len(shape)
    pieces = kc.g.operands(c)
    start = sum(kc.shape(p)[axis] for p in pieces[:pieces.index(value)])
    strides = contiguous_strides(shape)
    return c, strides, start * strides[axis]


def _nest(kc, space, groups, sizes, index, split: bool = False) -> None:
    depth = len(index)
    if depth == len(sizes):
        memo: dict = {}   # what the kernel's outputs share is computed once
        for value in kc.kernel.values:
            target, strides, base = _placement(kc, value) if value in kc.kernel.placed else \
                (value, contiguous_strides(space), 0)
            at = u.offset(kc.b, [(i, strides[grp[-1]]) for i, grp in zip(index, groups)], base)
            u.store(kc.b, kc.value_at(value, space, groups, index, memo=memo), kc.ptr(target), at)
        return
    if sizes[depth] == 1:
        _nest(kc, space, groups, sizes, index + [0], split)
        return
    lo, hi = kc.share(sizes[depth]) if split else (0, sizes[depth])
    with u.for_range(kc.b, hi, start=lo, name=f"d{depth}") as i:
        _nest(kc, space, groups, sizes, index + [i])
