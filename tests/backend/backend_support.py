"""Helpers for the backend tests: build small graphs by hand and check native against the interpreter."""

from __future__ import annotations

import numpy as np

from nnc.backend import compile_graph
from nnc.ir import interp, ops
from nnc.ir.graph import Graph
from nnc.ir.types import TensorType, concrete

RTOL = 1e-4
ATOL = 1e-6


def leaf(g: Graph, kind: str, name: str, shape, dtype: str = "float32") -> int:
    """Add an input or param node and register it by name."""
    t = TensorType(tuple(shape), dtype)
    attrs = {"name": name, "type": t}
    if kind == "param":
        attrs.update(init="zeros", trainable=True)
    n = g.add_op(ops.get(kind), (), attrs, type=t)
    (g.inputs if kind == "input" else g.params)[name] = n
    return n


def const(g: Graph, value) -> int:
    arr = np.asarray(value, dtype=np.float32)
    return g.add_op(ops.const, (), {"value": arr if arr.shape else float(arr), "type": TensorType(arr.shape)},
                    type=TensorType(arr.shape))


def random_values(g: Graph, bindings: dict, rng, positive=(), classes: int = 10) -> tuple[dict, dict]:
    """Random float32 inputs and params (standard normal; uniform in [0.5, 2] for names in `positive`),
    int32 labels and ids below the classes the graph indexes them by (`classes` when nothing says)."""
    def value(name, n):
        t = g.type_of(n)
        shape = concrete(t.shape, bindings)
        if t.dtype == "int32":
            return rng.integers(0, g.label_classes(n) or classes, size=shape).astype(np.int32)
        if name in positive:
            return rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
        return rng.standard_normal(shape).astype(np.float32)
    inputs = {k: value(k, n) for k, n in g.inputs.items()}
    params = {k: value(k, n) for k, n in g.params.items()}
    return inputs, params


def reference(g: Graph, inputs: dict, params: dict, targets) -> dict:
    fed = {k: v.astype(np.int64) if v.dtype == np.int32 else v for k, v in inputs.items()}
    return interp.run(g, fed, params, targets=list(targets))


def assert_matches(g: Graph, bindings: dict, inputs: dict, params: dict, targets=None, exe=None,
                   rtol: float = RTOL, atol: float = ATOL):
    """Compile (unless given), run natively and compare every target with the interpreter."""
    exe = exe or compile_graph(g, bindings, targets, use_cache=False)
    got = exe.run(inputs, params)
    want = reference(g, inputs, params, exe.targets)
    for n in exe.targets:
        np.testing.assert_allclose(got[n], want[n], rtol=rtol, atol=atol,
                                   err_msg=f"{g.describe(n)} with {bindings}")
    return exe, got
