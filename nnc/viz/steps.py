"""`--steps DIR`: one diagram per backward step, from the target back to the leaves.

The walk is `nnc explain`'s (nnc.runtime.explain.Explainer): reverse topological
order over the named values, each step's chain-rule product written out. In
frame k the node of step k is highlighted, the product is the caption, and
only the gradients known by then (steps 1..k) are written on the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import NncError
from ..fileio import atomic_write
from .render import svg_text
from .style import Options


@dataclass
class Frame:
    index: int
    node: int
    name: str
    line: str       # the chain-rule product of this step
    dot: str        # DOT source of the diagram


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


def build_frames(explainer, ann, draw, *, partials: bool = False) -> list[Frame]:
    """One frame per step of `explainer`'s walk (an nnc.runtime.explain.Explainer), drawn on the annotated
    graph `ann`; `draw(graph, options)` is the view's drawing function."""
    if ann.of_name is None:
        raise NncError(f"model '{ann.graph.model}' has no scalar to differentiate, so there are no backward steps",
                       hint="declare a loss, or pick a scalar with --of NAME")
    steps = explainer.steps()
    frames, done = [], set()
    for i, step in enumerate(steps):
        done.add(step.node)
        flow = {(step.node, u) for u, *_ in explainer.uses(step.node)} if step.node != explainer.of else set()
        opts = Options(ann=ann, partials=partials, highlight={step.node}, flow=flow,
                       grads_shown=known_gradients(ann.graph, done),
                       caption=f"step {i + 1}/{len(steps)}: {step.line}")
        frames.append(Frame(i + 1, step.node, step.name, step.line, draw(ann.graph, opts).source()))
    return frames


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
