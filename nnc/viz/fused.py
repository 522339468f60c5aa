"""`--view fused`: the native backend's kernels as clusters around the nodes each one computes.

The plan is nnc.backend.fusion's (the same `nnc compile --emit graph` prints):
one cluster per kernel, labelled with its index, kind, stored result and the
source lines it covers; the anchor is bold, pointwise prologue / epilogue nodes
say their role. Leaves and reshape views stay outside (storage, not kernels).
"""

from __future__ import annotations

from ..backend.compiler import effective_targets
from ..backend.fusion import fuse
from ..runtime.annotate import type_text
from .layers import result_sinks
from .ops import node_id, node_label, node_style
from .style import Options, highlight, new_dot

KERNEL_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d", "#eeca3b")


def fused_view(g, opts: Options | None = None, targets=None, plan=None):
    """The kernels of `plan` (default: fusing what `targets` need — the outputs, loss and updates)."""
    opts = opts or Options()
    plan = plan or fuse(g, effective_targets(g, targets))
    dot = new_dot(g.model, opts)
    needed = plan.needed
    order = [n for n in g.topo() if n in needed]
    for k in plan.kernels:
        lines = f" lines {', '.join(map(str, k.lines))}" if k.lines else ""
        label = f"k{k.index} {k.kind} → %{k.output} {type_text(g.type_of(k.output))}{lines}"
        dot.cluster(f"k{k.index}", label, [node_id(n) for n in k.nodes], style="rounded,bold",
                    color=KERNEL_COLORS[k.index % len(KERNEL_COLORS)], fontsize="10", labeljust="l")
    for n in order:
        owner = plan.owner.get(n)
        role = plan.kernels[owner].role(n) if owner is not None else ("view" if n in plan.views else None)
        style = node_style(g, n)
        if role == "view":
            style["style"] = "dashed,rounded"
        dot.node(node_id(n), node_label(g, n, role=role), **highlight(style, n in opts.highlight))
    for n in order:
        for o in g.operands(n):
            same = plan.owner.get(o) is not None and plan.owner.get(o) == plan.owner.get(n)
            dot.edge(node_id(o), node_id(n), color="#333333" if same else "#9aa7b8",
                     label=None if same else type_text(g.type_of(o)))
    for name, n in result_sinks(g):
        if n in needed:
            dot.node(f"out:{name}", name, shape="plaintext")
            dot.edge(node_id(n), f"out:{name}")
    dot.graph_attrs.setdefault("label", f"{len(plan.kernels)} kernels for {plan.primitive_ops} primitive ops")
    dot.graph_attrs.setdefault("labelloc", "t")
    return dot
