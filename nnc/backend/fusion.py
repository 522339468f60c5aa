"""The fusion pass: (graph, targets) -> a kernel plan, the list of loops the backend emits.

A kernel is one native loop nest. It is built around at most one *anchor* — a
node that is not pointwise (matmul, conv2d, a reduction, softmax, pooling, ...)
— and absorbs the pointwise nodes next to it: an *epilogue* evaluated at each
element of the kernel's result (bias add, activation, the `dy · [x > 0]` of a
backward pass) and, for reductions, a *prologue* evaluated at each element the
reduction reads. A kernel without an anchor is a pure pointwise loop. Only the
kernel's output is stored; every other node it covers lives in registers.

A node is absorbed into the kernel of its users when all of them are in one
kernel and in compatible roles, so no value is ever computed twice by two
kernels. Reshapes are views (they share their operand's storage) and
leaves (inputs, parameters, constants) are storage, not kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ShapeError
from ..ir import ops
from ..ir.ops import CONTROL, ELEMENTWISE, EXPAND, LEAF, PROJECTION, REDUCE, VIEW
from ..ir.types import broadcast_shapes
from .lower_pointwise import READ_IN_PLACE

POINTWISE = "pointwise"


def is_leaf(g, n) -> bool:
    return g.op(n).is_a(LEAF)


def is_result(g, n) -> bool:
    """One result of a multi-result op (item): storage its op's kernel writes, not a computation."""
    return g.op(n).is_a(PROJECTION)


def is_view(g, n) -> bool:
    """Same elements in the same order (reshape), so it can share its operand's storage."""
    return g.op(n).is_a(VIEW)


def is_pointwise(g, n) -> bool:
    """Computable one element at a time at a broadcast index: elementwise ops, ops whose result is
    their operand broadcast (broadcast_to), which the fused loop reads with broadcasting, and slices,
    read in place in their operand's storage (which is therefore always stored)."""
    op = g.op(n)
    if op.is_a(ELEMENTWISE) or op in READ_IN_PLACE:
        return True
    if not op.is_a(EXPAND):  # other movement ops (a rank-0 transpose too) have kernels of their own
        return False
    src, dst = g.type_of(g.operands(n)[0]).shape, g.type_of(n).shape
    try:
        return broadcast_shapes(src, dst) == dst
    except ShapeError:
        return False


@dataclass
class Kernel:
    index: int
    output: int                       # the one node whose value is stored
    anchor: int | None = None         # the non-pointwise node, if any
    prologue: list = field(default_factory=list)  # pointwise nodes feeding a reduction, evaluated as it reads
    epilogue: list = field(default_factory=list)  # pointwise nodes applied to the result (output last)
    inputs: tuple = ()                # nodes read from memory, in first-use order
    lines: tuple = ()                 # source lines covered
    kind: str = POINTWISE             # the anchor's op name, or "pointwise"
    results: tuple = ()               # a multi-result anchor's item nodes the targets need, stored by it
    also: tuple = ()                  # a pointwise kernel's other stored nodes (of the output's shape)
    placed: dict = field(default_factory=dict)   # a stored node -> the concat it is written into, in place
                                                 # (a concat's pieces may come from several kernels)

    @property
    def values(self) -> tuple:
        """The nodes whose values a pointwise kernel computes and writes (in place in a concat when placed)."""
        return (*self.also, self.output)

    @property
    def stored(self) -> tuple:
        """The nodes whose memory this kernel writes."""
        return self.results or tuple(dict.fromkeys(self.placed.get(n, n) for n in self.values))

    @property
    def nodes(self) -> list[int]:
        return sorted(self.prologue + ([self.anchor] if self.anchor is not None else []) + self.epilogue
                      + list(dict.fromkeys(self.placed.values())))

    def role(self, n) -> str | None:
        if n == self.anchor:
            return "anchor"
        if n in self.prologue:
            return "prologue"
        if n in self.epilogue:
            return "epilogue"
        return None


@dataclass
class KernelPlan:
    graph: object
    targets: tuple
    kernels: list
    views: dict   # view node -> the node whose storage it shares
    owner: dict   # computed node -> kernel index

    @property
    def primitive_ops(self) -> int:
        """Nodes that compute something: everything the targets need except leaves."""
        return sum(1 for n in self.needed if not is_leaf(self.graph, n) and not is_result(self.graph, n))

    @property
    def needed(self) -> set:
        return self.graph.needed_for(self.targets)

    def storage_of(self, n: int) -> int:
        """The node that owns the memory `n` lives in (follows reshape views)."""
        while n in self.views:
            n = self.views[n]
        return n

    def describe(self) -> str:
        g = self.graph
        lines = [f"{len(self.kernels)} kernels for {self.primitive_ops} primitive ops"]
        for k in self.kernels:
            ops = " ".join(f"{g.op(n)}%{n}" for n in k.nodes)
            where = f"  lines {','.join(map(str, k.lines))}" if k.lines else ""
            outputs = " ".join(f"%{n}" for n in k.stored) if k.anchor is None else f"%{k.output}"
            lines.append(f"k{k.index} {k.kind:<18} -> {outputs} {g.type_of(k.output)}: {ops}{where}")
        return "\n".join(lines)


def fuse(g, targets) -> KernelPlan:
    """Group the nodes `targets` need into kernels (a pure function of the graph)."""
    targets = tuple(dict.fromkeys(targets))
    needed = g.needed_for(targets)
    order = [n for n in g.topo() if n in needed]
    position = {n: i for i, n in enumerate(order)}
    views = {n: g.operands(n)[0] for n in order if is_view(g, n)}
    owner: dict[int, Kernel] = {}
    drafts: list[Kernel] = []

    for n in reversed(order):
        if is_leaf(g, n) or n in views or is_result(g, n):
            continue
        users = {u for u in g.successors(n) if u in needed}
        kernel = _absorbing_kernel(g, n, users, owner, views, targets)
        if kernel is None:
            kernel = Kernel(index=-1, output=n)
            drafts.append(kernel)
            if is_pointwise(g, n):
                kernel.epilogue.append(n)
            else:
                kernel.anchor = n
        elif is_pointwise(g, n):
            roles = {kernel.role(u) for u in users}
            (kernel.prologue if roles & {"anchor", "prologue"} else kernel.epilogue).append(n)
        else:
            kernel.anchor = n
        owner[n] = kernel

    drafts.sort(key=lambda k: position[k.output])
    drafts = _merge_siblings(g, drafts, owner, needed, targets)
    drafts = _concat_in_place(g, drafts, owner, needed, targets)
    for i, k in enumerate(drafts):
        k.index = i
        k.prologue.sort(key=position.get)
        k.epilogue.sort(key=position.get)
        if k.anchor is not None:
            k.kind = g.op(k.anchor).name
        if k.anchor is not None and g.op(k.anchor).is_a(CONTROL):
            k.results = tuple(sorted(u for u in g.successors(k.anchor) if u in needed))
            owner.update({r: k for r in k.results})
        covered = set(k.nodes)
        inputs = []
        for n in k.nodes:
            if n not in k.placed.values():   # a concat written in place reads nothing
                inputs += [o for o in g.operands(n) if o not in covered and o not in inputs]
        k.inputs = tuple(inputs)
        k.lines = tuple(sorted({g.nodes[n]["loc"].span.line for n in k.nodes if g.nodes[n].get("loc") is not None}))
    return KernelPlan(g, targets, drafts, views, {n: k.index for n, k in owner.items()})


def _merge_siblings(g, drafts: list, owner: dict, needed, targets) -> list:
    """Consecutive pointwise kernels over the same shape become one loop that stores each of their
    outputs (an LSTM cell's gates, its new cell and hidden state): one pass instead of several, and a
    value one of them stored and the next read back stays in registers. Only neighbours in kernel
    order merge, so no kernel can depend on one part of the merged loop and feed another."""
    merged: list[Kernel] = []
    for k in drafts:
        last = merged[-1] if merged else None
        if last is not None and last.anchor is None and k.anchor is None and \
                g.type_of(last.output).shape == g.type_of(k.output).shape:
            last.also = (*last.also, last.output)
            last.output = k.output
            last.epilogue += k.epilogue
            owner.update({n: last for n in k.epilogue})
        else:
            merged.append(k)
    for k in merged:   # what only the merged loop itself reads stays in registers
        k.also = tuple(n for n in k.also if n in targets or
                       any(u in needed and owner.get(u) is not k for u in g.successors(n)))
    return merged


def _concat_in_place(g, drafts: list, owner: dict, needed, targets) -> list:
    """A concat whose pieces are all computed by pointwise kernels, for it alone, needs no copy: those
    kernels write each piece at its place in the concat's storage (an LSTM's four gate gradients into
    the [B, 4H] gradient of its gate pre-activations, a history shifted by one step)."""
    removed = set()
    for kc in drafts:
        c = kc.anchor
        if c is None or g.op(c) is not ops.concat or kc.output != c or kc.epilogue or kc.prologue:
            continue
        pieces = g.operands(c)
        writers = [owner.get(p) for p in pieces]
        if len(set(pieces)) != len(pieces) or any(
                w is None or w.anchor is not None or p not in w.values or p in targets or
                {u for u in g.successors(p) if u in needed} != {c} for p, w in zip(pieces, writers)):
            continue
        for p, w in zip(pieces, writers):
            w.placed[p] = c
        owner[c] = writers[-1]
        removed.add(id(kc))
    return [k for k in drafts if id(k) not in removed]


def _absorbing_kernel(g, n, users, owner, views, targets) -> Kernel | None:
    """The kernel that can compute `n` in registers, or None when `n` must be stored."""
    if n in targets or not users or any(u in views or u not in owner or g.op(u) in READ_IN_PLACE for u in users):
        return None
    kernels = {id(owner[u]): owner[u] for u in users}
    if len(kernels) != 1:
        return None
    kernel = next(iter(kernels.values()))
    roles = {kernel.role(u) for u in users}
    if is_pointwise(g, n):
        if roles == {"epilogue"}:
            return kernel
        if roles <= {"anchor", "prologue"} and g.op(kernel.anchor).is_a(REDUCE):
            return kernel
        return None
    # A non-pointwise node becomes the anchor of a pointwise kernel whose result has its shape; not a
    # concat, which its pieces' kernels may write in place (`_concat_in_place`; as an anchor it would
    # copy, then apply the epilogue in a second pass, no better than a kernel of its own).
    if kernel.anchor is None and roles == {"epilogue"} and g.type_of(n) == g.type_of(kernel.output) \
            and g.op(n) is not ops.concat:
        return kernel
    return None
