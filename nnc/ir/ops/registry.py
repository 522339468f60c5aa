"""The op registry: one `Op` record per primitive, holding its rules.

Each primitive is defined once, in the module of its family (elementwise,
reduce, movement, linalg, conv, nn, leaf), with its shape rule, NumPy
reference and gradient rule (`defvjp`) side by side, like JAX's lax.py. An op
is a constant: graph nodes hold the `Op` object itself, code names it through
`nnc.ir.ops` (`ops.matmul`), so a misspelt op fails where it is written rather
than comparing unequal. Passes ask groups and properties (`op.is_a(ELEMENTWISE)`,
`op.commutative`, `op.labels`), never lists of op names of their own. The LLVM
lowerings live in the backend's tables (nnc/backend/lower_*.py).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from ...errors import ShapeError
from ..types import TensorType


class Group(enum.Enum):
    """What passes may ask about an op (like tinygrad's GroupOp)."""

    LEAF = "leaf"                # no operands: input, param, const, count
    CONSTANT = "constant"        # a leaf whose value is known before the graph runs: const, count
    ELEMENTWISE = "elementwise"  # out[i] depends on in[i] of every (broadcast) operand
    UNARY = "unary"
    BINARY = "binary"
    COMPARE = "compare"          # elementwise, result is 0.0 / 1.0, no gradient
    REDUCE = "reduce"
    MOVEMENT = "movement"        # reshape, transpose, broadcast, concat, slice
    VIEW = "view"                # the same elements in the same order: shares its operand's storage
    EXPAND = "expand"            # the operand repeated along broadcast axes: read at a broadcast index
    CONTRACTION = "contraction"  # matmul, conv2d and their backward forms
    POOL = "pool"
    NORMALIZE = "normalize"      # softmax-like ops over an axis
    RANDOM = "random"            # reads the step's random stream
    CONTROL = "control"          # runs a graph of its own (scan: a loop over time); several results
    PROJECTION = "projection"    # one result of a multi-result op (item): storage, computed by that op


LEAF, CONSTANT, ELEMENTWISE, UNARY, BINARY, COMPARE = (Group.LEAF, Group.CONSTANT, Group.ELEMENTWISE, Group.UNARY,
                                                       Group.BINARY, Group.COMPARE)
REDUCE, MOVEMENT, VIEW, EXPAND, CONTRACTION, POOL, NORMALIZE, RANDOM = (
    Group.REDUCE, Group.MOVEMENT, Group.VIEW, Group.EXPAND, Group.CONTRACTION, Group.POOL, Group.NORMALIZE,
    Group.RANDOM)
CONTROL, PROJECTION = Group.CONTROL, Group.PROJECTION
GROUPS = frozenset(Group)


@dataclass(frozen=True)
class LabelUse:
    """An op that reads int class indices: which operand holds them and how many classes they index
    (`classes(in_types, attrs) -> int | str`, given the node's operand types and attributes)."""

    operand: int
    classes: Callable


class NoGradient:
    """The explicit answer of an op that has no useful derivative (`step`, labels)."""

    def __init__(self, why: str):
        self.why = why

    def __repr__(self) -> str:
        return f"NoGradient({self.why!r})"


@dataclass(frozen=True)
class VJP:
    """The gradient rule for one operand: `fn(ctx, dy) -> node` and the text people read.

    `ctx` (nnc.autodiff.VJPContext) gives the forward operands `ctx.x(i)`, the
    forward result `ctx.y`, the attributes `ctx.attrs`, and makes new nodes
    with `ctx.<op>(...)`, each recording the forward node and this rule's text.
    `partial` writes the local derivative with the operands' names as {0}, {1}
    and the result's as {y}, for `nnc explain`'s chain-rule lines.
    """

    text: str
    fn: Callable
    partial: str | None = None  # the local derivative ∂y/∂operand for scalars: "{1}" for mul's a, "1" for add


@dataclass(frozen=True)
class VJPAll(VJP):
    """The gradient rule of an op whose operands' gradients come from one computation (a scan's reverse
    loop): `fn(ctx, dys) -> one node (or None) per operand`, where `dys` maps each result index of the op's
    tuple to its cotangent (missing: no gradient flows back through that result)."""


def defvjp(op: Op, *rules: VJP | None) -> None:
    """Register one rule per operand (None: no gradient flows into that operand)."""
    if op.arity is not None and len(rules) != op.arity:
        raise ValueError(f"{op.name}: {len(rules)} VJP rules for {op.arity} operands")
    op.vjp = tuple(rules)


def defvjp_all(op: Op, rule: VJPAll) -> None:
    op.vjp = rule


def nograd(op: Op, why: str) -> None:
    op.vjp = NoGradient(why)


@dataclass(eq=False)  # identity is the op: nodes hold Op objects, passes compare with `is`
class Op:
    name: str
    arity: int | None                 # None: any number of operands (concat)
    groups: frozenset
    shape: Callable[..., TensorType]  # shape(in_types, **attrs) -> TensorType
    ref: Callable                     # ref(*arrays, **attrs) -> ndarray
    doc: str = ""
    vjp: tuple | VJPAll | NoGradient | None = None  # one VJP (or None) per operand, or one VJPAll; see defvjp
    attrs: tuple = field(default=())           # the attribute names the op takes
    canon: Callable | None = None              # canon(in_types, attrs) -> attrs in canonical form
    commutative: bool = False                  # op(a, b) == op(b, a) for every a, b
    labels: LabelUse | None = None             # reads int class indices (cross-entropy, one-hot)

    def __repr__(self) -> str:
        return f"<op {self.name}>"

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other) -> bool:
        if isinstance(other, str):  # a leftover name comparison would be silently False
            raise TypeError(f"compare ops by identity (`is ops.{self.name}`), not with the string {other!r}")
        return self is other

    __hash__ = object.__hash__

    def is_a(self, group: Group) -> bool:
        return group in self.groups

    def vjp_rule(self, index: int) -> VJP | None:
        """The gradient rule of operand `index` (ops of any arity share one rule); None when no gradient
        flows into it or the op has none (`NoGradient`)."""
        if isinstance(self.vjp, VJPAll):
            return self.vjp
        if not isinstance(self.vjp, tuple):
            return None
        return self.vjp[0] if self.arity is None else self.vjp[index]

    def label_operand(self, index: int, in_types) -> bool:
        """Does operand `index` hold int class indices (for operand types `in_types`)?"""
        return self.labels is not None and self.labels.operand == index and not in_types[index].is_float

    def canonical(self, in_types, attrs) -> dict:
        """Attributes in one spelling (e.g. axes as a sorted tuple) so equal nodes compare equal."""
        return self.canon(list(in_types), dict(attrs)) if self.canon else attrs

    def infer(self, in_types, attrs) -> TensorType:
        if self.arity is not None and len(in_types) != self.arity:
            raise ShapeError(f"{self.name}: takes {self.arity} operand(s), got {len(in_types)}")
        return self.shape(list(in_types), **attrs)


REGISTRY: dict[str, Op] = {}


def defop(name: str, *, arity: int | None, groups, shape, ref, doc: str = "", attrs=(), canon=None,
          commutative: bool = False, labels: LabelUse | None = None) -> Op:
    if name in REGISTRY:
        raise ValueError(f"op {name!r} defined twice")
    unknown = set(groups) - GROUPS
    if unknown:
        raise ValueError(f"op {name!r}: unknown groups {unknown}")
    op = Op(name, arity, frozenset(groups), shape, ref, doc, attrs=tuple(attrs), canon=canon,
            commutative=commutative, labels=labels)
    REGISTRY[name] = op
    return op


def get(name: str) -> Op:
    """The op called `name`; a KeyError names it when there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no op named {name!r}") from None


def ops_in(group: Group) -> list[Op]:
    return [op for op in REGISTRY.values() if op.is_a(group)]
