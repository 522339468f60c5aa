"""Numbers and tensors as people read them: the one formatting of values in messages, diagrams and reports.

`number(x)` prints a whole number without a fraction and anything else with
`digits` significant digits; `shape_text` writes a shape as `[B, 784]`;
`tensor_summary` writes a tensor as its shape, norm and mean; `ops_text` a
statement's calls as a chain; `value_text`
is what `nnc eval` and `nnc grad` print: a number, a small array in full, or
a large array's statistics.
"""

from __future__ import annotations

import numpy as np

SMALL = 20  # arrays with at most this many elements print in full
OPERATOR_NAMES = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "@": "matmul"}


def number(x, digits: int = 6) -> str:
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{digits}g}"


def ops_text(layers) -> str:
    """A statement's calls in order, operators by name: `matmul → add → relu`."""
    return " → ".join(OPERATOR_NAMES.get(o, o) for o in layers)


def shape_text(shape) -> str:
    return f"[{', '.join(map(str, shape))}]"


def tensor_summary(value, digits: int = 3) -> str:
    """A one-element tensor as its number; any other as its shape, norm and mean."""
    arr = np.asarray(value)
    if arr.size == 1 and arr.ndim == 0:
        return number(arr.item(), 4)
    if arr.dtype.kind not in "fiu" or arr.size == 0:
        return shape_text(arr.shape)
    a = arr.astype(np.float64)
    return f"{shape_text(arr.shape)} ‖·‖={np.linalg.norm(a):.{digits}g} mean={a.mean():.{digits}g}"


def value_text(value) -> str:
    """A number; a small array in full; a large one as its shape, dtype and statistics."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        return number(arr.item())
    if arr.size <= SMALL:
        return np.array2string(arr, precision=6, suppress_small=True, separator=", ")
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    stats = (f"mean={number(finite.mean())} std={number(finite.std())} "
             f"min={number(finite.min())} max={number(finite.max())}") if finite.size else "no finite values"
    return f"{shape_text(arr.shape)} {arr.dtype}  {stats}"
