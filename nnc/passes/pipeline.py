"""The pass pipeline: every transformation of a graph goes through `run`, as a list of named passes.

A pass is a pure `Graph -> Graph` function with a name (`Pass`). The lists here
are the jobs nnc does to a built model, so every caller (training, gradients,
explanations, diagrams, gradient statistics) transforms graphs the same way:

    forward            shapes, simplify
    gradient           shapes, grad, loops, simplify            (Model.grad)
    unsimplified       shapes, grad                             (explain, diagrams: one node per chain-rule use)
    training_step      shapes, grad, loops, optimizer, simplify (nnc run, nnc bench)
    gradient_step      shapes, grad, loops, simplify; then       (nnc run on several workers: the gradients are
    update_step        optimizer, simplify                        averaged between the two halves)

(loops: nnc/passes/loops.py, for models with recurrent layers.)

With verification on (`NNC_VERIFY_PASSES=1`, which the test suite sets), the
graph invariants (`nnc.ir.graph.verify`) are checked after every pass, like
torch.fx's `Graph.lint()`; a pass that breaks them, or fails inside, is named.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import GraphError
from ..ir.graph import Emitter, Graph, verify
from .autodiff import grad
from .loops import keep_forward_values, sink_out_of_loops
from .optim import optimizer_update, trainable
from .simplify import simplify

STATE_PREFIX = "optimizer/"  # the optimizer's state parameters (nnc.passes.optim)


@dataclass(frozen=True)
class Pass:
    """A named, pure transformation of a graph."""

    name: str
    fn: Callable[[Graph], Graph]

    def __call__(self, g: Graph) -> Graph:
        return self.fn(g)


def verifying() -> bool:
    return os.environ.get("NNC_VERIFY_PASSES") == "1"


def run(g: Graph, passes) -> Graph:
    """Apply `passes` in order (each to the graph the one before returned)."""
    check = verifying()
    for p in passes:
        try:
            g = p(g)
            if check:
                verify(g)
        except GraphError as err:
            raise GraphError(f"pass '{p.name}': {err}") from err
    return g


def infer_shapes(g: Graph) -> Graph:
    """Recompute every node's type from its operands with the op's shape rule."""
    g = g.clone()
    for n in g.topo():
        data = g.nodes[n]
        if data["op"].arity == 0:
            continue
        data["type"] = data["op"].infer([g.nodes[o]["type"] for o in data["operands"]], data["attrs"])
    return g


SHAPES = Pass("shapes", infer_shapes)
SIMPLIFY = Pass("simplify", simplify)
# after grad: the reverse loops read the forward loops' values and leave their products to after the loop
LOOPS = [Pass("keep forward values", keep_forward_values), Pass("sink out of loops", sink_out_of_loops)]


def differentiate(of=None, wrt=None, keep=()) -> Pass:
    """The `grad` pass with its arguments bound (see nnc.passes.autodiff.grad)."""
    return Pass("grad", lambda g: grad(g, of=of, wrt=wrt, keep=keep))


def forward(g: Graph) -> Graph:
    return run(g, [SHAPES, SIMPLIFY])


def gradient(g: Graph, of=None, wrt=None, keep=()) -> Graph:
    """The simplified forward + backward graph: `grads` maps each wrt name to its gradient node."""
    return run(g, [SHAPES, differentiate(of, wrt, keep), *LOOPS, SIMPLIFY])


def unsimplified_gradient(g: Graph, of=None, wrt=None) -> Graph:
    """The forward + backward graph as the chain rule writes it: each use of a value keeps its own
    contribution (`contributions`) and each forward node its adjoint, for explanations and diagrams."""
    return run(g, [SHAPES, differentiate(of, wrt)])


def training_step(g: Graph, spec, *, weight_decay: float = 0.0, clip: float | None = None,
                  loss: str | None = None, frozen=()) -> Graph:
    """One training step of the training graph `g`: forward, backward and the update by the optimizer `spec`
    (a nnc.specs.Spec) of the parameters loss `loss` trains (default: the first loss; all of a one-loss
    model's) less the `frozen` ones, compiled together as one graph."""
    update = Pass("optimizer", optimizer_update(spec, weight_decay, clip))
    wrt = trainable(g, loss, frozen)
    if loss is None:
        return run(g, [SHAPES, differentiate(wrt=wrt), *LOOPS, update, SIMPLIFY])
    return run(g, [Pass(f"loss {loss}", select_loss(loss)), SHAPES, differentiate(wrt=wrt), *LOOPS, update,
                   Pass("optimizer state of the loss", own_optimizer_state(loss)), SIMPLIFY])


def gradient_step(g: Graph, *, frozen=()) -> Graph:
    """The first half of a data-parallel training step (nnc.train.distributed): forward and backward of the
    one-loss training graph `g`, with `grads` holding the gradient of every trainable parameter but the `frozen`
    ones; batch norm's running statistics stay in `updates`. `update_step` is the other half."""
    return run(g, [SHAPES, differentiate(wrt=trainable(g, None, frozen)), *LOOPS, SIMPLIFY])


def update_step(g: Graph, spec, names, *, weight_decay: float = 0.0, clip: float | None = None) -> Graph:
    """The second half: the parameters `names` of the training graph `g` and one input `grad/<name>` each (the
    gradients averaged over the workers), updated by the optimizer `spec` as `training_step` updates them, so
    clipping and weight decay see the averaged gradient and the state keeps the same names."""
    step = Graph(model=g.model, source=g.source, training=True)
    e = Emitter(step, stmt="optimizer", layer="gradient")
    for name in names:
        node = g.params[name]
        attrs = dict(g.nodes[node]["attrs"])
        step.params[name] = step.add_op(g.op(node), (), attrs, type=g.type_of(node), stmt="optimizer", layer=name)
        step.grads[name] = e.input(f"grad/{name}", g.type_of(node))
    return run(step, [Pass("optimizer", optimizer_update(spec, weight_decay, clip)), SIMPLIFY])


def select_loss(name: str):
    """The graph with loss `name` as its only loss (the others and what only they need are dropped)."""
    def select(g: Graph) -> Graph:
        g = g.clone()
        g.loss = g.losses[name]
        g.losses = {name: g.loss}
        g.values = {k: n for k, n in g.values.items() if k == name or k not in g.loss_groups}
        keep = g.needed_for(g.roots()) | set(g.inputs.values())   # the inputs still size the batch (randn)
        g.remove_nodes_from([n for n in list(g.nodes) if n not in keep])
        g.forget_dead()
        return g
    return select


def own_optimizer_state(loss: str):
    """Each loss has an optimizer of its own (as each of a GAN's two networks has in PyTorch): its state
    `optimizer/...` is renamed `optimizer[loss]/...`, so two losses' steps never share moments or a count."""
    def rename(g: Graph) -> Graph:
        g = g.clone()
        for old in [name for name in g.params if name.startswith(STATE_PREFIX)]:
            new = f"optimizer[{loss}]/{old[len(STATE_PREFIX):]}"
            node = g.params.pop(old)
            g.nodes[node]["attrs"]["name"] = new
            g.params[new] = node
            if old in g.updates:
                g.updates[new] = g.updates.pop(old)
        return g
    return rename
