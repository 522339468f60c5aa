"""Graph diagrams that teach backprop: `nnc viz` and the SVG a model shows in Jupyter.

Views (each a function graph, Options -> dot.Dot): `layers` (one box per
statement), `ops` (primitive ops), `backward` (forward and backward nodes,
each backward node labelled with its rule) and `fused` (the native kernels).
Values and gradients come from an annotation the caller made
(nnc.runtime.annotate); steps.py / html.py make the step-by-step frames and
page, heat.py the training-health heat map (the norms come from
nnc.train.grad_stats), plots.py the training curves, render.py calls Graphviz.
viz draws what it is given and never runs a model itself.
"""

from __future__ import annotations

from .fused import fused_view
from .layers import layers_view
from .ops import backward_view, ops_view
from .style import Options

VIEWS = {"layers": layers_view, "ops": ops_view, "backward": backward_view, "fused": fused_view}


def diagram(model, view: str = "layers", ann=None, partials: bool = False, training: bool = False) -> str:
    """DOT text of `model` in one view; `ann` (values.annotate) writes values and gradients on the edges;
    `training` draws the training form (dropout masks, batch statistics) instead of the evaluation form."""
    from ..runtime.annotate import gradient_graph

    if ann is not None:
        graph = ann.graph
    elif view == "backward":
        graph, _ = gradient_graph(model)
        if graph is None:
            from ..errors import NncError

            raise NncError(f"model '{model.name}' has no scalar to differentiate, so it has no backward pass",
                           hint="declare a loss, or give the model a single scalar output")
    else:
        graph = model.training_graph if training else model.graph
    opts = Options(ann=ann, partials=partials)
    if view == "backward":
        opts.rankdir = "TB"
    return VIEWS[view](graph, opts).source()


__all__ = ["VIEWS", "Options", "diagram", "layers_view", "ops_view", "backward_view", "fused_view"]
