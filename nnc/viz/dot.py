"""DOT text: a small builder that writes deterministic Graphviz source (golden-file friendly).

Labels are either plain text (quoted, `\\n` for new lines) or Graphviz HTML-like
labels built with `html_lines`, which the annotated views use to put a value
(green, above) and a gradient (red, below) on one edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORWARD_FILL = "#eef3fb"
BACKWARD_FILL = "#fde8e4"
BACKWARD_EDGE = "#c0392b"
VALUE_COLOR = "#1a7f37"
GRAD_COLOR = "#cf222e"
PARTIAL_COLOR = "#0b5cad"
HIGHLIGHT_FILL = "#ffe58a"


class Html(str):
    """A label already in Graphviz's HTML-like syntax (written between < and >)."""


def quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def html_lines(lines, size: int | None = None) -> Html:
    """Lines of (text, colour or None, bold) joined with <br/>; empty texts are skipped."""
    parts = []
    for text, color, bold in lines:
        if not text:
            continue
        piece = escape(text)
        if bold:
            piece = f"<b>{piece}</b>"
        if color:
            piece = f'<font color="{color}">{piece}</font>'
        parts.append(piece)
    body = "<br/>".join(parts)
    if size:
        body = f'<font point-size="{size}">{body}</font>'
    return Html(body)


def _value(v) -> str:
    if isinstance(v, Html):
        return f"<{v}>"
    if isinstance(v, bool):
        return "true" if v else "false"
    return quote(v)


def _attrs(attrs: dict) -> str:
    items = [f"{k}={_value(v)}" for k, v in attrs.items() if v is not None]
    return f" [{', '.join(items)}]" if items else ""


@dataclass
class Cluster:
    name: str
    attrs: dict
    nodes: list = field(default_factory=list)


@dataclass
class Dot:
    """A digraph: nodes, edges and clusters, written in insertion order."""

    name: str = "nnc"
    graph_attrs: dict = field(default_factory=dict)
    node_defaults: dict = field(default_factory=lambda: {"fontname": "Helvetica", "fontsize": "11"})
    edge_defaults: dict = field(default_factory=lambda: {"fontname": "Helvetica", "fontsize": "10"})
    nodes: dict = field(default_factory=dict)      # id -> attrs
    edges: list = field(default_factory=list)      # (tail, head, attrs)
    clusters: list = field(default_factory=list)

    def node(self, nid: str, label, **attrs) -> str:
        self.nodes[nid] = {"label": label, **attrs}
        return nid

    def edge(self, tail: str, head: str, **attrs) -> None:
        self.edges.append((tail, head, attrs))

    def cluster(self, name: str, label: str, nodes, **attrs) -> Cluster:
        c = Cluster(name, {"label": label, **attrs}, list(nodes))
        self.clusters.append(c)
        return c

    def source(self) -> str:
        out = [f"digraph {quote(self.name)} {{"]
        for key, value in self.graph_attrs.items():
            out.append(f"  {key}={_value(value)};")
        out.append(f"  node{_attrs(self.node_defaults)};")
        out.append(f"  edge{_attrs(self.edge_defaults)};")
        in_cluster = {n for c in self.clusters for n in c.nodes}
        for c in self.clusters:
            out.append(f"  subgraph {quote('cluster_' + c.name)} {{")
            for key, value in c.attrs.items():
                out.append(f"    {key}={_value(value)};")
            for n in c.nodes:
                if n in self.nodes:
                    out.append(f"    {quote(n)}{_attrs(self.nodes[n])};")
            out.append("  }")
        for n, attrs in self.nodes.items():
            if n not in in_cluster:
                out.append(f"  {quote(n)}{_attrs(attrs)};")
        for tail, head, attrs in self.edges:
            out.append(f"  {quote(tail)} -> {quote(head)}{_attrs(attrs)};")
        out.append("}")
        return "\n".join(out) + "\n"
