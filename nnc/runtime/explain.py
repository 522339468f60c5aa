"""`nnc explain`: the chain rule walked node by node, from the target back to the leaves.

One line per forward node in reverse topological order:

    df/dq = df/df · ∂f/∂q = 1 · z = 1 · -4 = -4

then, for each scalar leaf reached along a single path, the whole product term
by term (the course's ∂L/∂w11 = ∂L/∂a2 · ∂a2/∂z2 · ... · ∂z11/∂w11).

A tensor step through a matrix product, a convolution, a reduction or a
broadcast add is the tensor chain rule with shapes (dW = xᵀ · dY [784, 256] =
[784, B]·[B, 256]; for s = sum(x, axis=1), dx = broadcast(ds) [B, 10] ← [B]; a
mean divides by the count it averaged; a max routes dY to the arg-max entries;
a bias added to every row gets db = sum(dY, axis=0) [256] ← [B, 256]). When every tensor
of such a step has at most SMALL_TENSOR elements, a second line gives their
numbers (written as scalars are, by nnc.text.number), so a 2×2 step can be
checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from .. import text
from ..ir import ops
from ..ir.types import TensorType
from ..passes import pipeline
from .execute import run_graph

SMALL_TENSOR = 16  # a tensor step whose tensors have at most this many elements each also prints their numbers
REDUCTIONS = (ops.sum, ops.mean, ops.max)


@dataclass
class Step:
    """One backward step: d target / d node as a sum over the node's uses."""

    node: int
    name: str
    terms: list  # of (user name, partial text, upstream value, partial value or None, rule text)
    value: np.ndarray
    line: str
    numbers: str | None = None   # a small tensor step: the numbers of its tensors, on a line of their own


@dataclass
class TensorRule:
    """One use's tensor chain rule: the rule (xᵀ · dY), its shapes, and the (symbol, value) pairs it reads."""

    rule: str
    shapes: str
    tensors: list


def _one(v) -> float:
    """The value of a one-element array of any rank (a [1, 1] tensor included)."""
    return float(np.asarray(v).reshape(-1)[0])


def _fmt(v) -> str:
    arr = np.asarray(v)
    if arr.size == 1:
        return text.number(arr.reshape(-1)[0])
    return f"{text.shape_text(arr.shape)} ‖·‖={np.linalg.norm(arr):.4g}"


class Explainer:
    def __init__(self, model, inputs: dict, params: dict, of: str | None = None, seed: int = 0,
                 backend: str | None = None, float_dtype=np.float32):
        self.model = model
        g = model.training_graph
        self.of_name, of_node = model.resolve(of, g)
        wrt = model.default_wrt()
        self.g = pipeline.unsimplified_gradient(g, of=of_node, wrt=wrt)
        self.of = of_node
        forward = [n for n in self.g.needed_for([of_node]) if self.g.nodes[n].get("grad_of") is None
                   and self.g.op(n) not in (ops.input, ops.param, ops.const)
                   and isinstance(self.g.type_of(n), TensorType)]   # not a scan's tuple of results
        targets = [of_node, *forward, *self.g.adjoints.values(), *self.g.contributions.values()]
        self.values = run_graph(self.g, inputs, params, targets, float_dtype=float_dtype, seed=seed, backend=backend)
        given = ((self.g.inputs, inputs), (self.g.params, params))
        self.leaves = {n: np.asarray(arrays[name]) for table, arrays in given for name, n in table.items()
                       if name in arrays}
        self.names = self._names()
        self._reaches: dict = {}   # node -> the nodes it reaches (its statement's value among them, or not)

    def _names(self) -> dict:
        g = self.g
        names = {}
        for label, n in g.values.items():
            names.setdefault(n, label)
        for name, n in (*g.params.items(), *g.inputs.items()):   # parameters by their names: h1.weight
            names.setdefault(n, name)
        for n in g.nodes:
            if n in names or g.nodes[n].get("grad_of") is not None:
                continue
            data = g.nodes[n]
            if data["op"] is ops.const:
                names[n] = _fmt(data["attrs"]["value"])
            else:
                names[n] = f"{data.get('stmt') or 'node'}:{data['op'].name}#{n}"
        return names

    def d(self, n) -> str:
        return f"d{self.of_name}/d{self.names[n]}"

    def named(self) -> set:
        """The nodes a person wrote a name for: statement values, inputs, parameters, the target."""
        g = self.g
        leaves = set(g.inputs.values()) | set(g.params.values())
        return set(g.values.values()) | leaves | {self.of}

    def statement_value(self, user: int) -> int:
        """The named node whose statement `user` belongs to (`user` itself when it is named, or when the name is
        another call's: a block called twice, like a GAN's discriminator, runs its statements twice)."""
        if user in self._named:
            return user
        value = self.g.values.get(self.g.nodes[user].get("stmt"), user)
        if value != user and value not in self._reaches.setdefault(user, nx.descendants(self.g, user)):
            return user
        return value

    def uses(self, n: int) -> list:
        """n's uses grouped by consuming statement: (U, Σ contributions, the single direct (user, i) or None)."""
        groups: dict[int, list] = {}
        for (user, i), node in self.g.contributions.items():
            if self.g.operands(user)[i] == n:
                groups.setdefault(self.statement_value(user), []).append((user, i, node))
        out = []
        for u, edges in sorted(groups.items()):
            total = sum(self.values[node] for _, _, node in edges)
            direct = (edges[0][0], edges[0][1]) if len(edges) == 1 and edges[0][0] == u else None
            out.append((u, total, direct, edges[0][:2] if len(edges) == 1 else None))
        return out

    def partial_text(self, u: int, n: int, edge) -> str:
        """∂u/∂n written with names: the product of the local derivatives along the one path from n to u
        inside u's statement, numbers multiplied out (−2·(y − a2) for (y − a2) ** 2); else ∂u/∂n."""
        factors = self._chain(u, edge) if edge is not None else None
        if factors is None:
            return f"∂{self.names[u]}/∂{self.names[n]}"
        return _product(factors)

    def _chain(self, u: int, edge, loose: bool = False) -> list[str] | None:
        """The local derivatives, as text, from the use `edge` = (user, operand index) up to the statement
        value u through nodes of u's statement each used once; None when the path forks or a rule has no
        template."""
        path = self._path(u, edge)
        return None if path is None else self._factors(path, loose)

    def _path(self, u: int, edge) -> list | None:
        """The (user, operand index) uses from `edge` up to the statement value u through nodes of u's statement
        each used once; None when the path forks."""
        user, index = edge
        path = [(user, index)]
        while user != u:
            nxt = [(w, i) for w in self.g.successors(user)
                   if self.g.nodes[w].get("grad_of") is None and self.statement_value(w) == u
                   for i, o in enumerate(self.g.operands(w)) if o == user]
            if len(nxt) != 1:
                return None
            user, index = nxt[0]
            path.append((user, index))
        return path

    def _factors(self, path: list, loose: bool = False) -> list[str] | None:
        factors = []
        for user, index in path:
            local = self._local(user, index)
            if local is None and loose:   # a tensor step: name the op's derivative (maxpool′) rather than stop
                local = [f"{self.g.op(user).name}′"]
            if local is None:
                return None
            factors.extend(local)
        return factors

    def _read(self, user: int, index: int) -> list[int]:
        """The nodes ∂user/∂(operand index) is written with (the base of a square, the x of [x > 0])."""
        g = self.g
        op, operands = g.op(user), g.operands(user)
        if op is ops.pow and index == 0:
            return [operands[0]]
        partial = op.vjp_rule(index).partial or ""
        read = [o for i, o in enumerate(operands) if f"{{{i}}}" in partial] + ([user] if "{y}" in partial else [])
        return [o for o in read if g.op(o) is not ops.const]

    def _local(self, user: int, index: int) -> list[str] | None:
        """∂user/∂(operand index) as factors of text (a squared base gives 2 and the base)."""
        g = self.g
        op, operands = g.op(user), g.operands(user)
        if op is ops.pow and index == 0 and g.op(operands[1]) is ops.const:
            k = float(np.asarray(g.nodes[operands[1]]["attrs"]["value"]))
            base = self.expr(operands[0])
            return [text.number(k), base if k == 2 else f"{base}^{text.number(k - 1)}"]
        rule = op.vjp_rule(index)
        if rule.partial is None:
            return None
        try:
            return [rule.partial.format(*[self.expr(o) for o in operands], y=self.expr(user))]
        except (IndexError, KeyError):
            return None

    def expr(self, n: int) -> str:
        """A node as text: its name, or for an unnamed node the expression that computes it."""
        g = self.g
        if n in self._named or g.op(n) is ops.const:
            return self.names[n]
        op, args = g.op(n), [self.expr(o) for o in g.operands(n)]
        infix = {ops.add: "+", ops.sub: "−", ops.mul: "·", ops.div: "/", ops.pow: "^", ops.matmul: "@"}
        if op in infix and len(args) == 2:
            return f"({args[0]} {infix[op]} {args[1]})"
        if op is ops.neg:
            return f"−{args[0]}"
        return f"{op.name}({', '.join(args)})"

    def steps(self) -> list[Step]:
        adj = self.g.adjoints
        self._named = self.named()
        order = [n for n in reversed(self.g.topo()) if n in adj and n in self._named]
        out = []
        for n in order:
            value = self.values[adj[n]]
            if n == self.of:
                out.append(Step(n, self.names[n], [], value, f"{self.d(n)} = 1"))
                continue
            terms = []
            uses = self.uses(n)
            rules = [self._tensor_rule(u, edge) if edge is not None else None for u, _, _, edge in uses]
            for u, total, direct, edge in uses:
                up = self.values[adj[u]]
                pv = None
                if np.asarray(up).size == 1 and np.asarray(total).size == 1 and _one(up) != 0:
                    pv = _one(total) / _one(up)
                terms.append((self.names[u], self.partial_text(u, n, edge), up, pv, self._rule(direct)))
            line, numbers = self._line(n, terms, value), None
            if rules and all(r is not None for r in rules) and np.asarray(value).size != 1:
                line = (f"{self.d(n)} = {' + '.join(r.rule for r in rules)}   "
                        f"{'; '.join(r.shapes for r in rules)}  → {_fmt(value)}")
                numbers = self._numbers(n, rules, value)
            out.append(Step(n, self.names[n], terms, value, line, numbers))
        return out

    def value_of(self, n: int):
        """A forward node's value (None when the run did not compute it)."""
        return self.leaves.get(n, self.values.get(n))

    def adjoint_value(self, n: int):
        a = self.g.adjoints.get(n)
        return None if a is None else self.values.get(a)

    def _numbers(self, n: int, rules: list, value) -> str | None:
        """`where x = [[1, 2], [3, 4]], dL/dy = [...]  → dL/dW = [...]` when every tensor is small."""
        tensors = dict(t for r in rules for t in r.tensors)
        arrays = [*tensors.values(), value]
        if any(a is None or np.asarray(a).size > SMALL_TENSOR for a in arrays):
            return None
        given = ", ".join(f"{symbol} = {_numbers(a)}" for symbol, a in tensors.items())
        return f"where {given}  → {self.d(n)} = {_numbers(value)}"

    def _tensor_rule(self, u: int, edge) -> TensorRule | None:
        """The tensor chain rule of the use `edge` on the path up to u: through a matrix product or a convolution
        it starts with, or through a reduction on the way."""
        path = self._path(u, edge)
        if path is None:
            return None
        user, index = path[0]
        if self.g.op(user) in (ops.matmul, ops.conv2d) and index in (0, 1):
            return self._product_rule(u, path)
        if self.g.op(user) in (ops.add, ops.sub) and self._broadcast_axes(user, index):
            return self._unbroadcast_rule(u, path)
        k = next((i for i, (w, _) in enumerate(path) if self.g.op(w) in REDUCTIONS), None)
        return None if k is None else self._reduction_rule(u, path, k)

    def _dy(self, u: int, after: list) -> str:
        """The gradient just after an op: d(target)/du times the local derivatives of the ops from there to u
        (a bias: 1, relu: [z > 0], a pool: maxpool′)."""
        factor = _product(self._factors(after, loose=True))
        return self.d_name(self.names[u]) if factor == "1" else f"({self.d_name(self.names[u])}·{factor})"

    def _reduction_rule(self, u: int, path: list, k: int) -> TensorRule | None:
        """Through s = sum(x, axis): dx = broadcast(ds), back to x's shape; a mean divides that by the count of
        entries it averaged (dx = broadcast(ds) / 10); a max routes it to the arg-max entries
        (dx = broadcast(ds)·[x = s]); the local derivatives of the ops before the reduction multiply it."""
        g = self.g
        before = self._factors(path[:k])
        if before is None:
            return None
        red = path[k][0]
        x = g.operands(red)[0]
        dy = self._dy(u, path[k + 1:])
        shape = g.type_of(x).shape
        axes = g.nodes[red]["attrs"].get("axis")
        core = f"broadcast({dy})"
        note = ""
        if g.op(red) is ops.mean:
            core += f" / {_count([shape[a] for a in axes] if axes is not None else shape)}"
        elif g.op(red) is ops.max:
            core += f"·[{self.expr(x)} = {self.expr(red)}]"
            note = ", routed to the arg-max entries"
        read = [o for w, i in path[:k] for o in self._read(w, i)] + ([x, red] if g.op(red) is ops.max else [])
        tensors = [(self.expr(o), self.value_of(o)) for o in read] + [(dy, self.adjoint_value(red))]
        factor = _product(before)
        rule = core if factor == "1" else f"{factor}·{core}"
        shapes = f"{text.shape_text(shape)} ← {text.shape_text(g.type_of(red).shape)}{note}"
        return TensorRule(rule, shapes, tensors)

    def _broadcast_axes(self, user: int, index: int) -> tuple:
        """The axes of user's result that its operand `index` was broadcast along (a bias: the batch axis)."""
        g = self.g
        shape, into = g.type_of(g.operands(user)[index]).shape, g.type_of(user).shape
        lead = len(into) - len(shape)
        return tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and into[lead + i] != 1)

    def _unbroadcast_rule(self, u: int, path: list) -> TensorRule:
        """A bias added to every row: its gradient sums dY over the rows, db = sum(dY, axis=0)."""
        g = self.g
        user, index = path[0]
        dy = self._dy(u, path[1:])
        axes = self._broadcast_axes(user, index)
        axis = str(axes[0]) if len(axes) == 1 else f"({', '.join(map(str, axes))})"
        sign = "−" if g.op(user) is ops.sub and index == 1 else ""
        shapes = (text.shape_text(g.type_of(o).shape) for o in (g.operands(user)[index], user))
        return TensorRule(f"{sign}sum({dy}, axis={axis})", " ← ".join(shapes), [(dy, self.adjoint_value(user))])

    def _product_rule(self, u: int, path: list) -> TensorRule:
        """The tensor chain rule of a matrix product or convolution on the path up to u, with shapes: for W
        in x @ W, dW = xᵀ · dY; for x, dx = dY · Wᵀ (a convolution: dW = x ⋆ dY, dx = dY ⋆ᵀ W), where dY (the
        gradient at the product) is d(target)/du times the local derivatives of what follows the product in u's
        statement."""
        g = self.g
        user, index = path[0]
        dy = self._dy(u, path[1:])
        a, b = g.operands(user)[:2]
        sa, sb, sy = (text.shape_text(g.type_of(o).shape) for o in (a, b, user))
        other = (self.expr(a), self.value_of(a)) if index == 1 else (self.expr(b), self.value_of(b))
        grad = (dy, self.adjoint_value(user))
        tensors = [other, grad] if index == 1 else [grad, other]
        if g.op(user) is ops.conv2d:   # the weight: the input correlated with dY; the input: dY convolved back
            if index == 1:
                return TensorRule(f"{self.expr(a)} ⋆ {dy}", f"{sb} = {sa} ⋆ {sy}   (each weight: Σ over batch and "
                                  "positions)", tensors)
            return TensorRule(f"{dy} ⋆ᵀ {self.expr(b)}", f"{sa} = {sy} ⋆ᵀ {sb}   (a transposed convolution)", tensors)
        if index == 1:
            return TensorRule(f"{self.expr(a)}ᵀ · {dy}", f"{sb} = {_transposed(sa)}·{sy}", tensors)
        return TensorRule(f"{dy} · {self.expr(b)}ᵀ", f"{sa} = {sy}·{_transposed(sb)}", tensors)

    def _rule(self, direct) -> str:
        if direct is None:
            return "through its statement"
        user, index = direct
        return self.g.op(user).vjp_rule(index).text

    def _line(self, n, terms, value) -> str:
        name = self.names[n]
        symbolic = " + ".join(f"{self.d_name(u)} · ∂{u}/∂{name}" for u, *_ in terms)
        scalar = np.asarray(value).size == 1 and all(np.asarray(up).size == 1 for _, _, up, _, _ in terms)
        if scalar:
            with_names = " + ".join(f"{_fmt(up)} · {partial}" for _, partial, up, _, _ in terms)
            numbers = " + ".join(f"{_fmt(up)} · {_fmt(pv) if pv is not None else '(' + partial + ')'}"
                                 for _, partial, up, pv, _ in terms)
            parts = [f"{self.d(n)} = {symbolic}"]
            if any(not partial.startswith("∂") for _, partial, *_ in terms):
                parts.append(with_names)
            if numbers != with_names:
                parts.append(numbers)
            parts.append(_fmt(value))
            return " = ".join(parts)
        rules = "; ".join(sorted({rule for *_, rule in terms}))
        return f"{self.d(n)} = {symbolic}   [{rules}]  → {_fmt(value)}"

    def d_name(self, user_name: str) -> str:
        return f"d{self.of_name}/d{user_name}"

    def chains(self) -> list[str]:
        """For scalar leaves with one path to the target: the chain-rule product, factor by factor."""
        g = self.g
        adj = g.adjoints
        self._named = self.named()
        lines = []
        for n in g.topo():
            if g.op(n) not in (ops.input, ops.param) or n not in adj or np.asarray(self.values[adj[n]]).size != 1:
                continue
            factors, node = [], n
            while node != self.of:
                uses = self.uses(node)
                if len(uses) != 1:
                    break
                u, total, _, _ = uses[0]
                up = self.values[adj[u]]
                if np.asarray(up).size != 1 or _one(up) == 0:
                    break
                factors.append((self.names[u], self.names[node], _one(total) / _one(up)))
                node = u
            if node != self.of or len(factors) < 2:
                continue
            factors.reverse()
            symbolic = " · ".join(f"∂{u}/∂{x}" for u, x, _ in factors)
            numbers = " · ".join(f"({_fmt(v)})" for _, _, v in factors)
            lines.append(f"{self.d(n)} = {symbolic} = {numbers} = {_fmt(self.values[adj[n]])}")
        return lines


    def text(self) -> str:
        """What `nnc explain` prints: the value, each backward step, and the product along each path."""
        out = [f"{self.of_name} = {_fmt(self.values[self.of])}", "", "backward, in reverse topological order:"]
        for s in self.steps():
            out.append("  " + s.line)
            if s.numbers:
                out.append("      " + s.numbers)
        chains = self.chains()
        if chains:
            out += ["", "chain rule along each path:"]
            out += ["  " + c for c in chains]
        return "\n".join(out)


def explain_text(model, inputs, params, of=None, seed=0, backend=None, float_dtype=np.float32) -> str:
    return Explainer(model, inputs, params, of, seed, backend, float_dtype).text()


def _product(factors: list[str]) -> str:
    """Local derivatives multiplied, the numbers among them multiplied out: −2·(y − a2) from −1, 2, (y − a2)."""
    number, symbols = 1.0, []
    for f in factors:
        try:
            number *= float(f.replace("−", "-"))
        except ValueError:
            symbols.append(f)
    body = "·".join(symbols)
    if not body:
        return text.number(number)
    if number == 1:
        return body
    return ("−" if number == -1 else f"{text.number(number)}·") + body


def _numbers(v) -> str:
    """A tensor's numbers as nested lists, each written as explain writes a scalar: [[1, 2.5], [-3, 0.25]]."""
    arr = np.asarray(v)
    if arr.ndim == 0:
        return text.number(arr.item())
    return "[" + ", ".join(_numbers(x) for x in arr) + "]"


def _count(dims) -> str:
    """How many entries a mean averages: 10, B, or (B·10) while the batch size is symbolic."""
    if all(isinstance(d, int) for d in dims):
        return str(int(np.prod(dims, dtype=np.int64)))
    dims = [d for d in dims if d != 1]
    return "·".join(map(str, dims)) if len(dims) == 1 else f"({'·'.join(map(str, dims))})"


def _transposed(shape: str) -> str:
    """[784, B] from [B, 784]: the last two dims of a shape's text swapped."""
    dims = shape.strip("[]").split(", ")
    if len(dims) >= 2:
        dims[-2], dims[-1] = dims[-1], dims[-2]
    return "[" + ", ".join(dims) + "]"
