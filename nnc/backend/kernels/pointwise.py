"""The pointwise kernel: one loop nest over the output, every fused node computed in registers.

Adjacent output dims that every operand walks the same way (all broadcast or
all contiguous) are merged, so `[B, 6, 28, 28] + [6, 1, 1]` runs as a
`[B, 6, 784]` nest whose inner loop LLVM vectorizes.
"""

from __future__ import annotations

import math

from .. import llvmutil as u
from ..kernel_context import broadcast_strides, collapse, contiguous_strides


def external_reads(kc, root) -> list[int]:
    """The nodes the fused expression of `root` loads from memory."""
    seen, reads, stack = set(), [], [root]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in kc.fused:
            stack.extend(kc.g.operands(n))
        else:
            reads.append(n)
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
    stride_lists += [broadcast_strides(kc.shape(m), space) for m in external_reads(kc, out)]
    groups = collapse(space, stride_lists)
    sizes = [math.prod(space[d] for d in grp) for grp in groups]
    if split is None:
        split = kc.threads > 1 and math.prod(space) >= PARALLEL_ELEMENTS
    if split and all(size == 1 for size in sizes):   # one element: thread 0 computes it
        with kc.on_thread(0):
            _nest(kc, space, groups, sizes, [])
        return
    _nest(kc, space, groups, sizes, [], split)


def _nest(kc, space, groups, sizes, index, split: bool = False) -> None:
    depth = len(index)
    if depth == len(sizes):
        value = kc.value_at(kc.kernel.output, space, groups, index)
        at = u.offset(kc.b, [(i, contiguous_strides(space)[grp[-1]]) for i, grp in zip(index, groups)])
        u.store(kc.b, value, kc.out, at)
        return
    if sizes[depth] == 1:
        _nest(kc, space, groups, sizes, index + [0], split)
        return
    lo, hi = kc.share(sizes[depth]) if split else (0, sizes[depth])
    with u.for_range(kc.b, hi, start=lo, name=f"d{depth}") as i:
        _nest(kc, space, groups, sizes, index + [i])
