"""The pass pipeline: named, pure Graph -> Graph functions in one list per job.

`run_passes` applies them in order; with `VERIFY_EACH_PASS` (set by the test
suite) the graph invariants are checked after every pass, like torch.fx's lint.
"""

from __future__ import annotations

import functools

from ..ir.graph import verify
from .autodiff import grad
from .simplify import simplify

VERIFY_EACH_PASS = False


def infer_shapes(g):
    """Recompute every node's type from its operands with the op's shape rule."""
    g = g.clone()
    for n in g.topo():
        data = g.nodes[n]
        op = data["op"]
        if op.arity == 0:
            continue
        data["type"] = op.infer([g.nodes[o]["type"] for o in data["operands"]], data["attrs"])
    return g


def differentiate(of=None, wrt=None, keep=()):
    """The `grad` pass with its arguments bound, named for the pipeline."""
    p = functools.partial(grad, of=of, wrt=wrt, keep=keep)
    p.__name__ = "grad"
    return p


def forward_pipeline() -> list:
    return [infer_shapes, simplify]


def gradient_pipeline(of=None, wrt=None, keep=()) -> list:
    return [infer_shapes, differentiate(of, wrt, keep), simplify]


def run_passes(g, passes, verify_each: bool | None = None):
    check = VERIFY_EACH_PASS if verify_each is None else verify_each
    for p in passes:
        g = p(g)
        if check:
            verify(g)
    return g
