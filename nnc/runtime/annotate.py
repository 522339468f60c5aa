"""Values and gradients for annotated diagrams: one run of the forward + backward graph.

`annotate(model, inputs, params)` differentiates the scalar the model is about
(the loss, or its single output, or `of`) with `nnc.autodiff.grad` — each
backward node keeps the rule that made it — and evaluates every node of that
graph once, natively by default (`backend="reference"` uses the interpreter).
The result maps forward nodes to their values and to d(of)/d(node), and each
operand edge to its local derivative, ready to be written on edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import text
from ..errors import NncError
from ..passes import pipeline
from .execute import check_backend, run_graph


@dataclass
class Annotation:
    graph: object                 # forward + backward graph (node ids of the forward part = training graph's)
    of_name: str | None           # what the gradients are of (None: values only)
    values: dict                  # node -> array, every node of `graph` that was computed
    grads: dict = field(default_factory=dict)          # forward node -> d of / d node
    contributions: dict = field(default_factory=dict)  # (user, operand index) -> that use's share
    names: dict = field(default_factory=dict)          # node -> the name a person wrote for it

    def name(self, n: int) -> str | None:
        return self.names.get(n)

    def value_text(self, n: int) -> str | None:
        if n not in self.values:
            return None
        name = self.names.get(n)
        return f"{name} = {summary(self.values[n])}" if name else summary(self.values[n])

    def grad_text(self, n: int) -> str | None:
        if n not in self.grads or self.of_name is None:
            return None
        name = self.names.get(n, "·")
        return f"∂{self.of_name}/∂{name} = {summary(self.grads[n])}"

    def partial(self, user: int, index: int) -> tuple[str, float | None] | None:
        """∂user/∂operand for one operand edge: (text with names, value for scalars)."""
        key = (user, index)
        if key not in self.contributions or user not in self.grads:
            return None
        g = self.graph
        src = g.operands(user)[index]
        rule = g.op(user).vjp_rule(index)
        local = f"∂{self.names.get(user, g.op(user).name)}/∂{self.names.get(src, '·')}"
        template = getattr(rule, "partial", None)
        names = [self.names.get(o) for o in g.operands(user)]
        if template is not None and all(names):
            try:
                local += " = " + template.format(*names, y=self.names.get(user, "y"))
            except (IndexError, KeyError):
                pass
        up, share = np.asarray(self.grads[user]), np.asarray(self.contributions[key])
        value = None
        if up.size == 1 and share.size == 1 and up.item() != 0:
            value = float(share.item()) / float(up.item())
        return local, value

    def partial_text(self, user: int, index: int) -> str | None:
        found = self.partial(user, index)
        if found is None:
            return None
        text, value = found
        return f"{text} = {number(value)}" if value is not None and not text.endswith(number(value)) else text


def type_text(t) -> str:
    """A type as diagrams show it: `scalar` for a plain float, else `[B, 256]` / `int[B]`; a statement naming
    several values (h, c = cell(...)) has one per value."""
    if isinstance(t, tuple):
        return ", ".join(type_text(v) for v in t)
    return "scalar" if t is not None and t.shape == () and t.dtype == "float32" else str(t or "")


def number(x: float) -> str:
    return text.number(x, 4)


summary = text.tensor_summary


def display_names(g) -> dict:
    """node -> name: statement values, inputs and parameters (a statement's name wins)."""
    names = {}
    for label, n in g.values.items():
        names.setdefault(n, label)
    for kind in ("inputs", "params"):
        for label, n in getattr(g, kind).items():
            names.setdefault(n, label)
    return names


def gradient_graph(model, of: str | None = None):
    """(graph with backward nodes, the name of what is differentiated) — (None, None) when nothing is."""
    g = model.training_graph
    try:
        of_name, of_node = model.resolve(of, g)
    except NncError:
        if of is not None:
            raise
        return None, None
    if g.type_of(of_node).shape != ():
        if of is not None:
            raise NncError(f"can only differentiate a scalar: '{of_name}' has shape {g.type_of(of_node)}, "
                           "expected []", g.nodes[of_node].get("loc"), hint="pick a scalar with --of")
        return None, None
    return pipeline.unsimplified_gradient(g, of=of_node, wrt=model.default_wrt()), of_name


def forward_nodes(g) -> list[int]:
    return [n for n in g.topo() if g.nodes[n].get("grad_of") is None]


def annotate(model, inputs: dict, params: dict, *, of: str | None = None, backend: str = "llvm",
             seed: int = 0, need_gradients: bool = False) -> Annotation:
    """Evaluate the model (and its gradients when there is a scalar to differentiate and its inputs are
    given; `need_gradients` makes a missing input an error instead of drawing values only)."""
    gg, of_name = gradient_graph(model, of)
    if gg is not None and of is None and not need_gradients and _missing(gg, inputs, [gg.grad_of]):
        gg, of_name = None, None  # e.g. an image without its label: draw the forward values only
    if gg is None:
        gg = model.training_graph
    wanted = [*gg.outputs.values(), *([gg.grad_of] if of_name else [])]
    missing = _missing(gg, inputs, wanted)
    if missing:
        raise NncError(f"no value for input '{missing[0]}' {gg.type_of(gg.inputs[missing[0]])}",
                       hint="give it with --at NAME=VALUE or --inputs IN.npz (or use --random-inputs)")
    needed = gg.needed_for(wanted)
    adjoints = gg.adjoints
    contributions = gg.contributions
    forward = [n for n in forward_nodes(gg) if n in needed]
    targets = list(dict.fromkeys([*forward, *adjoints.values(), *contributions.values()]))
    values = run_graph(gg, inputs, params, targets, seed=seed, backend=check_backend(backend))
    return Annotation(gg, of_name, values,
                      {n: values[a] for n, a in adjoints.items() if a in values},
                      {k: values[c] for k, c in contributions.items() if c in values},
                      display_names(gg))


def _missing(g, inputs: dict, wanted) -> list[str]:
    need = g.needed_for(wanted)
    return [name for name, n in g.inputs.items() if n in need and name not in inputs]
