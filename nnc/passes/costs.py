"""Multiply-accumulates (MACs): what a graph's matrix products and convolutions cost, the count `nnc check` prints.

The convention is the one the published counts use (AlexNet 724M, VGG-16 15.5G, ResNet-50 3.9G):
one multiply-add per use of a weight, in the contractions only. A product op(a)·op(b) of
[..., M, K] and [K, N] costs M·N·K for each of its batch elements; a convolution costs its output
elements × in-channels / groups × kh × kw (the weight's size per filter; stride, padding and
dilation change the output size, not the cost per output element). Pooling, elementwise ops
(activations, bias adds, residual sums), normalization, softmax and losses are left out, as the
published counts leave them out. A `scan` (a recurrent layer) costs its body × its steps.

The count is per example: the batch, the leading symbolic dim of the model's inputs, counts once.
Any other symbolic dim (a sequence's T) stays in the count as a symbol, so a count is a polynomial
in those dims (`Macs`): 12,288·T for a dense layer on every step, 4,096·T² for attention's scores.
"""

from __future__ import annotations

import math

from ..ir import ops
from ..ir.types import TensorType, split_size


class Macs:
    """A count of multiply-adds: a whole number, or a polynomial in symbolic dims. `terms` maps a monomial,
    the sorted tuple of its symbols (("T", "T") is T²; () the constant term), to its coefficient."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict | None = None):
        self.terms = {m: c for m, c in (terms or {}).items() if c}

    @classmethod
    def of_shape(cls, shape, batch=frozenset(), times: int = 1) -> Macs:
        """`times` for every element of a tensor of `shape`, the batch symbols counted once."""
        ints, symbols = split_size(shape)
        for b in batch:
            del symbols[b]
        return cls({tuple(sorted(symbols.elements())): ints * times})

    def __add__(self, other: Macs) -> Macs:
        terms = dict(self.terms)
        for m, c in other.terms.items():
            terms[m] = terms.get(m, 0) + c
        return Macs(terms)

    def __mul__(self, other: Macs | int) -> Macs:
        if isinstance(other, int):
            return Macs({m: c * other for m, c in self.terms.items()})
        terms: dict = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in other.terms.items():
                m = tuple(sorted(m1 + m2))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Macs(terms)

    __rmul__ = __mul__

    def __eq__(self, other) -> bool:
        if isinstance(other, int):
            other = Macs({(): other})
        return isinstance(other, Macs) and self.terms == other.terms

    @property
    def symbols(self) -> set:
        """The symbolic dims the count grows with."""
        return {s for m in self.terms for s in m}

    @property
    def fixed(self) -> int | None:
        """The count as a number, or None when it depends on a symbolic dim."""
        return None if self.symbols else self.terms.get((), 0)

    def at(self, **sizes: int) -> int:
        """The count with every symbol given a size: `macs.at(T=64)`."""
        return sum(c * math.prod(sizes[s] for s in m) for m, c in self.terms.items())

    def _text(self, number, times: str, power) -> str:
        if not self.terms:
            return "0"
        parts = []
        for m, c in sorted(self.terms.items(), key=lambda mc: (len(mc[0]), mc[0])):
            factors = [s if m.count(s) == 1 else power(s, m.count(s)) for s in sorted(set(m))]
            parts.append(times.join(([number(c)] if c != 1 or not m else []) + factors))
        return " + ".join(parts)

    def __str__(self) -> str:
        """As `nnc check` prints it: 15,470,264,320 or 200,704·T + 4,096·T²."""
        superscript = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
        return self._text(lambda c: f"{c:,}", "·", lambda s, k: s + str(k).translate(superscript))

    def formula(self) -> str:
        """A Python expression in the symbols: 200704*T + 4096*T**2 (a number when there are none)."""
        return self._text(str, "*", lambda s, k: f"{s}**{k}")

    def short(self) -> str:
        """Three significant digits and a unit, as published counts are written: 15.5G, 724M, 2.29M."""
        n = self.fixed
        if n is None:
            return str(self)
        for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
            if abs(n) >= size * 0.9995:
                return f"{float(f'{n / size:.3g}'):g}{unit}"
        return str(n)

    def __repr__(self) -> str:
        return f"Macs({self.formula()})"


def batch_symbols(g) -> frozenset:
    """The batch: the leading symbolic dim of the graph's inputs (usually B)."""
    return frozenset(t.shape[0] for t in (g.type_of(n) for n in g.inputs.values())
                     if isinstance(t, TensorType) and t.shape and isinstance(t.shape[0], str))


def _matmul(g, n, batch) -> Macs:
    a = g.type_of(g.operands(n)[0])
    reduced = a.shape[-2] if g.nodes[n]["attrs"].get("ta") else a.shape[-1]
    return Macs.of_shape(g.type_of(n).shape + (reduced,), batch)


def _matmul_sum(g, n, batch) -> Macs:   # Σ over the batch of op(a)·op(b): each element of a meets N columns
    return Macs.of_shape(g.type_of(g.operands(n)[0]).shape + g.type_of(n).shape[-1:], batch)


def _conv(g, n, batch) -> Macs:          # output elements × the weight's size per filter
    return Macs.of_shape(g.type_of(n).shape, batch, _conv_per_output(g.type_of(g.operands(n)[1])))


def _conv_grad_input(g, n, batch) -> Macs:   # the forward product, transposed: the same count
    return Macs.of_shape(g.type_of(g.operands(n)[0]).shape, batch, _conv_per_output(g.type_of(g.operands(n)[1])))


def _conv_grad_weight(g, n, batch) -> Macs:  # every output-gradient element meets one filter's inputs
    return Macs.of_shape(g.type_of(g.operands(n)[1]).shape, batch, _conv_per_output(g.type_of(n)))


def _conv_per_output(weight: TensorType) -> int:
    return math.prod(weight.shape[1:])


def _scan(g, n, batch) -> Macs:
    attrs = g.nodes[n]["attrs"]
    return graph_macs(attrs["body"], batch) * attrs["length"]


# op -> its cost rule(g, node, batch symbols): every contraction (tests/test_classic.py checks it) and scan
RULES = {
    ops.matmul: _matmul,
    ops.matmul_sum: _matmul_sum,
    ops.conv2d: _conv,
    ops.conv2d_grad_input: _conv_grad_input,
    ops.conv2d_grad_weight: _conv_grad_weight,
    ops.scan: _scan,
}


def node_macs(g, n: int, batch=None) -> Macs:
    """The multiply-adds of one node (0 for an op that is not a contraction or a loop)."""
    rule = RULES.get(g.op(n))
    return rule(g, n, batch_symbols(g) if batch is None else batch) if rule else Macs()


def graph_macs(g, batch=None) -> Macs:
    """The multiply-adds of every node of the graph: for a model's forward graph, one example's forward pass."""
    batch = batch_symbols(g) if batch is None else batch
    total = Macs()
    for n in g.nodes:
        if g.op(n) in RULES:
            total += node_macs(g, n, batch)
    return total


def statement_macs(g) -> dict:
    """Statement label -> the multiply-adds of the nodes built for it, those of the blocks it calls included.

    The builder adds a statement's nodes one after the other, and its value last, so a statement owns the
    nodes after the previous statement's value, up to its own. (A node's `stmt` does not say: a block
    applied again with name= gives its nodes the block's prefix, not the statement's label.)"""
    batch = batch_symbols(g)
    counts, start = {}, -1
    order = sorted(n for n in g.nodes if g.op(n) in RULES)
    for info in g.statements:
        if info.kind == "output":
            continue
        end = max([start] + [n for n in _results(g, info) if n is not None])
        counts[info.label] = sum((node_macs(g, n, batch) for n in order if start < n <= end), Macs())
        start = end
    return counts


def _results(g, info) -> list:
    """The nodes holding a statement's values: `h, c = cell(...)` has two."""
    if info.kind == "loss":
        return [g.losses.get(info.label)]
    tables = (g.values, g.inputs, g.params)
    return [next((t[name] for t in tables if name in t), None) for name in info.label.split(", ")]


__all__ = ["Macs", "RULES", "batch_symbols", "graph_macs", "node_macs", "statement_macs"]
