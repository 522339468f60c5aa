"""Every elementwise op natively against the interpreter: unary ops, broadcasting binary ops,
comparisons, int arithmetic, batch sizes off the vector width and 1-element shapes."""

from __future__ import annotations

import numpy as np
import pytest
from backend_support import assert_matches, const, leaf, random_values

from nnc.ir import ops
from nnc.ir.graph import Graph
from nnc.ir.ops import BINARY, UNARY, ops_in

UNARY_OPS = sorted(op.name for op in ops_in(UNARY))
NEEDS_POSITIVE = {"log", "sqrt"}
BINARY_OPS = sorted(op.name for op in ops_in(BINARY))


def unary_graph(feature_shape):
    g = Graph()
    x = leaf(g, "input", "x", ("B", *feature_shape))
    p = leaf(g, "input", "p", ("B", *feature_shape))
    for name in UNARY_OPS:
        attrs = {"alpha": 0.2} if name in ("leaky_relu", "elu") else {}
        g.outputs[name] = g.add_op(ops.get(name), (p if name in NEEDS_POSITIVE else x,), attrs)
    return g


@pytest.mark.parametrize("batch,features", [(1, (1,)), (13, (7,)), (9, (3, 5))])
def test_unary_ops(batch, features):
    g = unary_graph(features)
    rng = np.random.default_rng(batch)
    inputs, params = random_values(g, {"B": batch}, rng, positive={"p"})
    inputs["x"] = (inputs["x"] * 4).astype(np.float32)  # reach exp's and tanh's far ranges
    assert_matches(g, {"B": batch}, inputs, params)


def test_unary_edge_values():
    g = unary_graph((12,))
    x = np.array([[0.0, -0.0, 1e-8, -1e-8, 0.3, -0.3, 0.62, -0.7, 20.0, -20.0, 87.0, -87.0]], dtype=np.float32)
    p = np.array([[1e-30, 1e-3, 0.5, 0.7071, 0.7072, 1.0, 1.5, 2.0, 10.0, 1e5, 3e38, 1.0]], dtype=np.float32)
    assert_matches(g, {"B": 1}, {"x": x, "p": p}, {}, rtol=2e-4)


@pytest.mark.parametrize("shapes", [
    (("B", 5, 3), (5, 1)),
    (("B", 1), (1, 17)),
    (("B", 4), ()),
    ((), ("B", 3)),
    (("B", 2, 1, 3), (4, 1)),
])
def test_binary_ops_broadcast(shapes):
    g = Graph()
    a = leaf(g, "input", "a", shapes[0])
    b = leaf(g, "input", "b", shapes[1])
    pos = leaf(g, "input", "pos", shapes[0])
    for name in BINARY_OPS:
        lhs = pos if name == "pow" else a
        g.outputs[name] = g.add_op(ops.get(name), (lhs, b))
    rng = np.random.default_rng(len(shapes[0]))
    inputs, params = random_values(g, {"B": 11}, rng, positive={"pos"})
    # ties for the comparisons and maximum/minimum
    inputs["a"].reshape(-1)[::3] = 0.5
    inputs["b"].reshape(-1)[::2] = 0.5
    assert_matches(g, {"B": 11}, inputs, params, rtol=3e-4)


def test_bce_logits_keeps_tiny_losses_and_special_values():
    """log1p(e^−|z|) natively: the losses of far-right-side logits (4e-8 at z = 17, t = 1; 3.7e-44 at 100)
    that log(1 + e^−|z|) rounds to 0, within 1e-5; NaN and ±inf come out as in NumPy."""
    g = Graph()
    z = leaf(g, "input", "z", ("B", 16))
    t = leaf(g, "input", "t", ("B", 1))
    g.outputs["y"] = g.add_op(ops.bce_logits, (z, t))
    zs = [-100, -30, -17, -10, -1e-8, -0.0, 0.0, 1e-8, 1, 10, 17, 30, 88, 100, np.inf, np.nan]
    z_val = np.tile(np.array(zs, np.float32), (3, 1))
    t_val = np.array([[0.0], [0.3], [1.0]], np.float32)
    tiny = float(np.finfo(np.float32).tiny)
    _, got = assert_matches(g, {"B": 3}, {"z": z_val, "t": t_val}, {}, rtol=1e-5, atol=tiny)
    assert got[g.outputs["y"]][2, 10] == pytest.approx(4.139938e-08, rel=1e-5)


def test_pow_negative_bases_with_integer_exponents():
    g = Graph()
    a = leaf(g, "input", "a", ("B", 6))
    b = leaf(g, "param", "b", (6,))
    g.outputs["y"] = g.add_op(ops.pow, (a, b))
    a_val = np.array([[-2.0, -2.0, -0.5, 0.0, 0.0, 3.0]], dtype=np.float32)
    b_val = np.array([2.0, 3.0, -1.0, 0.0, 2.0, 0.5], dtype=np.float32)
    assert_matches(g, {"B": 1}, {"a": a_val}, {"b": b_val})


def test_int_arithmetic_and_constants():
    g = Graph()
    i = leaf(g, "input", "i", ("B",), "int32")
    j = leaf(g, "input", "j", ("B",), "int32")
    s = g.add_op(ops.mul, (g.add_op(ops.add, (i, j)), g.add_op(ops.sub, (i, j))))
    g.outputs["s"] = g.add_op(ops.neg, (s,))
    x = leaf(g, "input", "x", ("B", 3))
    g.outputs["c"] = g.add_op(ops.mul, (g.add_op(ops.add, (x, const(g, 2.5))), const(g, [1.0, -1.0, 0.5])))
    rng = np.random.default_rng(3)
    inputs, params = random_values(g, {"B": 10}, rng)
    assert_matches(g, {"B": 10}, inputs, params)


def test_long_chain_is_one_kernel():
    g = Graph()
    x = leaf(g, "input", "x", ("B", 33))
    y = x
    for name in ("tanh", "square", "exp", "sqrt", "sigmoid", "neg", "abs"):
        y = g.add_op(ops.get(name), (y,))
    g.outputs["y"] = y
    rng = np.random.default_rng(4)
    inputs, params = random_values(g, {"B": 5}, rng)
    exe, _ = assert_matches(g, {"B": 5}, inputs, params)
    assert exe.stats["kernels"] == 1 and exe.stats["primitive_ops"] == 7
