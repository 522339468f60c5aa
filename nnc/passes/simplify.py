"""Simplification: algebraic rewrites, constant folding, CSE and dead-code removal.

Run after `grad` so the backward graph stays as small as a hand derivation.
Rewrite rules are data — (pattern, replacement) pairs with the algebra they
state — matched against every node until nothing changes, as in tinygrad's
PatternMatcher.

Every rewrite gives the same value as the work it drops for every float input,
NaN, ±inf and ±0 included (each rule's `holds` says what that rests on), so a
simplified graph computes what the model says: `nnc grad` reports the loss
`nnc eval` does. The one accepted difference is the sign of a zero result:
x + 0 → x keeps −0 where IEEE arithmetic gives +0. That is why there is no
x · 0 → 0 (inf · 0 and NaN · 0 are NaN) and no 0 / x → 0 (0 / 0 is NaN): a
gradient rule that would multiply by a known 0 is written not to.
Constants fold in float64 (an f64 run then sees exactly the value it would
compute; a float32 run gets the float64 value rounded once, the float32 result
itself for a single +, −, ·, / or √).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..ir import ops
from ..ir.graph import Emitter
from ..ir.ops import CONSTANT, CONTROL, EXPAND, LEAF, PROJECTION, RANDOM, VIEW, Op
from ..ir.types import broadcast_shapes

MAX_FOLDED_ELEMENTS = 64


# ---- patterns -----------------------------------------------------------------------


@dataclass(frozen=True)
class Pat:
    """Matches a node: by op (None = any), operand sub-patterns, or a scalar constant value.

    `name` binds the matched node; `commute` also tries the operands swapped.
    """

    op: Op | None = None
    operands: tuple = ()
    name: str | None = None
    value: float | None = None
    commute: bool = False


def P(op, *operands, commute=False):
    return Pat(op, tuple(operands), commute=commute)


X = Pat(name="x")
Y = Pat(name="y")
ZERO = Pat(value=0.0)
ONE = Pat(value=1.0)
MINUS_ONE = Pat(value=-1.0)


def scalar_value(g, n):
    """The value of a constant, seen through broadcast_to / reshape; None if not constant."""
    while g.op(n).is_a(VIEW) or g.op(n).is_a(EXPAND):
        n = g.operands(n)[0]
    if g.op(n) is not ops.const:
        return None
    v = np.asarray(g.nodes[n]["attrs"]["value"])
    if v.size == 0:
        return None
    first = v.reshape(-1)[0]
    return float(first) if np.all(v == first) else None


def match(g, pat: Pat, n, bound: dict) -> bool:
    if pat.value is not None:
        return scalar_value(g, n) == pat.value and _bind(pat, n, bound)
    if pat.op is not None and g.op(n) is not pat.op:
        return False
    if pat.operands:
        operands = g.operands(n)
        if len(operands) != len(pat.operands):
            return False
        orders = [operands, operands[::-1]] if pat.commute and len(operands) == 2 else [operands]
        for order in orders:
            trial = dict(bound)
            if all(match(g, p, o, trial) for p, o in zip(pat.operands, order)):
                bound.update(trial)
                return _bind(pat, n, bound)
        return False
    return _bind(pat, n, bound)


def _bind(pat, n, bound) -> bool:
    if pat.name is None:
        return True
    if pat.name in bound:
        return bound[pat.name] == n
    bound[pat.name] = n
    return True


class Rewrite:
    """What a replacement sees: the bound nodes and a way to add nodes beside the matched one."""

    def __init__(self, g, node, bound):
        self.g, self.node, self.bound = g, node, bound

    def __getattr__(self, name):
        try:
            return self.bound[name]
        except KeyError:
            raise AttributeError(name) from None

    def build(self, op: Op, *operands, **attrs) -> int:
        """A node beside the matched one, with its provenance."""
        return Emitter(self.g, **self.g.provenance(self.node)).op(op, *operands, **attrs)

    def only_use(self, n) -> bool:
        """True when the matched node is n's only user, so rewriting n away does not duplicate work."""
        return self.g.out_degree(n) == 1

    def same_shape(self, n) -> bool:
        return self.g.type_of(n) == self.g.type_of(self.node)


@dataclass(frozen=True)
class Rule:
    algebra: str
    pattern: Pat
    replace: Callable  # replace(Rewrite) -> node id, or None to decline
    holds: str         # why both sides are equal for every float operand, NaN, ±inf and ±0 included


def _if_same(m, n):
    return n if m.same_shape(n) else None


RULES = [
    Rule("identity(x) → x", P(ops.identity, X), lambda m: m.x,
         "exact: a name given to a value (a2 = z2) is the value"),
    Rule("x · 1 → x", P(ops.mul, X, ONE, commute=True), lambda m: _if_same(m, m.x),
         "exact: 1 is the identity of ·"),
    Rule("x · −1 → −x", P(ops.mul, X, MINUS_ONE, commute=True),
         lambda m: m.build(ops.neg, m.x) if m.same_shape(m.x) else None,
         "exact: a product with −1 is x with its sign flipped, for NaN, inf and 0 too"),
    Rule("x + 0 → x", P(ops.add, X, ZERO, commute=True), lambda m: _if_same(m, m.x),
         "exact for −0 (the identity of +); with +0, −0 + 0 is +0: the sign of zero"),
    Rule("x − 0 → x", P(ops.sub, X, ZERO), lambda m: _if_same(m, m.x),
         "exact for +0; x − (−0) is x + 0: the sign of zero"),
    Rule("0 − x → −x", P(ops.sub, ZERO, X), lambda m: m.build(ops.neg, m.x) if m.same_shape(m.x) else None,
         "exact for −0; with +0, 0 − 0 is +0 where −0 is −0: the sign of zero"),
    Rule("x + (−y) → x − y", P(ops.add, X, P(ops.neg, Y), commute=True),
         lambda m: m.build(ops.sub, m.x, m.y) if _negated_once(m) else None,
         "exact: IEEE 754 defines x − y as x + (−y)"),
    Rule("x − (−y) → x + y", P(ops.sub, X, P(ops.neg, Y)),
         lambda m: m.build(ops.add, m.x, m.y) if _negated_once(m) else None,
         "exact: x − (−y) is x + (−(−y)), and negation only flips the sign"),
    Rule("x / 1 → x", P(ops.div, X, ONE), lambda m: _if_same(m, m.x),
         "exact: 1 is the identity of /"),
    Rule("−(−x) → x", P(ops.neg, P(ops.neg, X)), lambda m: m.x,
         "exact: negation flips the sign bit, NaN's too"),
    Rule("(−x) · y → −(x · y)", P(ops.mul, P(ops.neg, X), Y, commute=True),
         lambda m: m.build(ops.neg, m.build(ops.mul, m.x, m.y)) if _negated_once(m) else None,
         "exact: a product's magnitude ignores signs and rounding to nearest is symmetric"),
    Rule("reshape(x) to x's own shape → x", P(ops.reshape, X), lambda m: _if_same(m, m.x),
         "moves no value"),
    Rule("reshape(reshape(x)) → reshape(x)", P(ops.reshape, P(ops.reshape, X)),
         lambda m: m.build(ops.reshape, m.x, shape=m.g.type_of(m.node).shape),
         "moves no value"),
    Rule("broadcast_to(x) to x's own shape → x", P(ops.broadcast_to, X), lambda m: _if_same(m, m.x),
         "copies each value once"),
    Rule("transpose(x) with the identity permutation → x", P(ops.transpose, X),
         lambda m: m.x if tuple(m.g.nodes[m.node]["attrs"]["perm"]) == tuple(range(m.g.type_of(m.x).rank))
         else None,
         "moves no value"),
    Rule("transpose(a) @ b → a @ b with op(a) transposed (and likewise for b), a transpose of the last two axes",
         P(ops.matmul, X, Y), lambda m: _fold_transposes(m),
         "the same products summed in the same order: the GEMM reads the operand in the other order"),
    Rule("(a₁ | 0 | …) + (0 | b₂ | …) → (a₁ | b₂ | …): concats along one axis whose pieces meet only zeros",
         P(ops.add, P(ops.concat), P(ops.concat)), lambda m: _merge_padded(m),
         "piecewise x + 0 → x (a slice's gradient is the gradient padded with zeros; the gradients of slices "
         "that tile a tensor meet nowhere): the sign of zero, as for x + 0"),
    Rule("sum over no axes → x", P(ops.sum, X),
         lambda m: m.x if not m.g.nodes[m.node]["attrs"].get("axis") and m.same_shape(m.x) else None,
         "a sum of one term is that term (a kernel adding it to 0 turns −0 into +0: the sign of zero)"),
    Rule("reshape(broadcast_to(s)) → broadcast_to(s) for a one-element s", P(ops.reshape, P(ops.broadcast_to, X)),
         lambda m: m.build(ops.broadcast_to, m.x, shape=m.g.type_of(m.node).shape) if _one_element(m, m.x) else None,
         "every element is s either way"),
    Rule("broadcast_to(s) / t → broadcast_to(s / t) for one-element s and scalar t",
         P(ops.div, P(ops.broadcast_to, X), Y),
         lambda m: m.build(ops.broadcast_to, m.build(ops.div, m.x, m.y), shape=m.g.type_of(m.node).shape)
         if _one_element(m, m.x) and m.g.type_of(m.y).shape == () else None,
         "every element is the same s / t, computed once"),
    Rule("a broadcast scalar times y → the scalar times y (broadcasting does the rest)",
         P(ops.mul, P(ops.broadcast_to, X), Y, commute=True),
         lambda m: m.build(ops.mul, m.x, m.y) if _broadcasts_to(m, m.x, m.y) else None,
         "the same pairs of values are multiplied"),
]


def _swaps_last_two(g, n) -> bool:
    if g.op(n) is not ops.transpose:
        return False
    perm = tuple(g.nodes[n]["attrs"]["perm"])
    rank = len(perm)
    return rank >= 2 and perm == tuple(range(rank - 2)) + (rank - 1, rank - 2)


def _fold_transposes(m):
    """matmul(x, y) with a transposed operand read through the ta/tb flag instead of a copy."""
    g, attrs = m.g, m.g.nodes[m.node]["attrs"]
    flags = {"ta": bool(attrs.get("ta")), "tb": bool(attrs.get("tb"))}
    operands = [m.x, m.y]
    for i, flag in enumerate(("ta", "tb")):
        if _swaps_last_two(g, operands[i]):
            operands[i] = g.operands(operands[i])[0]
            flags[flag] = not flags[flag]
    if operands == [m.x, m.y]:
        return None
    return m.build(ops.matmul, *operands, **flags)


def _merge_padded(m):
    """The sum of two concats along one axis as one concat, when at every position at most one side is
    not a constant zero; None otherwise."""
    g, node = m.g, m.node
    a, b = g.operands(node)
    axis = g.nodes[a]["attrs"]["axis"] % g.type_of(node).rank
    if g.nodes[b]["attrs"]["axis"] % g.type_of(node).rank != axis or \
            not (g.type_of(a) == g.type_of(b) == g.type_of(node)):
        return None

    def pieces(n):   # (start, stop, node or None for a zero)
        out, at = [], 0
        for p in g.operands(n):
            width = g.type_of(p).shape[axis]
            out.append((at, at + width, None if scalar_value(g, p) == 0.0 else p))
            at += width
        return out

    sides = pieces(a), pieces(b)
    if not any(p is None for side in sides for _, _, p in side):
        return None
    cuts = sorted({c for side in sides for lo, hi, _ in side for c in (lo, hi)})
    merged = []   # (start, stop, node or None), in order
    for lo, hi in zip(cuts, cuts[1:]):
        covering = [next(piece for piece in side if piece[0] <= lo < piece[1]) for side in sides]
        values = [piece for piece in covering if piece[2] is not None]
        if len(values) > 1:
            return None
        if not values:
            if merged and merged[-1][2] is None:
                merged[-1] = (merged[-1][0], hi, None)
            else:
                merged.append((lo, hi, None))
        elif not merged or merged[-1] != values[0]:
            merged.append(values[0])
    zero = next(p for side in (g.operands(a), g.operands(b)) for p in side if scalar_value(g, p) == 0.0)
    while not g.op(zero).is_a(CONSTANT):
        zero = g.operands(zero)[0]
    if any(d != 1 for d in g.type_of(zero).shape):
        return None
    shape = g.type_of(node).shape
    operands = [p if p is not None else
                m.build(ops.broadcast_to, zero, shape=shape[:axis] + (hi - lo,) + shape[axis + 1:])
                for lo, hi, p in merged]
    return operands[0] if len(operands) == 1 else m.build(ops.concat, *operands, axis=axis)


def _negated_once(m) -> bool:
    """The matched neg operand feeds only this node (else the rewrite would keep it and add nodes)."""
    negs = [o for o in m.g.operands(m.node) if m.g.op(o) is ops.neg]
    return any(m.only_use(o) for o in negs)


def _one_element(m, n) -> bool:
    return all(d == 1 for d in m.g.type_of(n).shape)


def _broadcasts_to(m, a, b) -> bool:
    try:
        return broadcast_shapes(m.g.type_of(a).shape, m.g.type_of(b).shape) == m.g.type_of(m.node).shape
    except Exception:  # noqa: BLE001 - incompatible shapes: the rule does not apply
        return False


# ---- the pass ------------------------------------------------------------------------


def rewrite(g) -> bool:
    changed = False
    for n in g.topo():
        if n not in g or g.op(n).is_a(LEAF):
            continue
        for rule in RULES:
            bound = {}
            if not match(g, rule.pattern, n, bound):
                continue
            new = rule.replace(Rewrite(g, n, bound))
            if new is None or new == n:
                continue
            if g.type_of(new) != g.type_of(n):
                raise AssertionError(f"rule '{rule.algebra}' changed the type of {g.describe(n)}")
            g.replace_uses(n, new)
            changed = True
            break
    return changed


def fold_constants(g) -> bool:
    """Evaluate ops whose operands are all small constants; the result becomes a constant.

    Floats fold in float64 and keep that value: each run rounds it to its own precision. A result
    that float64 holds but the node's own type would overflow is left to compute at run time.
    """
    changed = False
    for n in g.topo():
        op = g.op(n)
        if op.is_a(LEAF) and op is not ops.count or op.is_a(RANDOM):
            continue
        t = g.type_of(n)
        if op.is_a(CONTROL) or op.is_a(PROJECTION):
            continue
        if any(isinstance(d, str) for d in t.shape) or int(np.prod(t.shape, dtype=np.int64)) > MAX_FOLDED_ELEMENTS:
            continue
        if op is ops.count and any(isinstance(d, str) for d in g.nodes[n]["attrs"]["dims"]):
            continue
        operands = g.operands(n)
        if any(g.op(o) is not ops.const for o in operands):
            continue
        args = [np.asarray(g.nodes[o]["attrs"]["value"], dtype=_fold_dtype(g.type_of(o))) for o in operands]
        attrs = {k: v for k, v in g.nodes[n]["attrs"].items() if k != "type"}
        with np.errstate(all="ignore"):
            value = np.asarray(op.ref(*args, **attrs), dtype=_fold_dtype(t))
            if t.is_float and np.any(np.isfinite(value) & ~np.isfinite(value.astype(t.dtype))):
                continue
        folded = g.add_op(ops.const, (), {"value": value.item() if value.ndim == 0 else value, "type": t}, type=t,
                          **g.provenance(n))
        g.replace_uses(n, folded)
        g.remove_node(n)
        changed = True
    return changed


def _fold_dtype(t):
    return np.dtype("int64") if t.dtype == "int32" else np.dtype("float64")


def _key(g, n):
    data = g.nodes[n]
    if data["op"] in (ops.input, ops.param) or data["op"].is_a(RANDOM):
        return None
    attrs = []
    for k, v in sorted(data["attrs"].items()):
        if isinstance(v, np.ndarray):
            v = (v.dtype.str, v.shape, v.tobytes())
        attrs.append((k, v))
    operands = data["operands"]
    if data["op"].commutative:
        operands = tuple(sorted(operands))
    return data["op"], operands, tuple(attrs), data["type"]


def merge_common(g) -> bool:
    """Common-subexpression elimination: equal op, operands and attributes compute the same value."""
    seen = {}
    changed = False
    for n in g.topo():
        key = _key(g, n)
        if key is None:
            continue
        if key in seen:
            g.replace_uses(n, seen[key])
            g.remove_node(n)
            changed = True
        else:
            seen[key] = n
    return changed


def remove_dead(g) -> bool:
    """Drop nodes no output, loss, update or gradient needs (inputs and params stay: they are the interface)."""
    keep = g.needed_for(g.roots())
    keep |= set(g.inputs.values()) | set(g.params.values())
    dead = [n for n in g.nodes if n not in keep]
    g.remove_nodes_from(dead)
    g.forget_dead()
    g.contributions = {}  # per-use shares no longer exist once merged and folded
    return bool(dead)


def simplify(g):
    """The pass: rewrite, fold, merge and prune until nothing changes; returns a new graph."""
    g = g.clone()
    for _ in range(100):
        changed = rewrite(g)
        changed |= fold_constants(g)
        changed |= merge_common(g)
        changed |= remove_dead(g)
        if not changed:
            break
    return g
