"""What expressions evaluate to while a model is built, and binding a call's arguments to a layer signature.

A value is a `Tensor` (a graph node), a number, a `Symbol` (a symbolic dim
used as a value), an initializer, a string, a boolean, a tuple of values (a
list), a `Literal` (a list of numbers, or of such lists: a tensor written out)
or `Values` (the several results of a block's `return a, b`, split or chunk).
Layer functions (nnc/front/layers.py) declare the kinds of value each argument
accepts with the annotations below; `bind_arguments` reads them to bind and
check a call, with located errors.
"""

from __future__ import annotations

import functools
import inspect

from ..errors import NncError, nearest
from ..ir.initializer import Init
from ..ir.types import format_shape
from . import ast


class Tensor:
    """A value of the model: a graph node."""

    __slots__ = ("node",)

    def __init__(self, node: int):
        self.node = node


class Symbol(str):
    """A symbolic dim (`B`) used as a value, e.g. in reshape(x, [B, 784])."""


class Literal(tuple):
    """A list of numbers, or of lists of one shape: a tensor written out, `[[1, 0], [0, 1]]`.

    It is still a list (reshape(x, [2, 3]) reads it as dims); where a tensor is expected it becomes a
    constant. `loc` is where it is written (its items, when lists, have theirs: errors point inside).
    """

    def __new__(cls, items, loc):
        self = super().__new__(cls, items)
        self.loc = loc
        first = items[0]
        self.shape = (len(items),) + (first.shape if isinstance(first, Literal) else ())
        return self


class Values(tuple):
    """Several values at once: a block's `return a, b`, split(...), chunk(...). They are named by
    `a, b = ...`; anywhere else one value is expected."""


# Argument kinds of layer signatures; bind_arguments reads them from the annotations.
TensorLike = Tensor | float  # a number becomes a scalar constant
Tensors = tuple              # a list of tensors: concat([a, b]), or Values: stack(split(x, 2))
Dims = tuple                 # numbers and symbols: reshape(x, [B, 784])
Ints = tuple
Axis = int | tuple | None
Size = int | tuple           # 3 or [3, 5]
Sizes = int | tuple          # 2 or [2, 3, 1]: a piece size or the sizes of the pieces (split)


INT64 = (-2**63, 2**63 - 1)


def value_kind(v) -> str:
    if isinstance(v, Values):
        return f"{len(v)} values"
    if isinstance(v, Tensor):
        return "a tensor"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, Symbol):
        return f"the dim {v}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, Init):
        return f"the initializer {v}"
    if isinstance(v, tuple):
        return "a list"
    if isinstance(v, str):
        return f'the string "{v}"'
    return type(v).__name__


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def literal(items: tuple, e: ast.ListExpr):
    """The value of a list expression: a `Literal` when it holds numbers (or lists of numbers of one
    shape), else a plain tuple; a located error when numbers and lists mix or the lists differ in shape."""
    if not items or not all(is_number(v) or isinstance(v, Literal) for v in items):
        return items
    first = items[0]
    for v, item in zip(items, e.items):
        if is_number(v) != is_number(first):
            raise NncError(f"a tensor written out mixes numbers and lists: got {value_kind(v)}, expected "
                           f"{value_kind(first) if is_number(first) else 'a list like the first item'}", item.loc,
                           hint="every item of one list is a number, or every item is a list of the same shape")
        if isinstance(v, Literal) and v.shape != first.shape:
            raise NncError(f"the rows of a tensor written out differ in shape: got {format_shape(v.shape)}, expected "
                           f"{format_shape(first.shape)} like the first", item.loc,
                           hint="a tensor is rectangular: every row has as many items")
    return Literal(items, e.loc)


def literal_mismatch(lit: Literal, shape: tuple):
    """Where a literal's shape first differs from `shape`: (dim, its length there, the Loc of the first list
    at that depth); None when the shapes agree. When the dims they share agree but one has more levels of
    nesting: (the number of shared dims, None, the Loc of the outer list)."""
    if lit.shape == tuple(shape):
        return None
    node = lit
    for dim, (got, want) in enumerate(zip(lit.shape, shape)):
        if got != want:
            return dim, got, node.loc
        node = node[0]
    return len(min(lit.shape, shape, key=len)), None, lit.loc


def several_hint(v) -> str | None:
    """For a message about several values where one is expected: how to name them."""
    if not isinstance(v, Values):
        return None
    return f"name them first: {value_names(len(v))} = ..., then use one"


def value_names(count: int) -> str:
    """Example names for `count` values: "a, b, c" (and ", ..." past three)."""
    return ", ".join("abc"[:min(count, 3)]) + (", ..." if count > 3 else "")


def did_you_mean(name: str, candidates, what: str) -> str | None:
    close = nearest(name, candidates)
    return f"did you mean '{close}'?" if close else None


# ---- argument binding -----------------------------------------------------------------


def _accepts(kind: str, v) -> bool:
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "Tensor":
        return isinstance(v, Tensor)
    if kind == "TensorLike":
        return isinstance(v, (Tensor, Literal)) or number
    if kind == "int":  # 3.0 is an int; 1e308 is not, nor anything past int64
        return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer() \
            and abs(v) <= INT64[1]
    if kind == "float":
        return number
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "Init":  # a number is constant(v); a Literal gives every value (checked when the parameter is made)
        return isinstance(v, (Init, Literal)) or number
    if kind == "str":
        return isinstance(v, str) and not isinstance(v, Symbol)
    if kind == "Tensors":
        return isinstance(v, tuple) and all(isinstance(i, Tensor) for i in v)
    if kind == "Dims":
        return isinstance(v, tuple) and all(isinstance(i, (int, Symbol)) and not isinstance(i, bool) for i in v)
    if kind == "Ints":
        return (isinstance(v, tuple) and all(isinstance(i, int) and not isinstance(i, bool) for i in v))
    if kind == "Axis":
        return v is None or _accepts("int", v) or _accepts("Ints", v)
    if kind == "Size":
        return _accepts("int", v) or (_accepts("Ints", v) and len(v) == 2)
    if kind == "Sizes":
        return _accepts("int", v) or (_accepts("Ints", v) and len(v) > 0)
    raise AssertionError(kind)


_KIND_TEXT = {
    "Tensor": "a tensor", "TensorLike": "a tensor or a number", "int": "an integer", "float": "a number",
    "bool": "true or false", "Init": "an initializer", "str": "a string", "Tensors": "a list of tensors",
    "Dims": "a list of dims", "Ints": "a list of integers", "Axis": "an axis or a list of axes",
    "Size": "an integer or [height, width]", "Sizes": "an integer or a list of integers",
}


def _coerce(kind: str, v):
    if isinstance(v, Literal) and kind not in ("TensorLike", "Init"):  # a list where a list is meant: [2, 3]
        v = tuple(v)
    if kind == "int" and isinstance(v, float):
        return int(v)
    if kind == "float" and isinstance(v, int):
        return float(v)
    if kind == "Init" and not isinstance(v, (Init, Literal)):
        return Init("constant", (float(v),))
    if kind in ("Axis", "Size", "Sizes") and isinstance(v, float):  # they accept a whole float as an int: kernel 3.0
        return int(v)
    return v


@functools.cache
def _parameters(fn) -> tuple:
    """A layer function's parameters after the builder argument, read once per function."""
    return tuple(inspect.signature(fn).parameters.values())[1:]


def bind_arguments(call: ast.Call, fn, args: list, kwargs: dict):
    """Bind a call's values to a layer function's signature, checking kinds.

    The signature (after the builder argument) is read from the function:
    annotations name the accepted kinds, defaults make arguments optional and
    `*rest` takes any number of tensors.
    """
    params = _parameters(fn)
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    variadic = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
    bound = {}
    name = call.func
    if variadic is None and len(args) > len(positional):
        raise NncError(f"{name}: too many arguments: got {len(args)}, expected at most {len(positional)} "
                       f"({', '.join(p.name for p in positional)})", call.args[len(positional)].loc)
    for i, (p, v) in enumerate(zip(positional, args)):
        bound[p.name] = (v, call.args[i].loc)
    rest = args[len(positional):]
    by_name = {p.name: p for p in params if p.kind is not p.VAR_POSITIONAL}
    kwarg_locs = {kw.name: kw.loc for kw in call.kwargs}  # `pad=1` as a whole, for errors about the keyword
    for key, (v, loc) in kwargs.items():
        if key not in by_name:
            raise NncError(f"{name}: unknown keyword argument '{key}'", kwarg_locs.get(key, loc),
                           hint=did_you_mean(key, list(by_name), "arguments")
                           or f"{name} takes ({', '.join(by_name)})")
        if key in bound:
            raise NncError(f"{name}: argument '{key}' given twice", kwarg_locs.get(key, loc),
                           hint=f"it is also argument {[p.name for p in positional].index(key) + 1} by position")
        bound[key] = (v, loc)
    result = {}
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            continue
        if p.name not in bound:
            if p.default is inspect.Parameter.empty:
                raise NncError(f"{name}: missing argument '{p.name}'", call.loc,
                               hint=f"{name} takes ({', '.join(q.name for q in positional)})")
            result[p.name] = p.default
            continue
        v, loc = bound[p.name]
        kind = p.annotation
        if not _accepts(kind, v) and not (v is None and p.default is None):
            raise NncError(f"{name}: {p.name} must be {_KIND_TEXT[kind]}, got {value_kind(v)}", loc,
                           hint=several_hint(v))
        result[p.name] = _coerce(kind, v)
    if variadic is not None:
        for i, v in enumerate(rest):
            if not _accepts(variadic.annotation, v):
                raise NncError(f"{name}: argument {len(positional) + i + 1} must be "
                               f"{_KIND_TEXT[variadic.annotation]}, got {value_kind(v)}",
                               call.args[len(positional) + i].loc, hint=several_hint(v))
        result["*"] = tuple(rest)
    # argument locations by positional index, keyword arguments included
    locs = [a.loc for a in call.args]
    kw_order = {p.name: i for i, p in enumerate(positional)}
    for key, (_, loc) in kwargs.items():
        if key in kw_order:
            while len(locs) <= kw_order[key]:
                locs.append(None)
            locs[kw_order[key]] = loc
    return result, tuple(locs)
