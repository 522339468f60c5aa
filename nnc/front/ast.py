"""The AST of a .nn file: frozen dataclasses, each carrying its source location."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Loc

# ---- expressions -----------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float | int
    loc: Loc


@dataclass(frozen=True)
class String:
    value: str
    loc: Loc


@dataclass(frozen=True)
class Var:
    name: str
    loc: Loc


@dataclass(frozen=True)
class ListExpr:
    items: tuple
    loc: Loc


@dataclass(frozen=True)
class BinOp:
    """`left op right` with op one of + - * / @ **."""

    op: str
    left: object
    right: object
    loc: Loc


@dataclass(frozen=True)
class Neg:
    operand: object
    loc: Loc


@dataclass(frozen=True)
class Kwarg:
    name: str
    value: object
    loc: Loc


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple
    kwargs: tuple  # of Kwarg, in source order
    loc: Loc
    func_loc: Loc


@dataclass(frozen=True)
class Slice:
    """`start:stop:step` inside an index, each part None when left out."""

    start: object | None
    stop: object | None
    step: object | None
    loc: Loc


@dataclass(frozen=True)
class EllipsisIndex:
    """`...` inside an index: as many whole axes as the other subscripts leave."""

    loc: Loc


@dataclass(frozen=True)
class Index:
    """`value[sub, sub, ...]` with each sub an expression (an integer index), a Slice or an EllipsisIndex."""

    value: object
    subscripts: tuple
    loc: Loc


@dataclass(frozen=True)
class Values:
    """`a, b` after `return`: a block's several results."""

    items: tuple
    loc: Loc


Expr = Number | String | Var | ListExpr | BinOp | Neg | Call | Index

# ---- types -------------------------------------------------------------------


@dataclass(frozen=True)
class TypeSpec:
    """`float`, `int[B]`, `[B, 784]`...: dims is None for a scalar."""

    dtype: str  # "float32", "float64" or "int32"
    dims: tuple | None
    loc: Loc


# ---- statements ----------------------------------------------------------------


@dataclass(frozen=True)
class InputDecl:
    name: str
    type: TypeSpec | None
    loc: Loc
    name_loc: Loc


@dataclass(frozen=True)
class ParamDecl:
    name: str
    type: TypeSpec
    init: object | None
    loc: Loc
    name_loc: Loc


@dataclass(frozen=True)
class Assign:
    target: str
    value: object
    loc: Loc
    target_loc: Loc


@dataclass(frozen=True)
class Unpack:
    """`a, b = EXPR`: names for the several values of a block call, split or chunk."""

    targets: tuple  # of Var
    value: object
    loc: Loc


@dataclass(frozen=True)
class Output:
    names: tuple  # of Var
    loc: Loc


@dataclass(frozen=True)
class LossStmt:
    value: object
    loc: Loc
    name: str | None = None           # `loss d = ... trains disc`: a named loss
    trains: tuple = ()                # ... and the parameter-name prefixes it trains (Var nodes)


@dataclass(frozen=True)
class Return:
    value: object  # an expression, or Values for `return a, b`
    loc: Loc


Stmt = InputDecl | ParamDecl | Assign | Unpack | Output | LossStmt | Return

# ---- top level -------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    name: str
    body: tuple
    loc: Loc
    name_loc: Loc


@dataclass(frozen=True)
class Block:
    name: str
    params: tuple  # of Var
    body: tuple
    loc: Loc
    name_loc: Loc


@dataclass(frozen=True)
class Setting:
    name: str
    value: object
    loc: Loc
    name_loc: Loc


@dataclass(frozen=True)
class Train:
    settings: tuple
    loc: Loc


@dataclass(frozen=True)
class Program:
    models: tuple
    blocks: tuple
    trains: tuple
    source: object = field(repr=False, default=None)
