"""Symbolic reverse-mode differentiation: the backward pass as ordinary graph nodes.

`grad(g, of, wrt)` walks the nodes between the `wrt` leaves and the scalar
`of` in reverse topological order, applies each op's VJP rules (registered
next to the op in nnc/ops), sums the contributions of values used several
times with `add`, and undoes broadcasting with a `sum`. Every node it adds
records `grad_of` (the forward node) and `rule` (the text of the rule that
made it), so diagrams and `nnc explain` can show where it came from.
"""

from __future__ import annotations

import networkx as nx

from ..errors import GraphError, NncError
from ..ir import ops
from ..ir.graph import Emitter
from ..ir.ops import NoGradient, VJPAll
from ..ir.types import TensorType, TupleType, format_shape
from .simplify import simplify


class VJPContext(Emitter):
    """What a VJP rule sees while it adds the gradient of one operand of one forward node: the forward
    computation, and an Emitter whose nodes record the forward node (`grad_of`) and the rule's text."""

    def __init__(self, g, node: int, index: int | None, text: str):
        fwd = g.nodes[node]
        super().__init__(g, grad_of=node, rule=text, stmt=fwd.get("stmt"), loc=fwd.get("loc"), layer=fwd.get("layer"),
                         step=fwd.get("step"))
        self.node = node
        self.index = index

    # graphs of their own (a scan's body), for rules that differentiate one
    def emitter(self, g) -> Emitter:
        """Adds nodes to another graph `g` (such as a body being differentiated)."""
        return Emitter(g)

    def gradient_graph(self, g, of: int, wrt) -> object:
        """`g` with the gradient of its scalar `of` with respect to the inputs named `wrt` (in `grads`)."""
        return grad(g, of=of, wrt=list(wrt))

    def simplified(self, g):
        return simplify(g)

    def zeros_like(self, n: int) -> int:
        """Zeros of the type of node `n`."""
        t = self.type(n)
        zero = self.op(ops.const, value=0.0, type=TensorType((), t.dtype))
        return self.op(ops.broadcast_to, zero, shape=t.shape) if t.shape else zero

    @property
    def text(self) -> str:
        """The rule the nodes being added are recorded under."""
        return self.provenance["rule"]

    @text.setter
    def text(self, value: str) -> None:
        self.provenance["rule"] = value

    # the forward computation
    def x(self, i: int) -> int:
        return self.g.operands(self.node)[i]

    @property
    def y(self) -> int:
        return self.node

    @property
    def attrs(self) -> dict:
        return self.g.nodes[self.node]["attrs"]

    def type(self, n: int) -> TensorType:
        return self.g.type_of(n)

    def shape(self, n: int) -> tuple:
        return self.g.type_of(n).shape

    def const(self, value: float) -> int:
        """A scalar constant in the float dtype of the forward result."""
        dtype = self.g.type_of(self.node).dtype
        t = TensorType((), dtype if dtype != "int32" else "float32")
        return self.op(ops.const, value=float(value), type=t)

    def count(self, dims) -> int:
        """The number of elements spanned by `dims` (symbolic dims resolved at run time)."""
        t = TensorType((), self.g.type_of(self.node).dtype)
        return self.op(ops.count, dims=tuple(dims), type=t)

    def expand(self, dy: int, in_shape: tuple, axes: tuple) -> int:
        """Undo a reduction over `axes`: reshape to keep the reduced axes as 1, then broadcast."""
        kept = tuple(1 if i in axes else d for i, d in enumerate(in_shape))
        if self.shape(dy) != kept:
            dy = self.reshape(dy, shape=kept)
        return self.broadcast_to(dy, shape=tuple(in_shape)) if kept != tuple(in_shape) else dy

    def unbroadcast(self, dy: int, shape: tuple) -> int:
        """Sum `dy` over the axes along which an operand of `shape` was broadcast."""
        out = self.shape(dy)
        if out == tuple(shape):
            return dy
        lead = len(out) - len(shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and out[lead + i] != 1)
        saved, self.text = self.text, f"broadcast: sum over axes {list(axes)} back to {format_shape(shape)}"
        try:
            summed = self.sum(dy, axis=axes, keepdims=False) if axes else dy
            if self.shape(summed) != tuple(shape):
                summed = self.reshape(summed, shape=tuple(shape))
        finally:
            self.text = saved
        return summed


def differentiable(g, n: int) -> bool:
    return g.type_of(n).is_float


def _relevant(g, of: int, wrt) -> set[int]:
    """Nodes on some path from a wrt node to `of` (both ends included)."""
    upstream = nx.ancestors(g, of) | {of}
    down = set()
    for w in wrt:
        if w in upstream:
            down |= (nx.descendants(g, w) | {w})
    return upstream & down


def grad(g, of: int | None = None, wrt=None, keep=()):
    """Add d(of)/d(w) for every w in `wrt` (node ids or input / param names) to a copy of `g`.

    Defaults: `of` = the loss; `wrt` = all trainable parameters. Returns the new
    graph, whose `grads` maps each wrt name (or node id) to its
    gradient node and `adjoints` maps every differentiated forward
    node to its gradient node. Forward nodes listed in `keep` (by node or by
    statement name) have their gradients kept as outputs too, under their name.
    """
    g = g.clone()
    if of is None:
        of = g.loss
        if of is None:
            raise NncError("the model has no loss to differentiate", hint="pass of=<node> or declare `loss ...`")
    if g.type_of(of).shape != ():
        raise NncError(f"can only differentiate a scalar: '{g.nodes[of].get('stmt')}' has shape "
                       f"{format_shape(g.type_of(of).shape)}, expected []", g.nodes[of].get("loc"),
                       hint="reduce it first, e.g. mean(...)")
    named = {**g.inputs, **g.params}
    if wrt is None:
        wrt = [n for name, n in g.params.items() if g.nodes[n]["attrs"].get("trainable", True)]
    keys, nodes = [], []
    for w in wrt:
        n = named[w] if isinstance(w, str) else w
        if n not in g:
            raise GraphError(f"wrt node {w!r} is not in the graph")
        keys.append(w if isinstance(w, str) else _name_of(g, n))
        nodes.append(n)
    nodes_float = [n for n in nodes if differentiable(g, n)]
    relevant = _relevant(g, of, nodes_float)

    adjoint: dict[int, int] = {}
    contributions: dict[tuple, int] = {}  # (user, operand index) -> that use's share of the gradient
    seed = g.add_op(ops.const, (), {"value": 1.0, "type": TensorType((), g.type_of(of).dtype)},
                    grad_of=of, rule="seed: d out / d out = 1", stmt=g.nodes[of].get("stmt"),
                    loc=g.nodes[of].get("loc"), layer="seed")
    adjoint[of] = seed
    order = [n for n in reversed(list(nx.topological_sort(g))) if n in relevant]
    for n in order:
        if n not in adjoint:
            continue
        dy = adjoint[n]
        op = g.op(n)
        operands = g.operands(n)
        targets = [i for i, o in enumerate(operands) if o in relevant and differentiable(g, o)]
        if not targets:
            continue
        if isinstance(op.vjp, NoGradient) or op.vjp is None:
            if op.vjp is None:
                raise GraphError(f"op {op.name} has no VJP rule")
            continue  # no gradient flows through this op
        whole = op.vjp if isinstance(op.vjp, VJPAll) else None
        all_grads = whole.fn(VJPContext(g, n, None, whole.text), dy) if whole else None
        for i in targets:
            rule = op.vjp_rule(i)
            if rule is None:
                continue
            if whole:
                contribution = all_grads[i]
                if contribution is None:
                    continue
            else:
                ctx = VJPContext(g, n, i, rule.text)
                contribution = rule.fn(ctx, dy)
                if not isinstance(g.type_of(operands[i]), TupleType):
                    contribution = ctx.unbroadcast(contribution, g.type_of(operands[i]).shape)
            contributions[(n, i)] = contribution
            _accumulate(g, adjoint, operands[i], contribution, g.nodes[n]["attrs"].get("index"))
    grads = {}
    for key, n in zip(keys, nodes):
        if n in adjoint:
            grads[key] = adjoint[n]
        else:  # not on any path to `of`: its gradient is zero
            t = g.type_of(n)
            zero = g.add_op(ops.const, (), {"value": 0.0, "type": TensorType((), t.dtype if t.is_float else "float32")},
                            grad_of=n, rule="no path to the target: gradient 0", layer="zero")
            grads[key] = (g.add_op(ops.broadcast_to, (zero,), {"shape": t.shape}, grad_of=n,
                                   rule="no path to the target: gradient 0", layer="zero") if t.shape else zero)
    values = g.values
    for k in keep:
        n = values.get(k, k) if isinstance(k, str) else k
        if n in adjoint and k not in grads:
            grads[k] = adjoint[n]
    g.grads = grads
    g.adjoints = {n: a for n, a in adjoint.items() if not isinstance(a, dict)}
    g.contributions = contributions
    g.grad_of = of
    return g


def _accumulate(g, adjoint: dict, src: int, contribution: int, index: int | None) -> None:
    """Add a use's share to the adjoint of `src`; a multi-result node's adjoint is kept per result
    (`index`: the result the using `item` reads), for its VJPAll rule."""
    if isinstance(g.type_of(src), TupleType):
        per_result = adjoint.setdefault(src, {})
        per_result[index] = contribution if index not in per_result else \
            _fan_out(g, src, per_result[index], contribution)
    else:
        adjoint[src] = contribution if src not in adjoint else _fan_out(g, src, adjoint[src], contribution)


def _fan_out(g, src: int, a: int, b: int) -> int:
    return g.add_op(ops.add, (a, b), grad_of=src, rule="fan-out: gradients of a value used twice add up",
                    stmt=g.nodes[src].get("stmt"), loc=g.nodes[src].get("loc"), layer=g.nodes[src].get("layer"))


def _name_of(g, n: int):
    attrs = g.nodes[n]["attrs"]
    return attrs.get("name", n) if g.op(n) in (ops.input, ops.param) else n
