"""Gradient checking: symbolic gradients against central finite differences in float64.

A `stop_gradient(x)` computes x but differentiates as a constant, so the differences are taken with its
value held where the point being checked puts it (`hold_stopped`): both sides then differentiate the
same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import interp, ops

STEP = 1e-6
TOLERANCE = 1e-4
# Relative errors are taken against max(|symbolic|, |numeric|, floor): the floor keeps entries that are
# exactly zero in truth (a bias feeding batchnorm) from dividing round-off noise by ~0.
ABSOLUTE_FLOOR = 1e-4
RELATIVE_FLOOR = 1e-3  # of the tensor's largest gradient entry
MAX_ENTRIES = 32  # entries checked per tensor; larger tensors are sampled


@dataclass
class CheckResult:
    name: str
    checked: int
    size: int
    max_rel_error: float

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= TOLERANCE


def finite_difference_check(graph, of_node: int, inputs: dict, params: dict, grads: dict,
                            seed: int = 0, max_entries: int = MAX_ENTRIES) -> list[CheckResult]:
    """Compare `grads` ({name: array}) with (f(w + h) − f(w − h)) / 2h on up to `max_entries` entries each."""
    inputs = {k: np.asarray(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
              for k, v in inputs.items()}
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    graph = hold_stopped(graph, inputs, params, seed)
    rng = np.random.default_rng(seed)
    results = []

    def f():
        return float(interp.run(graph, inputs, params, targets=[of_node], float_dtype=np.float64, seed=seed)[of_node])

    for name, symbolic in grads.items():
        store = params if name in params else inputs if name in inputs else None
        if store is None:
            continue
        value = store[name]
        flat = value.reshape(-1)
        picks = np.arange(flat.size) if flat.size <= max_entries else rng.choice(flat.size, max_entries, replace=False)
        sym = np.asarray(symbolic, dtype=np.float64).reshape(-1)[picks]
        floor = max(ABSOLUTE_FLOOR, RELATIVE_FLOOR * np.abs(np.asarray(symbolic)).max(initial=0))

        worst = 0.0
        for j, k in enumerate(picks):
            err = _relative_error(sym[j], _central_difference(f, flat, k, STEP), floor)
            if err > TOLERANCE:
                # A ReLU or max-pool kink inside [w − h, w + h] spoils the quotient; a smaller step avoids it.
                err = min(err, _relative_error(sym[j], _central_difference(f, flat, k, STEP / 10), floor))
            worst = max(worst, err)
        results.append(CheckResult(name, len(picks), flat.size, worst))
    return results


def hold_stopped(graph, inputs: dict, params: dict, seed: int = 0):
    """`graph` with each stop_gradient replaced by a constant, its value at `inputs` and `params` in float64:
    moving x then moves only the uses of x the gradient goes back through (the gradient of
    Σ stop_gradient(x) · x is x, where differences through the identity it computes would give 2x)."""
    stopped = [n for n in graph if graph.op(n) is ops.stop_gradient]
    if not stopped:
        return graph
    values = interp.run(graph, inputs, params, targets=stopped, float_dtype=np.float64, seed=seed)
    held = graph.clone()
    for n in stopped:
        typ = held.type_of(n)
        held.replace_uses(n, held.add_op(ops.const, (), {"value": values[n], "type": typ}, type=typ))
    return held


def _relative_error(symbolic: float, numeric: float, floor: float) -> float:
    return abs(symbolic - numeric) / max(abs(symbolic), abs(numeric), floor)


def _central_difference(f, flat, k, h) -> float:
    saved = flat[k]
    flat[k] = saved + h
    up = f()
    flat[k] = saved - h
    down = f()
    flat[k] = saved
    return (up - down) / (2 * h)
