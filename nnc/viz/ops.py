"""`--view ops` (the primitive-op graph with shapes) and `--view backward` (forward and backward together).

In the backward view every node `nnc.autodiff.grad` added is drawn in its own
colour, labelled with the rule that made it (`matmul: dA = dC · Bᵀ`), and tied
to its forward node by a dashed line; the gradients the model asked for leave
the diagram as `∂loss/∂name` arrows.
"""

from __future__ import annotations

from ..ir import ops
from ..runtime.annotate import summary, type_text
from .dot import BACKWARD_EDGE, BACKWARD_FILL, FORWARD_FILL, html_lines
from .layers import result_sinks
from .style import Options, edge_label, highlight, new_dot

LEAF_STYLE = {ops.input: {"shape": "ellipse", "style": "filled", "fillcolor": "#e8f5e9"},
              ops.param: {"shape": "box", "style": "filled", "fillcolor": "#fff8e1"},
              ops.const: {"shape": "plaintext"}}


def node_id(n: int) -> str:
    return f"n{n}"


def is_backward(g, n: int) -> bool:
    return g.nodes[n].get("grad_of") is not None


def node_label(g, n: int, *, rule: bool = False, role: str | None = None):
    data = g.nodes[n]
    op = data["op"].name
    attrs = data["attrs"]
    t = type_text(data["type"])
    if data["op"] in (ops.input, ops.param):
        return html_lines([(attrs["name"], None, True), (f"{op} {t}", None, False)])
    if data["op"] is ops.const:
        return summary(attrs["value"])
    named = [label for label, v in g.values.items() if v == n and g.nodes[n].get("grad_of") is None]
    head = f"{named[0]} = {op}" if named else op  # a statement's value carries the statement's name
    lines = [(head, None, role == "anchor"), (t, None, False)]
    if role:
        lines.append((role, "#666666", False))
    if rule and data.get("rule"):
        lines.append((data["rule"] + (f" (step {data['step']})" if data.get("step") else ""), BACKWARD_EDGE, False))
    return html_lines(lines)


def node_style(g, n: int) -> dict:
    op = g.op(n)
    if op in LEAF_STYLE:
        return dict(LEAF_STYLE[op])
    fill = BACKWARD_FILL if is_backward(g, n) else FORWARD_FILL
    return {"shape": "box", "style": "filled,rounded", "fillcolor": fill}


def statement_clusters(dot, g, nodes) -> None:
    """Group the nodes of each statement made of several ops (and of each time step of an unrolled
    recurrent layer), labelled with its name, step and line."""
    by_stmt: dict = {}
    for n in nodes:
        stmt = g.nodes[n].get("stmt")
        if stmt and g.op(n) is not ops.input:
            by_stmt.setdefault((stmt, g.nodes[n].get("step")), []).append(n)
    for i, ((stmt, step), members) in enumerate(by_stmt.items()):
        if len(members) < 2:
            continue
        loc = g.nodes[members[-1]].get("loc")
        label = stmt + (f", step {step}" if step else "") + (f"  (line {loc.span.line})" if loc is not None else "")
        dot.cluster(f"s{i}", label, [node_id(n) for n in members], style="rounded,dashed", color="#9aa7b8",
                    fontsize="10", labeljust="l")


def drawn_nodes(g, backward: bool) -> list[int]:
    keep = [n for n in g.topo() if backward or not is_backward(g, n)]
    needed = g.needed_for([t for t in g.roots() if t in g])
    return [n for n in keep if n in needed or not list(g.successors(n))]


def ops_view(g, opts: Options | None = None, *, backward: bool = False):
    opts = opts or Options()
    dot = new_dot(g.model, opts)
    # opts.nodes: one statement's ops and the values they read (a box of the step page, expanded)
    nodes = drawn_nodes(g, backward) if opts.nodes is None else list(opts.nodes)
    shown = set(nodes)
    forward = [n for n in nodes if not is_backward(g, n)]
    statement_clusters(dot, g, forward)
    for n in nodes:
        dot.node(node_id(n), node_label(g, n, rule=backward), **highlight(node_style(g, n), n in opts.highlight))
    for n in nodes:
        for i, o in enumerate(g.operands(n)):
            if o not in shown:
                continue
            attrs = opts.edge_style(g, o, n)
            if is_backward(g, n):
                attrs["color"] = BACKWARD_EDGE if is_backward(g, o) else "#9aa7b8"
            partial = opts.ann.partial_text(n, i) if opts.ann is not None and opts.partials else None
            label = edge_label(opts, o, partial) if not is_backward(g, o) else _backward_value(opts, o)
            dot.edge(node_id(o), node_id(n), label=label, **attrs)
    if backward:
        for fwd, first in first_backward_nodes(g, nodes).items():
            if fwd in shown:
                dot.edge(node_id(first), node_id(fwd), style="dashed", color="#b0b0b0", arrowhead="none",
                         constraint=False)
    for name, n in result_sinks(g):
        if n in shown:
            dot.node(f"out:{name}", name, shape="plaintext")
            dot.edge(node_id(n), f"out:{name}", label=edge_label(opts, n))
    if backward:
        for name, n in g.grads.items():
            if n in shown:
                of = g.grad_of
                of_name = g.nodes[of].get("stmt") if of is not None else "out"
                dot.node(f"grad:{name}", f"∂{of_name}/∂{name}", shape="plaintext", fontcolor=BACKWARD_EDGE)
                dot.edge(node_id(n), f"grad:{name}", color=BACKWARD_EDGE, label=_backward_value(opts, n))
    return dot


def first_backward_nodes(g, nodes) -> dict:
    """forward node -> the first backward node made for it (one dashed link per forward node)."""
    first: dict = {}
    for n in nodes:
        if is_backward(g, n) and g.op(n) is not ops.const:
            first.setdefault(g.nodes[n]["grad_of"], n)
    return first


def _backward_value(opts: Options, n: int):
    if opts.ann is None or n not in opts.ann.values:
        return None
    return html_lines([(summary(opts.ann.values[n]), BACKWARD_EDGE, False)])


def backward_view(g, opts: Options | None = None):
    """Top to bottom: the forward pass above, the backward pass growing below it."""
    opts = opts or Options(rankdir="TB")
    return ops_view(g, opts, backward=True)
