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
edges from x. Graph-level facts are attributes of the Graph (see its docstring);
`verify` checks the nodes and every one of them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import networkx as nx

from ..errors import GraphError, Loc, ShapeError
from . import ops
from .ops import REGISTRY, Op
from .types import TensorType


@dataclass
class StatementInfo:
    """One row of `nnc check`'s summary."""

    label: str
    kind: str  # input, param, assign, output, loss
    ops: list = field(default_factory=list)
    type: TensorType | None = None
    params: list = field(default_factory=list)  # parameter names created
    loc: Loc | None = None


# the node attributes that say where a node came from (`step`: the time step of an unrolled recurrent layer;
# `call`: for a node made inside a block call, the model statement that called the block)
PROVENANCE = ("loc", "stmt", "layer", "grad_of", "rule", "step", "call")

# The graph-level tables of node references, each key -> node id:
TABLES = {
    "inputs": "input name -> its input node",
    "params": "parameter (or optimizer state) name -> its param node",
    "outputs": "output name -> the node holding it",
    "updates": "state name -> the node holding its value after a training step",
    "values": "statement label -> the node holding the statement's value (as the user named it)",
    "grads": "wrt name (or node) -> its gradient node, after the grad pass",
    "adjoints": "forward node -> d(of)/d(node), after the grad pass",
    "contributions": "(user, operand index) -> that use's share of the operand's gradient, after grad",
    "losses": "loss name -> its scalar node: every loss of a model (`loss` is the first, the one of a one-loss "
              "model, named 'loss')",
}
ROOTS = ("loss", "grad_of")  # single node references: the loss; what the grad pass differentiated


class Graph(nx.MultiDiGraph):
    """The IR: nodes are primitive ops; the graph-level facts are typed attributes.

    `model`, `source`, `training`, `statements` (one StatementInfo per source statement), `optimizer`
    (what the optimizer pass built, or None), the node tables of TABLES (`g.inputs`, `g.outputs`, ...)
    and the roots `g.loss` and `g.grad_of`. Every node reference outside the nodes lives in those
    tables, so `replace_uses` and dead-code removal keep all of them right without a list of their own.
    """

    def __init__(self, *, model: str = "model", source=None, training: bool = False):
        super().__init__()
        self.model = model
        self.source = source
        self.training = training
        self.statements: list = []
        self.optimizer: dict | None = None
        self.loss_groups: dict[str, tuple] = {}   # named loss -> the parameter-name prefixes it trains
        self._tables: dict[str, dict] = {name: {} for name in TABLES}
        self._roots: dict[str, int | None] = dict.fromkeys(ROOTS)
        self._next_id = 0

    # the tables: each property is the live dict; assigning replaces its contents
    def _table(name):  # noqa: N805 - a property factory used in the class body
        def get(self) -> dict:
            return self._tables[name]

        def put(self, value: dict) -> None:
            self._tables[name] = dict(value)
        return property(get, put, doc=TABLES[name])

    inputs = _table("inputs")
    params = _table("params")
    outputs = _table("outputs")
    updates = _table("updates")
    values = _table("values")
    grads = _table("grads")
    adjoints = _table("adjoints")
    contributions = _table("contributions")
    losses = _table("losses")
    del _table

    def loss_params(self, name: str | None = None) -> list[str]:
        """The trainable parameters loss `name` (default: the first) trains: those under the prefixes of its
        `trains` clause (`disc` names disc and disc.*), every one when it has none."""
        prefixes = self.loss_groups.get(name or next(iter(self.losses), "loss"), ())
        names = [n for n, node in self.params.items() if self.nodes[node]["attrs"]["trainable"]]
        if not prefixes:
            return names
        return [n for n in names if any(under_prefix(n, p) for p in prefixes)]

    @property
    def next_id(self) -> int:
        """The id the next node will get (unique within the graph and its clones)."""
        return self._next_id

    @property
    def loss(self) -> int | None:
        """The node of the scalar the model trains on, or None."""
        return self._roots["loss"]

    @loss.setter
    def loss(self, node: int | None) -> None:
        self._roots["loss"] = node

    @property
    def grad_of(self) -> int | None:
        """The node the grad pass differentiated, or None before it."""
        return self._roots["grad_of"]

    @grad_of.setter
    def grad_of(self, node: int | None) -> None:
        self._roots["grad_of"] = node

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
        nid = self._next_id
        self._next_id = nid + 1
        info.setdefault("loc", None)
        info.setdefault("stmt", None)
        info.setdefault("layer", op.name)
        self.add_node(nid, op=op, operands=operands, attrs=attrs, type=type, **info)
        for index, src in enumerate(operands):
            self.add_edge(src, nid, key=index)
        return nid

    def clone(self) -> Graph:
        """A copy whose node attributes and graph-level facts can be changed independently."""
        g = Graph(model=self.model, source=self.source, training=self.training)
        g.statements = list(self.statements)
        g.optimizer = copy.deepcopy(self.optimizer)
        g.loss_groups = dict(self.loss_groups)
        g._tables = {name: dict(table) for name, table in self._tables.items()}
        g._roots = dict(self._roots)
        g._next_id = self._next_id
        for n, data in self.nodes(data=True):
            g.add_node(n, **{k: (dict(v) if k == "attrs" else v) for k, v in data.items()})
        g.add_edges_from(self.edges(keys=True))
        return g

    def replace_uses(self, old: int, new: int) -> None:
        """Point every use of `old` (operands, every table, the roots) at `new`."""
        for user in list(self.successors(old)):
            ops = self.nodes[user]["operands"]
            self.nodes[user]["operands"] = tuple(new if o == old else o for o in ops)
            for index, o in enumerate(ops):
                if o == old:
                    self.remove_edge(old, user, key=index)
                    self.add_edge(new, user, key=index)
        for table in self._tables.values():
            for key, n in table.items():
                if n == old:
                    table[key] = new
        for key, n in self._roots.items():
            if n == old:
                self._roots[key] = new

    def forget_dead(self) -> None:
        """Drop table entries about nodes no longer in the graph (after nodes were removed); a
        contribution is dropped with its user, an adjoint with its forward node."""
        for name, table in self._tables.items():
            self._tables[name] = {k: n for k, n in table.items()
                                  if n in self and (name != "adjoints" or k in self)
                                  and (name != "contributions" or k[0] in self)}

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
        out = [*self.outputs.values(), *self.updates.values(), *self.grads.values(), *self.losses.values()]
        return out + [n for n in self._roots.values() if n is not None]

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
        names = {n: k for k, n in self.inputs.items()}
        names.update({n: k for k, n in self.params.items()})
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
        for name, n in self.outputs.items():
            lines.append(f"output {name} = %{n}")
        if self.loss is not None:
            lines.append(f"loss = %{self.loss}")
        for name, n in self.updates.items():
            lines.append(f"update {name} = %{n}")
        for name, n in self.grads.items():
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

    def input(self, name: str, typ: TensorType | None = None) -> int:
        """A new input of the graph, fed by name (a float32 scalar unless `typ` says)."""
        typ = typ or TensorType((), "float32")
        node = self.g.add_op(ops.input, (), {"name": name, "type": typ}, type=typ,
                             **{**self.provenance, "layer": "input"})
        self.g.inputs[name] = node
        return node


def _short_value(value) -> str:
    text = repr(value.tolist() if hasattr(value, "tolist") else value)
    return text if len(text) <= 30 else text[:27] + "..."


def verify(g: Graph, *, check_types: bool = True) -> None:
    """Check the IR invariants; raise GraphError naming the node and what is wrong.

    Acyclic; every op registered; operands exist, match the op's arity and are
    exactly the node's incoming edges; types present and equal to what the op's
    shape rule gives; every table and root points at a node of the graph (inputs
    and params at their leaves, updates at a value of their parameter's type).
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
        for name, n in g._tables[kind].items():
            if n not in g or g.op(n) is not leaf or g.nodes[n]["attrs"].get("name") != name:
                raise GraphError(f"{kind} entry {name!r} does not point at its {leaf.name} node")
    for kind, table in g._tables.items():
        for key, n in table.items():
            if n not in g:
                raise GraphError(f"{kind} entry {key!r} points at missing node {n}")
    for name, n in g.updates.items():
        if name not in g.params:
            raise GraphError(f"update {name!r} is not a parameter or state")
        if check_types and g.type_of(n) != g.type_of(g.params[name]):
            raise GraphError(f"update {name!r} is {g.type_of(n)}, its parameter {g.type_of(g.params[name])}")
    for kind, n in g._roots.items():
        if n is not None and n not in g:
            raise GraphError(f"{kind} {n} is not in the graph")
    if g.loss is not None and check_types and g.type_of(g.loss).shape != ():
        raise GraphError(f"loss {g.describe(g.loss)} is not a scalar")


def under_prefix(name: str, prefix: str) -> bool:
    """`disc` is a prefix of disc and disc.h1.weight, not of discriminator.weight."""
    return name == prefix or name.startswith(prefix + ".")
