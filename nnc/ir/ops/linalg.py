"""Matrix product in the three forms training needs: A·B, Aᵀ·B and A·Bᵀ.

`matmul(a, b, ta, tb)` multiplies op(a)·op(b) where op transposes when asked,
so the backward pass never materializes a transpose.
"""

from __future__ import annotations

from ...errors import ShapeError
from ..types import TensorType, format_shape, require_float, result_dtype
from .registry import CONTRACTION, VJP, defop, defvjp


def _matmul(ts, *, ta=False, tb=False):
    a, b = ts
    require_float("matmul", a, 0, "left operand")
    require_float("matmul", b, 1, "right operand")
    for i, t in enumerate(ts):
        if t.rank != 2:
            side = "left" if i == 0 else "right"
            raise ShapeError(f"matmul: {side} operand has shape {format_shape(t.shape)}, expected a 2-D matrix",
                             operand=i, hint="use reshape(...) or flatten(...) to make it 2-D")
    m, k1 = (a.shape[1], a.shape[0]) if ta else a.shape
    k2, n = (b.shape[1], b.shape[0]) if tb else b.shape
    if k1 != k2:
        raise ShapeError(f"matmul: inner dims differ: {format_shape(a.shape)} @ {format_shape(b.shape)} "
                         f"contracts {k1} against {k2}", operand=1,
                         hint=f"the right operand needs {k1} rows")
    return TensorType((m, n), result_dtype(ts, "matmul"))


def _matmul_ref(a, b, *, ta=False, tb=False):
    return (a.T if ta else a) @ (b.T if tb else b)


matmul = defop("matmul", arity=2, groups={CONTRACTION}, shape=_matmul, ref=_matmul_ref,
      doc="op(a) · op(b), op = transpose when ta / tb", attrs=("ta", "tb"))


# C = op(A)·op(B). With op(X) = X or Xᵀ: d op(A) = dC·op(B)ᵀ and d op(B) = op(A)ᵀ·dC,
# transposed back when ta / tb; every product is again a matmul with flags, never a transpose.
def _matmul_da(c, dy):
    a_t, b_t, b = c.attrs.get("ta", False), c.attrs.get("tb", False), c.x(1)
    if not a_t:
        return c.matmul(dy, b, ta=False, tb=not b_t)     # dC · op(B)ᵀ
    return c.matmul(b, dy, ta=b_t, tb=True)               # op(B) · dCᵀ


def _matmul_db(c, dy):
    a_t, b_t, a = c.attrs.get("ta", False), c.attrs.get("tb", False), c.x(0)
    if not b_t:
        return c.matmul(a, dy, ta=not a_t, tb=False)     # op(A)ᵀ · dC
    return c.matmul(dy, a, ta=True, tb=a_t)               # dCᵀ · op(A)


defvjp(matmul, VJP("matmul: dA = dC · Bᵀ", _matmul_da), VJP("matmul: dB = Aᵀ · dC", _matmul_db))
