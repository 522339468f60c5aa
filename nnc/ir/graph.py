"""The graph IR: a networkx MultiDiGraph of primitive ops, and its invariants.

A node is an int id with these attributes:
  op        the primitive (an `Op` of nnc.ir.ops: compare with `is ops.matmul`)
  operands  tuple of node ids, in operand order (never derived from edges)
  attrs     dict of the op's attributes
  type      TensorType of the result
  loc       Loc of the source expression that made it (None for synthesized nodes)
  stmt      label of the statement it belongs to ("h1", "r1.h", "loss")
  layer     the call that made it ("dense", "relu", "+") for diagrams and summaries
Backward nodes also carry `grad_of` (the forward node) and `rule` (the VJP text).

Every operand use is one edge keyed by its operand index, so `x * x` has two
edges from x. Graph-level facts live in `graph.graph`: model, source,
inputs / params / outputs (name -> node), loss, updates (state name -> node),
statements (the per-statement summary records) and training.
"""

from __future__ import annotations

import copy

import networkx as nx

from ..errors import GraphError, ShapeError
from . import ops
from .ops import REGISTRY, Op
from .types import TensorType

META_DICTS = ("inputs", "params", "outputs", "updates", "grads")
PROVENANCE = ("loc", "stmt", "layer", "grad_of", "rule")  # the node attributes that say where it came from


class Graph(nx.MultiDiGraph):
    def __init__(self, incoming_graph_data=None, **attr):
        super().__init__(incoming_graph_data, **attr)
        for key in META_DICTS:
            self.graph.setdefault(key, {})
        self.graph.setdefault("loss", None)
        self.graph.setdefault("statements", [])
        self.graph.setdefault("next_id", 0)
        self.graph.setdefault("training", False)
        self.graph.setdefault("values", {})  # statement name -> the node holding its value

    # ---- construction -------------------------------------------------------

    def add_op(self, op: Op, operands=(), attrs=None, *, type=None, **info) -> int:
        """Add a node computing `op(operands; attrs)`; infer its type unless given.

        Raises ShapeError (from the op's shape rule) before touching the graph.
        """
        if not isinstance(op, Op):
            raise TypeError(f"add_op takes an Op of nnc.ir.ops, got {op!r}")
        operands = tuple(operands)
        attrs = dict(attrs or {})
        in_types = [self.nodes[o]["type"] for o in operands]
        if op.canon is not None:
            attrs = op.canonical(in_types, attrs)
        if type is None:
            type = op.infer(in_types, attrs)
        nid = self.graph["next_id"]
        self.graph["next_id"] = nid + 1
        info.setdefault("loc", None)
        info.setdefault("stmt", None)
        info.setdefault("layer", op.name)
        self.add_node(nid, op=op, operands=operands, attrs=attrs, type=type, **info)
        for index, src in enumerate(operands):
            self.add_edge(src, nid, key=index)
        return nid

    def clone(self) -> Graph:
        """A copy whose node attributes and metadata can be changed independently."""
        g = Graph()
        g.graph.update({k: copy.copy(v) for k, v in self.graph.items()})
        for n, data in self.nodes(data=True):
            g.add_node(n, **{k: (dict(v) if k == "attrs" else v) for k, v in data.items()})
        g.add_edges_from(self.edges(keys=True))
        return g

    def replace_uses(self, old: int, new: int) -> None:
        """Point every use of `old` (operands, outputs, loss, updates) at `new`."""
        for user in list(self.successors(old)):
            ops = self.nodes[user]["operands"]
            self.nodes[user]["operands"] = tuple(new if o == old else o for o in ops)
            for index, o in enumerate(ops):
                if o == old:
                    self.remove_edge(old, user, key=index)
                    self.add_edge(new, user, key=index)
        for key in ("outputs", "updates", "grads", "adjoints", "values", "contributions"):
            for name, n in self.graph.get(key, {}).items():
                if n == old:
                    self.graph[key][name] = new
        for key in ("loss", "grad_of"):
            if self.graph.get(key) == old:
                self.graph[key] = new

    # ---- queries -----------------------------------------------------------

    def op(self, n: int) -> Op:
        return self.nodes[n]["op"]

    def operands(self, n: int) -> tuple:
        return self.nodes[n]["operands"]

    def type_of(self, n: int):
        return self.nodes[n]["type"]

    def topo(self) -> list[int]:
        return list(nx.lexicographical_topological_sort(self))

    def roots(self) -> list[int]:
        """The nodes whose values the model exposes: outputs, loss, state updates."""
        out = [*self.graph["outputs"].values(), *self.graph["updates"].values(), *self.graph["grads"].values()]
        for key in ("loss", "grad_of"):
            if self.graph.get(key) is not None:
                out.append(self.graph[key])
        return out

    def needed_for(self, targets) -> set[int]:
        need = set(targets)
        for t in targets:
            need |= nx.ancestors(self, t)
        return need

    def label_classes(self, n: int) -> int | None:
        """How many classes the int labels `n` index: the logits' width for cross_entropy, the depth
        for one_hot (the smallest when several read them); None when nothing indexes by them."""
        counts = []
        for user in self.successors(n):
            op, operands = self.op(user), self.operands(user)
            in_types = [self.type_of(o) for o in operands]
            for i, o in enumerate(operands):
                if o == n and op.label_operand(i, in_types):
                    counts.append(op.labels.classes(in_types, self.nodes[user]["attrs"]))
        counts = [c for c in counts if isinstance(c, int)]
        return min(counts) if counts else None

    def provenance(self, n: int) -> dict:
        """Where node `n` came from (its PROVENANCE attributes that are set): what a node computed in
        its place inherits."""
        data = self.nodes[n]
        return {k: data[k] for k in PROVENANCE if data.get(k) is not None}

    def describe(self, n: int) -> str:
        data = self.nodes[n]
        where = f" at {data['loc']}" if data.get("loc") is not None else ""
        label = f" of '{data['stmt']}'" if data.get("stmt") else ""
        op = data.get("op")
        return f"node {n} ({op.name if isinstance(op, Op) else op}{label}{where})"

    def dump(self) -> str:
        """One line per node in topological order: `%7 = relu(%6)  : [B, 256]  # h1`."""
        lines = []
        names = {n: k for k, n in self.graph["inputs"].items()}
        names.update({n: k for k, n in self.graph["params"].items()})
        for n in self.topo():
            d = self.nodes[n]
            args = ", ".join(f"%{o}" for o in d["operands"])
            attrs = {k: v for k, v in d["attrs"].items() if k not in ("type", "init")}
            if d["op"] is ops.const:
                args = _short_value(attrs.pop("value"))
            elif "name" in attrs:
                args = attrs.pop("name")
            attr_text = "".join(f", {k}={v}" for k, v in attrs.items())
            note = d.get("rule") or d.get("stmt") or names.get(n, "")
            lines.append(f"%{n} = {d['op'].name}({args}{attr_text}) : {d['type']}" + (f"  # {note}" if note else ""))
        for name, n in self.graph["outputs"].items():
            lines.append(f"output {name} = %{n}")
        if self.graph["loss"] is not None:
            lines.append(f"loss = %{self.graph['loss']}")
        for name, n in self.graph["updates"].items():
            lines.append(f"update {name} = %{n}")
        for name, n in self.graph["grads"].items():
            lines.append(f"grad {name} = %{n}")
        return "\n".join(lines)


class Emitter:
    """Adds nodes to a graph that all carry one provenance (`stmt`, `loc`, `layer`, and for backward
    nodes `grad_of` and `rule`): `e.op(ops.mul, a, b)`, or `e.mul(a, b)` with the op looked up by name
    (a misspelt name is a KeyError, never a silent miss), and `e.const(2.0)`."""

    def __init__(self, g: Graph, **provenance):
        self.g = g
        self.provenance = {k: v for k, v in provenance.items() if v is not None}

    def op(self, op: Op, *operands: int, **attrs) -> int:
        return self.g.add_op(op, operands, attrs, **self.provenance)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        op = ops.get(name)
        return lambda *operands, **attrs: self.op(op, *operands, **attrs)

    def const(self, value, dtype: str = "float32") -> int:
        """A scalar constant of `dtype`."""
        return self.op(ops.const, value=value, type=TensorType((), dtype))


def _short_value(value) -> str:
    text = repr(value.tolist() if hasattr(value, "tolist") else value)
    return text if len(text) <= 30 else text[:27] + "..."


def verify(g: Graph, *, check_types: bool = True) -> None:
    """Check the IR invariants; raise GraphError naming the node and what is wrong.

    Acyclic; every op registered; operands exist, match the op's arity and are
    exactly the node's incoming edges; types present and equal to what the op's
    shape rule gives; metadata points at nodes of the right kind.
    """
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        raise GraphError(f"graph has a cycle through {g.describe(cycle[0][0])}")
    for n, data in g.nodes(data=True):
        op = data.get("op")
        if not isinstance(op, Op) or REGISTRY.get(op.name) is not op:
            raise GraphError(f"node {n}: {op!r} is not an op of the registry")
        operands = data.get("operands")
        if not isinstance(operands, tuple):
            raise GraphError(f"{g.describe(n)}: operands must be a tuple, got {type(operands).__name__}")
        if op.arity is not None and len(operands) != op.arity:
            raise GraphError(f"{g.describe(n)}: {op.name} takes {op.arity} operands, has {len(operands)}")
        for o in operands:
            if o not in g:
                raise GraphError(f"{g.describe(n)}: operand {o} is not in the graph")
        edges = sorted((src, key) for src, _, key in g.in_edges(n, keys=True))
        expected = sorted((o, i) for i, o in enumerate(operands))
        if edges != expected:
            raise GraphError(f"{g.describe(n)}: incoming edges {edges} do not match operands {expected}")
        if check_types:
            t = data.get("type")
            if t is None:
                raise GraphError(f"{g.describe(n)}: no type")
            try:
                again = op.infer([g.nodes[o]["type"] for o in operands], data["attrs"])
            except ShapeError as err:
                raise GraphError(f"{g.describe(n)}: shape rule fails: {err.message}") from None
            if again != t:
                raise GraphError(f"{g.describe(n)}: stored type {t} but the shape rule gives {again}")
    for kind, leaf in (("inputs", ops.input), ("params", ops.param)):
        for name, n in g.graph[kind].items():
            if n not in g or g.op(n) is not leaf or g.nodes[n]["attrs"].get("name") != name:
                raise GraphError(f"{kind} entry {name!r} does not point at its {leaf.name} node")
    for name, n in list(g.graph["outputs"].items()) + list(g.graph["updates"].items()):
        if n not in g:
            raise GraphError(f"output or update {name!r} points at missing node {n}")
    loss = g.graph["loss"]
    if loss is not None and (loss not in g or (check_types and g.type_of(loss).shape != ())):
        raise GraphError(f"loss {loss} is missing or not a scalar")
