"""The op registry: one `Op` record per primitive, holding every rule about it.

Each primitive is defined once, in the module of its family (elementwise,
reduce, movement, linalg, conv, nn, leaf), with its shape rule and NumPy
reference side by side; later stages attach their rule to the same record
(`vjp` for autodiff, `lower` for the LLVM backend) right under the definition.
Passes ask questions through the category groups (`op.is_a(ELEMENTWISE)`),
never through lists of op names of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...errors import ShapeError
from ..types import TensorType

# Category groups (like tinygrad's GroupOp): what passes may ask about an op.
LEAF = "leaf"                # no operands: input, param, const
ELEMENTWISE = "elementwise"  # out[i] depends on in[i] of every (broadcast) operand
UNARY = "unary"
BINARY = "binary"
COMPARE = "compare"          # elementwise, result is 0.0 / 1.0, no gradient
REDUCE = "reduce"
MOVEMENT = "movement"        # reshape, transpose, broadcast, concat, slice
CONTRACTION = "contraction"  # matmul, conv2d and their backward forms
POOL = "pool"
NORMALIZE = "normalize"      # softmax-like ops over an axis
RANDOM = "random"            # reads the step's random stream
GROUPS = {LEAF, ELEMENTWISE, UNARY, BINARY, COMPARE, REDUCE, MOVEMENT, CONTRACTION, POOL, NORMALIZE, RANDOM}


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


def defvjp(op: Op, *rules: VJP | None) -> None:
    """Register one rule per operand (None: no gradient flows into that operand)."""
    if op.arity is not None and len(rules) != op.arity:
        raise ValueError(f"{op.name}: {len(rules)} VJP rules for {op.arity} operands")
    op.vjp = tuple(rules)


def nograd(op: Op, why: str) -> None:
    op.vjp = NoGradient(why)


@dataclass
class Op:
    name: str
    arity: int | None                 # None: any number of operands (concat)
    groups: frozenset
    shape: Callable[..., TensorType]  # shape(in_types, **attrs) -> TensorType
    ref: Callable                     # ref(*arrays, **attrs) -> ndarray
    doc: str = ""
    vjp: tuple | NoGradient | None = None     # one VJP (or None) per operand; see defvjp
    lower: Callable | None = None              # set by the LLVM backend
    attrs: tuple = field(default=())           # the attribute names the op takes
    canon: Callable | None = None              # canon(in_types, attrs) -> attrs in canonical form

    def is_a(self, group: str) -> bool:
        return group in self.groups

    def canonical(self, in_types, attrs) -> dict:
        """Attributes in one spelling (e.g. axes as a sorted tuple) so equal nodes compare equal."""
        return self.canon(list(in_types), dict(attrs)) if self.canon else attrs

    def infer(self, in_types, attrs) -> TensorType:
        if self.arity is not None and len(in_types) != self.arity:
            raise ShapeError(f"{self.name}: takes {self.arity} operand(s), got {len(in_types)}")
        return self.shape(list(in_types), **attrs)


REGISTRY: dict[str, Op] = {}


def defop(name: str, *, arity: int | None, groups, shape, ref, doc: str = "", attrs=(), canon=None) -> Op:
    if name in REGISTRY:
        raise ValueError(f"op {name!r} defined twice")
    unknown = set(groups) - GROUPS
    if unknown:
        raise ValueError(f"op {name!r}: unknown groups {unknown}")
    op = Op(name, arity, frozenset(groups), shape, ref, doc, attrs=tuple(attrs), canon=canon)
    REGISTRY[name] = op
    return op


def get(name: str) -> Op:
    return REGISTRY[name]


def ops_in(group: str) -> list[Op]:
    return [op for op in REGISTRY.values() if op.is_a(group)]
