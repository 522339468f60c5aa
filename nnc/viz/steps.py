"""`--steps DIR`: one diagram per backward step, from the target back to the leaves.

The walk is `nnc explain`'s (nnc.runtime.explain.Explainer): reverse topological
order over the named values, each step's chain-rule product written out. In
frame k the node of step k is highlighted, the product is the caption, and
only the gradients known by then (steps 1..k) are written on the edges. With
`expand`, each frame also holds, for every statement box, the diagram of that
statement's primitive ops at that step (what the page shows when the box is
clicked).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import NncError
from ..fileio import atomic_write
from .layers import box_of, statement_boxes
from .ops import drawn_nodes, ops_view
from .render import svg_text
from .style import Options


@dataclass
class Frame:
    index: int
    node: int
    name: str
    line: str       # the chain-rule product of this step
    dot: str        # DOT source of the diagram
    numbers: str | None = None                # a small tensor step: the numbers of its tensors
    ops: dict = field(default_factory=dict)   # statement -> DOT of its ops at this step (a box expanded)


def known_gradients(g, named_done: set) -> set:
    """The named nodes already walked plus the unnamed forward nodes all of whose users are known."""
    known = set(named_done)
    named = _named(g)
    for n in reversed(g.topo()):
        if n in known or g.nodes[n].get("grad_of") is not None:
            continue
        users = [u for u in g.successors(n) if g.nodes[u].get("grad_of") is None]
        if users and all(u in known for u in users) and n not in named:
            known.add(n)
    return known


def _named(g) -> set:
    return set(g.values.values()) | set(g.inputs.values()) | set(g.params.values())


def statement_ops(g) -> dict:
    """statement label -> the forward nodes its box stands for and the values they read, in the order the ops
    view draws them, for each statement that computes something (not an input or a parameter)."""
    boxes = statement_boxes(g)
    drawn = drawn_nodes(g, backward=False)
    members: dict = {}
    for n in drawn:
        label = box_of(g.nodes[n], boxes)
        if label is not None and boxes[label].kind not in ("input", "param"):
            members.setdefault(label, set()).add(n)
    return {label: [n for n in drawn if n in nodes or any(n in g.operands(m) for m in nodes)]
            for label, nodes in members.items()}


def _expanded(ann, members: dict, opts: Options, cache: dict) -> dict:
    """statement -> DOT of its ops drawn with this step's options; a statement whose nodes this step changes
    nothing on (no gradient newly known, not highlighted, no flow) reuses the drawing of an earlier step."""
    out = {}
    for label, nodes in members.items():
        drawn = set(nodes)
        key = (label, frozenset(drawn & opts.grads_shown), frozenset(drawn & opts.highlight),
               frozenset(f for f in opts.flow if f[0] in drawn))
        if key not in cache:
            cache[key] = ops_view(ann.graph, replace(opts, caption=None, rankdir="TB", nodes=nodes)).source()
        out[label] = cache[key]
    return out


def build_frames(explainer, ann, draw, *, partials: bool = False, expand: bool = False) -> list[Frame]:
    """One frame per step of `explainer`'s walk (an nnc.runtime.explain.Explainer), drawn on the annotated
    graph `ann`; `draw(graph, options)` is the view's drawing function; `expand` adds each statement's ops."""
    if ann.of_name is None:
        raise NncError(f"model '{ann.graph.model}' has no scalar to differentiate, so there are no backward steps",
                       hint="declare a loss, or pick a scalar with --of NAME")
    steps = explainer.steps()
    members = statement_ops(ann.graph) if expand else {}
    frames, done, cache = [], set(), {}
    for i, step in enumerate(steps):
        done.add(step.node)
        flow = {(step.node, u) for u, *_ in explainer.uses(step.node)} if step.node != explainer.of else set()
        opts = Options(ann=ann, partials=partials, highlight={step.node}, flow=flow,
                       grads_shown=known_gradients(ann.graph, done),
                       caption=caption(f"step {i + 1}/{len(steps)}: {step.line}"))
        ops = _expanded(ann, members, opts, cache)
        frames.append(Frame(i + 1, step.node, step.name, step.line, draw(ann.graph, opts).source(), step.numbers, ops))
    return frames


def caption(line: str, width: int = 72) -> str:
    """A step's line as the diagram's caption, on lines of at most `width` characters: a tensor step's rule with
    its shapes on one line would widen the diagram and shrink it on the page."""
    return "\n".join(textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False))


def write_frames(frames: list[Frame], folder: str | Path) -> list[Path]:
    """step-01.svg, step-02.svg, ... in `folder` (created if needed; frames of an earlier run are removed)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NncError(f"--steps: {folder} is a file, expected a folder for the frames")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("step-*.svg"):
        old.unlink()
    width = max(2, len(str(len(frames))))
    paths = []
    for frame in frames:
        path = folder / f"step-{frame.index:0{width}d}.svg"
        svg = svg_text(frame.dot).encode("utf-8")
        atomic_write(path, lambda f, data=svg: f.write(data))
        paths.append(path)
    return paths
