"""What every view shares: the drawing options of one diagram and the edge-label writer."""

from __future__ import annotations

from dataclasses import dataclass, field

from .dot import GRAD_COLOR, HIGHLIGHT_FILL, PARTIAL_COLOR, VALUE_COLOR, Dot, html_lines


@dataclass
class Options:
    """ann: values and gradients to write on edges (None: structure only); partials: local derivatives
    too; highlight: nodes drawn as the current step; grads_shown: nodes whose gradient is known yet
    (None: all); caption: a line under the diagram."""

    ann: object = None
    partials: bool = False
    highlight: set = field(default_factory=set)
    grads_shown: set | None = None
    caption: str | None = None
    rankdir: str = "LR"
    flow: set = field(default_factory=set)         # (node, user's statement value): edges of the current step
    box_fill: dict = field(default_factory=dict)   # layers view: statement -> fill colour (heat maps)
    box_note: dict = field(default_factory=dict)   # layers view: statement -> an extra line
    nodes: list | None = None                       # ops view: draw only these nodes, in this order (None: all)

    def shows_grad(self, n: int) -> bool:
        return self.grads_shown is None or n in self.grads_shown

    def edge_style(self, g, src: int, user: int) -> dict:
        """Bold red for an edge the current step's gradient flows back along (src -> a node of user's statement)."""
        stmt = g.nodes[user].get("stmt")
        for n, value in self.flow:
            if n == src and (user == value or (stmt is not None and g.nodes[value].get("stmt") == stmt)):
                return {"color": GRAD_COLOR, "penwidth": "2.5"}
        return {}


def new_dot(name: str, opts: Options) -> Dot:
    attrs = {"rankdir": opts.rankdir, "nodesep": "0.3", "ranksep": "0.45", "fontname": "Helvetica"}
    if opts.caption:
        attrs.update(label=opts.caption, labelloc="t", labeljust="l", fontsize="13")
    return Dot(name, attrs)


def edge_label(opts: Options, src: int, partial: str | None = None, extra: str | None = None):
    """Value above, gradient below (the course's convention), the local derivative last."""
    ann = opts.ann
    if ann is None:
        return extra
    lines = [(extra, None, False), (ann.value_text(src), VALUE_COLOR, False)]
    if opts.shows_grad(src):
        lines.append((ann.grad_text(src), GRAD_COLOR, False))
    if opts.partials and partial:
        lines.append((partial, PARTIAL_COLOR, False))
    return html_lines(lines)


def highlight(attrs: dict, on: bool) -> dict:
    if on:
        style = attrs.get("style", "filled")
        attrs.update(style=style if "filled" in style else f"filled,{style}", fillcolor=HIGHLIGHT_FILL,
                     penwidth="3")
    return attrs
