"""`--view layers`: one box per statement, output shapes on the edges, parameter counts in the boxes.

What Keras's plot_model draws, read off the graph's statement records. With
values, each edge between two statements carries the source statement's value
and d(of)/d(value); the boxes list the gradients of their parameters.
"""

from __future__ import annotations

import numpy as np

from ..runtime.annotate import number, summary, type_text
from ..text import ops_text
from .dot import GRAD_COLOR, html_lines
from .style import Options, edge_label, highlight, new_dot

SHAPES = {"input": "ellipse", "param": "box", "assign": "box", "loss": "box"}
FILLS = {"input": "#e8f5e9", "param": "#fff8e1", "assign": "#eef3fb", "loss": "#fde8e4"}


def statement_boxes(g) -> dict:
    """statement label -> its StatementInfo (outputs are a mark on their statement, not a box)."""
    return {info.label: info for info in g.statements if info.kind != "output"}


def box_id(label: str) -> str:
    return f"s:{label}"


def box_of(data: dict, boxes) -> str | None:
    """The box a node is drawn in: its statement's, or for a node made inside a block call (statements
    `r1.h`, `disc.h`, ...) the box of the model statement that called the block."""
    stmt = data.get("call") or data.get("stmt")
    return stmt if stmt in boxes else None


def statement_edges(g, boxes) -> dict:
    """(from statement, to statement) -> [(operand node, user node, operand index)] in graph order; the
    statements inside a block call count as the call's."""
    edges: dict = {}
    for n in g.topo():
        data = g.nodes[n]
        dst = box_of(data, boxes)
        if data.get("grad_of") is not None or dst is None:
            continue
        for i, o in enumerate(data["operands"]):
            src = box_of(g.nodes[o], boxes)
            if src is not None and src != dst:
                edges.setdefault((src, dst), []).append((o, n, i))
    return edges


def layers_view(g, opts: Options | None = None):
    opts = opts or Options()
    dot = new_dot(g.model, opts)
    boxes = statement_boxes(g)
    values = g.values
    for label, info in boxes.items():
        dot.node(box_id(label), _box_label(g, info, opts),
                 **highlight({"shape": SHAPES.get(info.kind, "box"), "style": "filled,rounded",
                              "fillcolor": opts.box_fill.get(label, FILLS.get(info.kind, "#eef3fb"))},
                             values.get(label) in opts.highlight or _params_highlighted(g, info, opts)))
    for (src, dst), uses in statement_edges(g, boxes).items():
        o = next((o for o, _, _ in uses if o == values.get(src)), uses[0][0])
        shape = type_text(g.type_of(o)) if opts.ann is None else None
        dot.edge(box_id(src), box_id(dst), label=edge_label(opts, o, _partial(opts, g, o, dst, uses), shape),
                 **opts.edge_style(g, o, uses[0][1]))
    for name, n in result_sinks(g):
        stmt = box_of(g.nodes[n], boxes)
        if stmt is not None:
            dot.node(f"out:{name}", name, shape="plaintext")
            shape = type_text(g.type_of(n)) if opts.ann is None else None
            dot.edge(box_id(stmt), f"out:{name}", label=edge_label(opts, n, None, shape))
    return dot


def result_sinks(g) -> list:
    """(label, node) for each output and the loss: drawn as an arrow leaving the diagram."""
    sinks = [(f"output {name}", n) for name, n in g.outputs.items()]
    if len(g.losses) > 1:
        sinks += [(f"loss {name}", n) for name, n in g.losses.items()]
    elif g.loss is not None:
        sinks.append(("loss", g.loss))
    return sinks


def _params_highlighted(g, info, opts) -> bool:
    return any(g.params.get(p) in opts.highlight for p in info.params)


def _box_label(g, info, opts: Options):
    ops = ops_text(info.ops)
    t = type_text(info.type)
    lines = [(info.label, None, True)]
    if info.kind in ("input", "param"):
        lines.append((f"{info.kind} {t}", None, False))
    else:
        lines.append((ops, None, False))
        lines.append((t, None, False))
    counts = [int(np.prod(g.type_of(g.params[p]).shape, dtype=np.int64))
              for p in info.params if p in g.params]
    if counts and info.kind != "param":  # a param statement's own edge already says what it is
        lines.append((f"{sum(counts):,} param{'s' if sum(counts) != 1 else ''}", None, False))
    if info.loc is not None:
        lines.append((f"line {info.loc.span.line}", "#666666", False))
    if info.label in opts.box_note:
        lines.append((opts.box_note[info.label], None, True))
    ann = opts.ann
    if ann is not None and info.kind != "param":
        for p in info.params:
            n = g.params.get(p)
            if n is not None and n in ann.grads and opts.shows_grad(n):
                lines.append((f"∂{ann.of_name}/∂{p} = {summary(ann.grads[n])}", GRAD_COLOR, False))
    return html_lines(lines)


def _partial(opts: Options, g, o: int, dst: str, uses) -> str | None:
    """∂dst/∂src for the edge: the rule's own text when the statement uses the value directly."""
    ann = opts.ann
    if ann is None or not opts.partials:
        return None
    value_node = g.values.get(dst)
    direct = [(n, i) for src, n, i in uses if src == o]
    if len(direct) == 1 and direct[0][0] == value_node:
        return ann.partial_text(*direct[0])
    if value_node not in ann.grads:
        return None
    up = np.asarray(ann.grads[value_node])
    shares = [ann.contributions.get((n, i)) for src, n, i in uses if src == o]
    if up.size != 1 or float(up) == 0 or any(s is None or np.asarray(s).size != 1 for s in shares):
        return None
    total = sum(float(s) for s in shares)
    return f"∂{dst}/∂{ann.names.get(o, '·')} = {number(total / float(up))}"
