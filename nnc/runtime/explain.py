"""`nnc explain`: the chain rule walked node by node, from the target back to the leaves.

One line per forward node in reverse topological order:

    df/dq = df/df · ∂f/∂q = 1 · z = 1 · -4 = -4

then, for each scalar leaf reached along a single path, the whole product term
by term (the course's ∂L/∂w11 = ∂L/∂a2 · ∂a2/∂z2 · ... · ∂z11/∂w11).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import text
from ..ir import ops
from ..passes import pipeline
from .execute import run_graph


@dataclass
class Step:
    """One backward step: d target / d node as a sum over the node's uses."""

    node: int
    name: str
    terms: list  # of (user name, partial text, upstream value, partial value or None, rule text)
    value: np.ndarray
    line: str


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
        targets = [of_node, *self.g.adjoints.values(), *self.g.contributions.values()]
        self.values = run_graph(self.g, inputs, params, targets, float_dtype=float_dtype, seed=seed, backend=backend)
        self.names = self._names()

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
        """The named node whose statement `user` belongs to (`user` itself when it is named)."""
        if user in self._named:
            return user
        stmt = self.g.nodes[user].get("stmt")
        return self.g.values.get(stmt, user)

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

    def _chain(self, u: int, edge, loose: bool = False) -> list[str] | None:
        """The local derivatives, as text, from the use `edge` = (user, operand index) up to the statement
        value u through nodes of u's statement each used once; None when the path forks or a rule has no
        template."""
        user, index = edge
        factors = []
        while True:
            local = self._local(user, index)
            if local is None and loose:   # a tensor step: name the op's derivative (maxpool′) rather than stop
                local = [f"{self.g.op(user).name}′"]
            if local is None:
                return None
            factors.extend(local)
            if user == u:
                return factors
            nxt = [(w, i) for w in self.g.successors(user)
                   if self.g.nodes[w].get("grad_of") is None and self.statement_value(w) == u
                   for i, o in enumerate(self.g.operands(w)) if o == user]
            if len(nxt) != 1:
                return None
            user, index = nxt[0]

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
            terms, matrix = [], None
            uses = self.uses(n)
            if len(uses) == 1 and uses[0][3] is not None:
                matrix = self._matrix_rule(uses[0][0], n, uses[0][3])
            for u, total, direct, edge in uses:
                up = self.values[adj[u]]
                pv = None
                if np.asarray(up).size == 1 and np.asarray(total).size == 1 and _one(up) != 0:
                    pv = _one(total) / _one(up)
                terms.append((self.names[u], self.partial_text(u, n, edge), up, pv, self._rule(direct)))
            line = self._line(n, terms, value)
            if matrix is not None and np.asarray(value).size != 1:
                line = f"{self.d(n)} = {matrix}  → {_fmt(value)}"
            out.append(Step(n, self.names[n], terms, value, line))
        return out

    def _matrix_rule(self, u: int, n: int, edge) -> str | None:
        """The tensor chain rule of a matrix product or convolution on the path from n to u, with shapes: for W
        in x @ W, dW = xᵀ · dY; for x, dx = dY · Wᵀ (a convolution: dW = x ⋆ dY, dx = dY ⋆ᵀ W), where dY (the
        gradient at the product) is d(target)/du times the local derivatives of what follows the product in u's
        statement (a bias: 1, relu: [z > 0], a pool: maxpool′)."""
        user, index = edge
        g = self.g
        if g.op(user) not in (ops.matmul, ops.conv2d) or index not in (0, 1):
            return None
        after = []
        if user != u:
            nxt = [(w, i) for w in g.successors(user) if g.nodes[w].get("grad_of") is None
                   and self.statement_value(w) == u for i, o in enumerate(g.operands(w)) if o == user]
            if len(nxt) != 1 or (factors := self._chain(u, nxt[0], loose=True)) is None:
                return None
            after = [f for f in factors if f != "1"]
        dy = "·".join([self.d_name(self.names[u]), *after]) if after else self.d_name(self.names[u])
        dy = f"({dy})" if after else dy
        a, b = g.operands(user)[:2]
        sa, sb, sy = (text.shape_text(g.type_of(o).shape) for o in (a, b, user))
        if g.op(user) is ops.conv2d:   # the weight: the input correlated with dY; the input: dY convolved back
            if index == 1:
                return f"{self.expr(a)} ⋆ {dy}   {sb} = {sa} ⋆ {sy}   (each weight: Σ over batch and positions)"
            return f"{dy} ⋆ᵀ {self.expr(b)}   {sa} = {sy} ⋆ᵀ {sb}   (a transposed convolution)"
        if index == 1:
            rule = f"{self.expr(a)}ᵀ · {dy}"
            shapes = f"{text.shape_text(g.type_of(b).shape)} = {_transposed(sa)}·{sy}"
        else:
            rule = f"{dy} · {self.expr(b)}ᵀ"
            shapes = f"{text.shape_text(g.type_of(a).shape)} = {sy}·{_transposed(sb)}"
        return f"{rule}   {shapes}"

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
        out += ["  " + s.line for s in self.steps()]
        chains = self.chains()
        if chains:
            out += ["", "chain rule along each path:"]
            out += ["  " + c for c in chains]
        return "\n".join(out)


def explain_text(model, inputs, params, of=None, seed=0, backend=None, float_dtype=np.float32) -> str:
    return Explainer(model, inputs, params, of, seed, backend, float_dtype).text()


def _transposed(shape: str) -> str:
    """[784, B] from [B, 784]: the last two dims of a shape's text swapped."""
    dims = shape.strip("[]").split(", ")
    if len(dims) >= 2:
        dims[-2], dims[-1] = dims[-1], dims[-2]
    return "[" + ", ".join(dims) + "]"
