"""Tensor types: a shape of int or symbolic dims (`B`) and a dtype.

Owns broadcasting and the arithmetic on symbolic shapes that shape rules and
reshape need. An op with several results has a `TupleType`. A dim is an `int` or a `str` naming a size known only at run
time (the batch dimension `B`); the same name always means the same size.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from ..errors import ShapeError

Dim = int | str
FLOAT_DTYPES = ("float32", "float64")
DTYPE_NAMES = {"float32": "float", "float64": "f64", "int32": "int"}


@dataclass(frozen=True)
class TensorType:
    shape: tuple
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def __str__(self) -> str:
        prefix = "" if self.dtype == "float32" else DTYPE_NAMES.get(self.dtype, self.dtype)
        return f"{prefix}{format_shape(self.shape)}"


@dataclass(frozen=True)
class TupleType:
    """The type of an op with several results (scan): one TensorType per result, each read by an `item` node."""

    types: tuple

    @property
    def is_float(self) -> bool:
        return any(t.is_float for t in self.types)

    def __str__(self) -> str:
        return "(" + ", ".join(str(t) for t in self.types) + ")"


def format_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def describe(t: TensorType) -> str:
    """A value of type t in words, for messages: "a number", "an int[B] tensor", "a [B, 784] tensor"."""
    if not t.shape:
        return "a number" if t.is_float else "an integer"
    text = str(t)
    return f"{'an' if text[0] in 'aeiou' else 'a'} {text} tensor"


def numpy_dtype(dtype: str, float_dtype="float32"):
    """The NumPy dtype that holds a value of `dtype`; float32 runs at `float_dtype`."""
    import numpy as np  # here: the command-line options read this module, and declaring them loads no numpy

    if dtype == "float32":
        return np.dtype(float_dtype)
    return np.dtype(dtype)


def broadcast_shapes(a: tuple, b: tuple, op: str | None = None) -> tuple:
    """NumPy broadcasting over dims that may be symbolic; raise ShapeError (naming `op`) if incompatible."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            raise ShapeError(f"{op + ': ' if op else ''}shapes {format_shape(a)} and {format_shape(b)} "
                             f"do not broadcast: dim {da} against {db}",
                             hint="dims must be equal or 1 when aligned from the right")
    return tuple(reversed(out))


def broadcast_all(shapes, op: str | None = None) -> tuple:
    out: tuple = ()
    for s in shapes:
        out = broadcast_shapes(out, s, op)
    return out


def result_dtype(types, op: str) -> str:
    """Float ops on float tensors: the wider float; ints only with ints."""
    dtypes = {t.dtype for t in types}
    if len(dtypes) == 1:
        return dtypes.pop()
    if "int32" in dtypes:
        raise ShapeError(f"{op}: cannot mix int and float tensors: got {' and '.join(str(t) for t in types)}",
                         hint="int tensors hold class labels; arithmetic needs float tensors")
    return "float64" if "float64" in dtypes else "float32"


def require_float(op: str, t: TensorType, operand: int = 0, what: str = "input") -> None:
    if not t.is_float:
        raise ShapeError(f"{op}: {what} is an int tensor {t}, expected a float tensor",
                         operand=operand, hint="int tensors hold class labels; use them in a loss")


def normalize_axis(axis: int, rank: int, op: str) -> int:
    if rank == 0:  # a scalar has no axis 0 (NumPy agrees: AxisError)
        raise ShapeError(f"{op}: axis {axis} is out of range: got a scalar, expected a tensor with axes",
                         hint="a scalar needs no axis argument")
    if not -rank <= axis < rank:
        raise ShapeError(f"{op}: axis {axis} is out of range, expected -{rank} <= axis < {rank}")
    return axis % rank


def normalize_axes(axis, rank: int, op: str) -> tuple:
    """None -> all axes; int or list -> sorted, unique, non-negative axes."""
    if axis is None:
        return tuple(range(rank))
    axes = [axis] if isinstance(axis, int) else list(axis)
    norm = sorted({normalize_axis(a, rank, op) for a in axes})
    if len(norm) != len(axes):
        raise ShapeError(f"{op}: repeated axis in {list(axis)}")
    return tuple(norm)


def split_size(shape) -> tuple[int, Counter]:
    """A symbolic element count: the product of the int dims and the multiset of symbols."""
    ints = math.prod(d for d in shape if isinstance(d, int))
    return ints, Counter(d for d in shape if isinstance(d, str))


def reshape_target(src: tuple, target: tuple, op: str = "reshape") -> tuple:
    """Resolve a reshape target with at most one -1; check the element counts agree."""
    if sum(1 for d in target if d == -1) > 1:
        raise ShapeError(f"{op}: at most one -1 in the target shape, got {format_shape(target)}")
    for d in target:
        if isinstance(d, int) and d < -1 or d == 0:
            raise ShapeError(f"{op}: dims must be positive or -1, got {format_shape(target)}")
    n_src, sym_src = split_size(src)
    known = tuple(d for d in target if d != -1)
    n_dst, sym_dst = split_size(known)
    if -1 in target:
        rest = sym_src - sym_dst
        if sym_dst - sym_src or rest or n_src % n_dst:
            raise ShapeError(f"{op}: cannot reshape {format_shape(src)} into {format_shape(target)}")
        return tuple(n_src // n_dst if d == -1 else d for d in target)
    if sym_src != sym_dst or n_src != n_dst:
        raise ShapeError(f"{op}: cannot reshape {format_shape(src)} ({size_text(src)} elements) "
                         f"into {format_shape(target)} ({size_text(target)} elements)")
    return tuple(target)


def size_text(shape) -> str:
    n, syms = split_size(shape)
    parts = [str(s) if c == 1 else f"{s}^{c}" for s, c in sorted(syms.items())]
    if n != 1 or not parts:
        parts.insert(0, str(n))
    return "·".join(parts)


def is_dims(value, bindings: dict) -> bool:
    """Is `value` a shape with symbolic dims that `bindings` resolve (not, say, a tuple of names)?"""
    return (isinstance(value, (tuple, list)) and any(isinstance(d, str) for d in value)
            and all(isinstance(d, int) or d in bindings for d in value))


def concrete(shape, bindings: dict) -> tuple:
    """Substitute run-time sizes for the symbols of a shape."""
    return tuple(bindings[d] if isinstance(d, str) else d for d in shape)
