"""The AST of a .nn file: immutable nodes, each carrying its source location."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

from ..errors import Loc


class Node:
    """What `@dataclass(frozen=True)` gave these classes, without making each class's methods from source text
    as the module loads (the 25 dataclasses cost `nnc check` about 10 ms of start-up): a node's fields are its
    class's annotations in order, a class attribute is a field's default; nodes are built from their fields by
    position or name, compare and hash as the tuple of their fields, print with them and cannot be changed."""

    _fields = ()
    _defaults = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._fields = tuple(cls.__dict__.get("__annotations__", ()))
        cls._defaults = {f: cls.__dict__[f] for f in cls._fields if f in cls.__dict__}

    def __init__(self, *args, **kwargs):
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} arguments, got {len(args)}")
        values = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name not in fields or name in values:
                raise TypeError(f"{type(self).__name__}() got an unexpected or repeated argument {name!r}")
            values[name] = value
        missing = [f for f in fields if f not in values and f not in self._defaults]
        if missing:
            raise TypeError(f"{type(self).__name__}() is missing {', '.join(map(repr, missing))}")
        self.__dict__.update({f: values[f] if f in values else self._defaults[f] for f in fields})

    def _values(self) -> tuple:
        return tuple(self.__dict__[f] for f in self._fields)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self):
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{f}={self.__dict__[f]!r}' for f in self._fields)})"

    def __setattr__(self, name, value):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}")


# ---- expressions -----------------------------------------------------------


class Number(Node):
    value: float | int
    loc: Loc


class String(Node):
    value: str
    loc: Loc


class Var(Node):
    name: str
    loc: Loc


class ListExpr(Node):
    items: tuple
    loc: Loc


class BinOp(Node):
    """`left op right` with op one of + - * / @ **."""

    op: str
    left: object
    right: object
    loc: Loc


class Neg(Node):
    operand: object
    loc: Loc


class Kwarg(Node):
    name: str
    value: object
    loc: Loc


class Call(Node):
    func: str
    args: tuple
    kwargs: tuple  # of Kwarg, in source order
    loc: Loc
    func_loc: Loc


class Slice(Node):
    """`start:stop:step` inside an index, each part None when left out."""

    start: object | None
    stop: object | None
    step: object | None
    loc: Loc


class EllipsisIndex(Node):
    """`...` inside an index: as many whole axes as the other subscripts leave."""

    loc: Loc


class Index(Node):
    """`value[sub, sub, ...]` with each sub an expression (an integer index), a Slice or an EllipsisIndex."""

    value: object
    subscripts: tuple
    loc: Loc


class Values(Node):
    """`a, b` after `return`: a block's several results."""

    items: tuple
    loc: Loc


Expr = Number | String | Var | ListExpr | BinOp | Neg | Call | Index

# ---- types -------------------------------------------------------------------


class TypeSpec(Node):
    """`float`, `int[B]`, `[B, 784]`...: dims is None for a scalar."""

    dtype: str  # "float32", "float64" or "int32"
    dims: tuple | None
    loc: Loc


# ---- statements ----------------------------------------------------------------


class InputDecl(Node):
    name: str
    type: TypeSpec | None
    loc: Loc
    name_loc: Loc


class ParamDecl(Node):
    name: str
    type: TypeSpec
    init: object | None
    loc: Loc
    name_loc: Loc


class Assign(Node):
    target: str
    value: object
    loc: Loc
    target_loc: Loc


class Unpack(Node):
    """`a, b = EXPR`: names for the several values of a block call, split or chunk."""

    targets: tuple  # of Var
    value: object
    loc: Loc


class Output(Node):
    names: tuple  # of Var
    loc: Loc


class LossStmt(Node):
    value: object
    loc: Loc
    name: str | None = None           # `loss d = ... trains disc`: a named loss
    trains: tuple = ()                # ... and the parameter-name prefixes it trains (Var nodes)


class Return(Node):
    value: object  # an expression, or Values for `return a, b`
    loc: Loc


Stmt = InputDecl | ParamDecl | Assign | Unpack | Output | LossStmt | Return

# ---- top level -------------------------------------------------------------------


class Model(Node):
    name: str
    body: tuple
    loc: Loc
    name_loc: Loc


class Block(Node):
    name: str
    params: tuple  # of Var
    body: tuple
    loc: Loc
    name_loc: Loc


class Setting(Node):
    name: str
    value: object
    loc: Loc
    name_loc: Loc


class Train(Node):
    settings: tuple
    loc: Loc


class Program(Node):
    models: tuple
    blocks: tuple
    trains: tuple
    source: object = None
