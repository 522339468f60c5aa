"""Rows of a table picked by int ids (the embedding lookup), and the scatter-add that is its gradient.

`take(table, ids)` is `table[ids]` along axis 0: ids of any shape pick rows of `table [rows, ...]`,
giving `ids.shape + table.shape[1:]`. Its gradient with respect to the table is
`scatter_add(dy, ids, rows)`: zeros `[rows, ...]` with each row of dy added at its id, so an id used
twice collects both rows. Both read their ids as indices below `rows` (`IndexUse`): range-checked by
the machinery of class labels (the reference, native code, and a fed input when it arrives), but
features of the model, never what it predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ShapeError
from ..types import TensorType, format_shape, require_float
from .nn import check_labels
from .registry import MOVEMENT, VJP, LabelUse, defop, defvjp


@dataclass(frozen=True)
class IndexUse(LabelUse):
    """Int ids indexing the rows of a table: checked like class labels, but an input holding them is a
    feature of the model, not its target (nnc/runtime/task.py)."""


def _int_ids(name: str, t: TensorType) -> None:
    if t.is_float:
        raise ShapeError(f"{name}: ids are a float tensor {t}, expected int ids such as int[B, T]", operand=1,
                         hint="declare the input holding them as int, e.g. `input ids: int[B, T]`")


def _take(ts):
    table, ids = ts
    _int_ids("take", ids)
    if table.rank == 0 or not isinstance(table.shape[0], int):
        raise ShapeError(f"take: table has shape {format_shape(table.shape)}, expected [rows, ...] with a number "
                         f"of rows", operand=0)
    return TensorType(ids.shape + table.shape[1:], table.dtype)


def _take_ref(table, ids):
    check_labels(ids, table.shape[0], "ids", "id")
    return table[np.asarray(ids, dtype=np.int64)]


def _scatter_add(ts, *, rows):
    dy, ids = ts
    require_float("scatter_add", dy)
    _int_ids("scatter_add", ids)
    if not isinstance(rows, int) or rows < 1:
        raise ShapeError(f"scatter_add: got {rows} rows, expected a number of at least 1")
    if dy.shape[:ids.rank] != ids.shape:
        raise ShapeError(f"scatter_add: values have shape {format_shape(dy.shape)}, expected "
                         f"{format_shape(ids.shape)} + [...]: one row per id", operand=0)
    return TensorType((rows,) + dy.shape[ids.rank:], dy.dtype)


def _scatter_add_ref(dy, ids, *, rows):
    check_labels(ids, rows, "ids", "id")
    out = np.zeros((rows,) + dy.shape[ids.ndim:], dtype=dy.dtype)
    np.add.at(out, np.asarray(ids, dtype=np.int64), dy)
    return out


take = defop("take", arity=2, groups={MOVEMENT}, shape=_take, ref=_take_ref,
      doc="table[ids]: the rows of table picked by int ids of any shape",
      labels=IndexUse(1, lambda ts, attrs: ts[0].shape[0]))
scatter_add = defop("scatter_add", arity=2, groups=set(), shape=_scatter_add, ref=_scatter_add_ref,
      doc="zeros [rows, ...] with each row of values added at its id", attrs=("rows",),
      labels=IndexUse(1, lambda ts, attrs: attrs["rows"]))

defvjp(take, VJP("take: dtable = dy scatter-added at the ids",
                 lambda c, dy: c.scatter_add(dy, c.x(1), rows=c.shape(c.x(0))[0])), None)
defvjp(scatter_add, VJP("scatter_add: dvalues = dy taken at the ids", lambda c, dy: c.take(dy, c.x(1))), None)
