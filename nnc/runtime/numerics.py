"""Finding where a NaN or an infinity was born: the first node, in topological order, whose value is not finite.

Runs the graph on the reference interpreter (every intermediate value kept)
and reports that node's statement and source line as a located error.
"""

from __future__ import annotations

import numpy as np

from ..errors import NncError
from ..ir import interp, ops


def first_nonfinite(graph, inputs: dict, params: dict, seed: int = 0, targets=None):
    """(node, value) of the first non-finite float value, or None when everything is finite."""
    values = interp.run(graph, inputs, params, targets=targets, seed=seed)
    for n in graph.topo():
        v = values.get(n)
        if v is None or np.asarray(v).dtype.kind != "f":
            continue
        if not np.all(np.isfinite(v)):
            return n, np.asarray(v), values
    return None


def describe(graph, found, when: str) -> NncError:
    n, value, values = found
    data = graph.nodes[n]
    bad = "nan" if np.isnan(value).any() else ("inf" if (value == np.inf).any() else "-inf")
    count = int((~np.isfinite(value)).sum())
    operands = [values.get(o) for o in data["operands"]]
    finite_in = all(o is None or np.all(np.isfinite(o)) for o in operands)
    what = f"{data['op'].name}" + (f" in '{data['stmt']}'" if data.get("stmt") else "")
    if data.get("grad_of") is not None:
        what += f" (backward: {data.get('rule')})"
    if data["op"] is ops.param:
        what = f"parameter '{data['attrs']['name']}'"
    message = (f"{when}: the first non-finite value is {bad} from {what}: {count} of {value.size} entries"
               + (", from finite operands" if finite_in and operands else ""))
    hints = {"log": "log of 0 or of a negative number; add a small epsilon or use log_softmax / cross_entropy",
             "div": "a division by zero; add a small epsilon to the denominator",
             "sqrt": "sqrt of a negative number",
             "exp": "exp overflowed; lower the learning rate or normalize the inputs",
             "pow": "a power overflowed or took a negative base to a fractional power"}
    hint = hints.get(data["op"], "lower the learning rate (--lr), clip gradients (clip = 1.0) or normalize the inputs")
    return NncError(message, data.get("loc"), hint)
