"""Matrix products on matrices and batches of them, in the three forms training needs: A·B, Aᵀ·B and A·Bᵀ.

`matmul(a, b, ta, tb)` multiplies op(a)·op(b) over the last two axes, where op transposes those two
when asked, so the backward pass never materializes a transpose. The axes before them are batch axes
and broadcast as in NumPy's matmul: `[B, T, D] @ [D, H] -> [B, T, H]`, `[B, H, T, D] @ [B, H, D, S]`.

`matmul_sum(a, b, ta, tb)` is Σ over the batch of op(a)·op(b), for operands of one batch shape: the
gradient of an operand that the whole batch shares (the weight of `[B, T, D] @ [D, H]`), computed
without a product per batch element to sum afterwards (natively: one GEMM over the B·T rows).
"""

from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..types import TensorType, broadcast_shapes, format_shape, require_float, result_dtype
from .registry import CONTRACTION, VJP, defop, defvjp


def _factors(name, ts, ta, tb):
    """(m, n) of op(a)·op(b) after checking the operands' ranks and inner dims."""
    a, b = ts
    require_float(name, a, 0, "left operand")
    require_float(name, b, 1, "right operand")
    for i, t in enumerate(ts):
        if t.rank < 2:
            side = "left" if i == 0 else "right"
            raise ShapeError(f"{name}: {side} operand has shape {format_shape(t.shape)}, expected a matrix "
                             f"[rows, columns] or a batch of them [..., rows, columns]",
                             operand=i, hint="use reshape(...) or flatten(...) to make it 2-D")
    m, k1 = (a.shape[-1], a.shape[-2]) if ta else a.shape[-2:]
    k2, n = (b.shape[-1], b.shape[-2]) if tb else b.shape[-2:]
    if k1 != k2:
        raise ShapeError(f"{name}: inner dims differ: {format_shape(a.shape)} @ {format_shape(b.shape)} "
                         f"contracts {k1} against {k2}", operand=1,
                         hint=f"the right operand needs {k1} rows")
    return m, n


def _batch_shape(a: TensorType, b: TensorType) -> tuple:
    """The broadcast batch axes of a product of `a` and `b` (both at least 2-D)."""
    try:
        return broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"matmul: the batch dims of {format_shape(a.shape)} and {format_shape(b.shape)} do not "
                         f"broadcast: {format_shape(a.shape[:-2])} against {format_shape(b.shape[:-2])}", operand=1,
                         hint="batch dims (all but the last two) must be equal or 1 when aligned from the right") \
            from None


def _matmul(ts, *, ta=False, tb=False):
    m, n = _factors("matmul", ts, ta, tb)
    return TensorType(_batch_shape(*ts) + (m, n), result_dtype(ts, "matmul"))


def _op(x, transposed: bool):
    return np.swapaxes(x, -1, -2) if transposed else x


def _matmul_ref(a, b, *, ta=False, tb=False):
    return np.matmul(_op(a, ta), _op(b, tb))


matmul = defop("matmul", arity=2, groups={CONTRACTION}, shape=_matmul, ref=_matmul_ref,
      doc="op(a) · op(b) over the last two axes, batch axes broadcast; op = transpose when ta / tb",
      attrs=("ta", "tb"))


def _matmul_sum(ts, *, ta=False, tb=False):
    m, n = _factors("matmul_sum", ts, ta, tb)
    a, b = ts
    if a.shape[:-2] != b.shape[:-2]:
        raise ShapeError(f"matmul_sum: the batch dims differ: {format_shape(a.shape)} and {format_shape(b.shape)}",
                         operand=1)
    return TensorType((m, n), result_dtype(ts, "matmul_sum"))


def _matmul_sum_ref(a, b, *, ta=False, tb=False):
    product = np.matmul(_op(a, ta), _op(b, tb))
    return product.sum(axis=tuple(range(product.ndim - 2)))


matmul_sum = defop("matmul_sum", arity=2, groups={CONTRACTION}, shape=_matmul_sum, ref=_matmul_sum_ref,
      doc="Σ over the batch axes of op(a) · op(b): the gradient of a factor the batch shares", attrs=("ta", "tb"))


def _product(c, x, y, ta: bool, tb: bool, shape: tuple):
    """op(x)·op(y), the gradient of an operand of `shape`: summed over the batch by matmul_sum when that
    operand has no batch dims of its own (all 1) while x and y both span the whole batch; else a matmul,
    which autodiff's unbroadcast sums over whatever batch dims the operand was broadcast along."""
    tx, ty = c.type(x), c.type(y)
    batch = tx.shape[:-2]
    if batch and ty.shape[:-2] == batch and any(d != 1 for d in batch) and all(d == 1 for d in shape[:-2]):
        summed = c.matmul_sum(x, y, ta=ta, tb=tb)
        return summed if len(shape) == 2 else c.reshape(summed, shape=tuple(shape))
    return c.matmul(x, y, ta=ta, tb=tb)


# C = op(A)·op(B). With op(X) = X or Xᵀ: d op(A) = dC·op(B)ᵀ and d op(B) = op(A)ᵀ·dC,
# transposed back when ta / tb; every product is again a matmul with flags, never a transpose.
# The same rules serve matmul_sum, whose dC (one matrix) broadcasts over the batch of the other factor.
def _matmul_da(c, dy):
    a_t, b_t, b = c.attrs.get("ta", False), c.attrs.get("tb", False), c.x(1)
    shape = c.shape(c.x(0))
    if not a_t:
        return _product(c, dy, b, False, not b_t, shape)     # dC · op(B)ᵀ
    return _product(c, b, dy, b_t, True, shape)               # op(B) · dCᵀ


def _matmul_db(c, dy):
    a_t, b_t, a = c.attrs.get("ta", False), c.attrs.get("tb", False), c.x(0)
    shape = c.shape(c.x(1))
    if not b_t:
        return _product(c, a, dy, not a_t, False, shape)     # op(A)ᵀ · dC
    return _product(c, dy, a, True, a_t, shape)               # dCᵀ · op(A)


defvjp(matmul, VJP("matmul: dA = dC · Bᵀ", _matmul_da), VJP("matmul: dB = Aᵀ · dC", _matmul_db))
defvjp(matmul_sum, VJP("matmul_sum: dA = dC · Bᵀ for every batch element", _matmul_da),
       VJP("matmul_sum: dB = Aᵀ · dC for every batch element", _matmul_db))
