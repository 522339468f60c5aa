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


Expr = Number | String | Var | ListExpr | BinOp | Neg | Call

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
class Output:
    names: tuple  # of Var
    loc: Loc


@dataclass(frozen=True)
class LossStmt:
    value: object
    loc: Loc


@dataclass(frozen=True)
class Return:
    value: object
    loc: Loc


Stmt = InputDecl | ParamDecl | Assign | Output | LossStmt | Return

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
