"""Kernel-sized ops natively against the interpreter: matmul in all transpose forms with fused
epilogues, conv2d and both backward convolutions, pooling forward and backward, reductions with
prologues and epilogues, softmax / log-softmax / cross-entropy, one-hot, movement ops, dropout."""

from __future__ import annotations

import numpy as np
import pytest
from backend_support import assert_matches, const, leaf, random_values

from nnc.backend import compile_graph
from nnc.errors import NncError
from nnc.ir import ops
from nnc.ir.graph import Graph
from nnc.ir.rng import dropout_mask_numpy


def run_case(g, batch=None, seed=0, positive=(), **tol):
    bindings = {"B": batch} if batch is not None else {}
    inputs, params = random_values(g, bindings, np.random.default_rng(seed), positive=positive)
    return assert_matches(g, bindings, inputs, params, **tol)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 5, 13), (13, 29, 37), (6, 3, 16), (25, 40, 9), (50, 19, 37)])
def test_matmul_all_forms_with_epilogue(m, k, n):
    g = Graph()
    for ta in (False, True):
        for tb in (False, True):
            a = leaf(g, "input", f"a{ta:d}{tb:d}", (k, m) if ta else (m, k))
            b = leaf(g, "param", f"b{ta:d}{tb:d}", (n, k) if tb else (k, n))
            y = g.add_op(ops.matmul, (a, b), {"ta": ta, "tb": tb})
            g.outputs[f"plain{ta:d}{tb:d}"] = y
    x = leaf(g, "input", "x", (m, k))
    w = leaf(g, "param", "w", (k, n))
    bias = leaf(g, "param", "bias", (n,))
    fused = g.add_op(ops.relu, (g.add_op(ops.add, (g.add_op(ops.matmul, (x, w)), bias)),))
    g.outputs["fused"] = fused
    exe, _ = run_case(g, seed=m * k + n)
    assert exe.stats["kernels"] == 5


CONV_CASES = [  # (batch, channels, size, filters, kernel, stride, pad)
    (1, 1, 5, 1, 1, 1, 0),
    (3, 2, 9, 5, 3, 1, 1),
    (2, 3, 8, 4, 3, 2, 0),
    (1, 1, 6, 2, 5, 1, 2),
    (2, 2, 7, 3, 2, 3, 1),
]


@pytest.mark.parametrize("n,c,s,f,k,stride,pad", CONV_CASES)
def test_conv2d_forward_and_backward(n, c, s, f, k, stride, pad):
    g = Graph()
    x = leaf(g, "input", "x", ("B", c, s, s))
    w = leaf(g, "param", "w", (f, c, k, k))
    bias = leaf(g, "param", "bias", (f, 1, 1))
    y = g.add_op(ops.conv2d, (x, w), {"stride": stride, "pad": pad})
    g.outputs["y"] = g.add_op(ops.relu, (g.add_op(ops.add, (y, bias)),))
    dy = leaf(g, "input", "dy", g.type_of(y).shape)
    attrs = {"stride": stride, "pad": pad}
    g.outputs["dx"] = g.add_op(ops.conv2d_grad_input, (dy, w), {**attrs, "in_shape": ("B", c, s, s)})
    g.outputs["dw"] = g.add_op(ops.conv2d_grad_weight, (x, dy), {**attrs, "kshape": (f, c, k, k)})
    run_case(g, batch=n, seed=s, rtol=2e-4, atol=1e-5)


def test_conv_epilogue_that_varies_along_rows_falls_back():
    g = Graph()
    x = leaf(g, "input", "x", ("B", 2, 6, 6))
    w = leaf(g, "param", "w", (3, 2, 3, 3))
    per_row = leaf(g, "param", "per_row", (4, 1))   # varies with the output row, not the column
    y = g.add_op(ops.conv2d, (x, w), {"stride": 1, "pad": 0})
    g.outputs["y"] = g.add_op(ops.mul, (y, per_row))
    exe, _ = run_case(g, batch=2, rtol=2e-4, atol=1e-5)
    assert exe.stats["kernels"] == 1


@pytest.mark.parametrize("size,stride,hw", [(2, 2, 8), (3, 2, 7), (2, 1, 5), (1, 1, 1), (2, 2, 7)])
def test_pooling_forward_and_backward(size, stride, hw):
    g = Graph()
    x = leaf(g, "input", "x", ("B", 3, hw, hw))
    attrs = {"size": size, "stride": stride}
    mp = g.add_op(ops.maxpool, (x,), attrs)
    g.outputs["max"] = mp
    g.outputs["avg"] = g.add_op(ops.avgpool, (x,), attrs)
    dy = leaf(g, "input", "dy", g.type_of(mp).shape)
    g.outputs["dmax"] = g.add_op(ops.maxpool_grad, (x, dy), attrs)
    g.outputs["davg"] = g.add_op(ops.avgpool_grad, (dy,), {**attrs, "in_shape": ("B", 3, hw, hw)})
    run_case(g, batch=3, seed=hw)


def test_maxpool_grad_routes_ties_to_the_first_maximum():
    g = Graph()
    x = leaf(g, "input", "x", ("B", 1, 4, 4))
    dy = leaf(g, "input", "dy", ("B", 1, 2, 2))
    g.outputs["dx"] = g.add_op(ops.maxpool_grad, (x, dy), {"size": 2, "stride": 2})
    inputs = {"x": np.ones((1, 1, 4, 4), np.float32), "dy": np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)}
    assert_matches(g, {"B": 1}, inputs, {})


@pytest.mark.parametrize("axis,keepdims", [(None, False), ((0,), True), ((1,), False), ((0, 2), False),
                                           ((2,), True), ((1, 2), True)])
def test_reductions(axis, keepdims):
    g = Graph()
    x = leaf(g, "input", "x", ("B", 5, 9))
    c = leaf(g, "param", "c", (9,))
    for name in ("sum", "mean", "max"):
        g.outputs[name] = g.add_op(ops.get(name), (x,), {"axis": axis, "keepdims": keepdims})
    # prologue (square of a difference) and epilogue (sqrt) fused around the reduction
    squares = g.add_op(ops.square, (g.add_op(ops.sub, (x, c)),))
    spread = g.add_op(ops.mean, (squares,), {"axis": axis, "keepdims": keepdims})
    g.outputs["std"] = g.add_op(ops.sqrt, (spread,))
    exe, _ = run_case(g, batch=6)
    assert exe.stats["kernels"] == 4


def test_int_sum_and_scalar_reduction():
    g = Graph()
    i = leaf(g, "input", "i", ("B",), "int32")
    g.outputs["total"] = g.add_op(ops.sum, (i,), {"axis": None, "keepdims": False})
    x = leaf(g, "input", "x", ())
    g.outputs["same"] = g.add_op(ops.sum, (x,), {"axis": None, "keepdims": False})
    run_case(g, batch=21)


@pytest.mark.parametrize("shape,axis", [(("B", 10), -1), (("B", 10), 0), (("B", 4, 6), 1), (("B", 1), 1)])
def test_softmax_and_log_softmax(shape, axis):
    g = Graph()
    x = leaf(g, "input", "x", shape)
    g.outputs["sm"] = g.add_op(ops.softmax, (x,), {"axis": axis})
    g.outputs["lsm"] = g.add_op(ops.log_softmax, (x,), {"axis": axis})
    g.outputs["big"] = g.add_op(ops.softmax, (g.add_op(ops.mul, (x, const(g, 100.0))),), {"axis": axis})
    run_case(g, batch=7)


def test_cross_entropy_with_labels_one_hot_and_targets():
    g = Graph()
    logits = leaf(g, "input", "logits", ("B", 10))
    labels = leaf(g, "input", "labels", ("B",), "int32")
    targets = leaf(g, "input", "targets", ("B", 10))
    g.outputs["int"] = g.add_op(ops.mean, (g.add_op(ops.xent, (logits, labels)),), {"axis": None})
    g.outputs["soft"] = g.add_op(ops.xent, (logits, targets))
    g.outputs["onehot"] = g.add_op(ops.one_hot, (labels,), {"depth": 10, "dtype": "float32"})
    inputs, params = random_values(g, {"B": 9}, np.random.default_rng(5))
    inputs["logits"] *= 30  # large logits: the log-sum-exp must stay finite
    inputs["targets"] = np.abs(inputs["targets"])
    assert_matches(g, {"B": 9}, inputs, params)


def test_labels_out_of_range_are_an_error():
    g = Graph()
    logits = leaf(g, "input", "logits", ("B", 4))
    labels = leaf(g, "input", "labels", ("B",), "int32")
    g.outputs["loss"] = g.add_op(ops.xent, (logits, labels))
    exe = compile_graph(g, {"B": 3}, use_cache=False)
    for bad in (4, -1):
        with pytest.raises(NncError, match="labels out of range: got class"):
            exe.run({"logits": np.zeros((3, 4), np.float32), "labels": np.array([0, bad, 1], np.int32)})


def test_movement_ops_and_views():
    g = Graph()
    x = leaf(g, "input", "x", ("B", 3, 4))
    y = leaf(g, "input", "y", ("B", 2, 4))
    g.outputs["t"] = g.add_op(ops.transpose, (x,), {"perm": (2, 0, 1)})
    g.outputs["s"] = g.add_op(ops.slice, (x,), {"axis": 1, "start": 1, "stop": 3})
    g.outputs["c"] = g.add_op(ops.concat, (x, y, x), {"axis": 1})
    g.outputs["b"] = g.add_op(ops.broadcast_to, (y,), {"shape": (2, "B", 2, 4)})
    flat = g.add_op(ops.reshape, (g.add_op(ops.exp, (x,)),), {"shape": ("B", 12)})
    g.outputs["r"] = g.add_op(ops.add, (flat, const(g, 1.0)))
    g.outputs["view"] = g.add_op(ops.reshape, (x,), {"shape": ("B", 12)})
    run_case(g, batch=5)


@pytest.mark.parametrize("shape,perm", [((40, 37), (1, 0)), ((32, 16), (1, 0)), ((3, 17, 50), (0, 2, 1)),
                                        ((20, 3, 33), (2, 1, 0)), ((18, 5, 19), (1, 0, 2)),
                                        ((2, 35, 3, 21), (3, 1, 0, 2))])
def test_transposes_in_register_tiles_with_tails(shape, perm):
    """Transposes that move the innermost axis copy W x W tiles through registers; the rows and columns
    past the last whole tile (and int32 elements) must land where NumPy puts them."""
    g = Graph()
    x = leaf(g, "input", "x", shape)
    ids = leaf(g, "input", "ids", shape, "int32")
    g.outputs["t"] = g.add_op(ops.transpose, (x,), {"perm": perm})
    g.outputs["ti"] = g.add_op(ops.transpose, (ids,), {"perm": perm})
    exe = compile_graph(g, {}, use_cache=False)
    rng = np.random.default_rng(0)
    xv = rng.standard_normal(shape).astype(np.float32)
    iv = rng.integers(-1000, 1000, shape).astype(np.int32)
    out = exe.run({"x": xv, "ids": iv})
    np.testing.assert_array_equal(out[g.outputs["t"]], xv.transpose(perm))
    np.testing.assert_array_equal(out[g.outputs["ti"]], iv.transpose(perm))


def test_dropout_mask_is_the_counter_based_stream():
    g = Graph()
    x = leaf(g, "input", "x", ("B", 37))
    mask = g.add_op(ops.dropout_mask, (x,), {"p": 0.3, "salt": 11})
    g.outputs["mask"] = mask
    g.outputs["y"] = g.add_op(ops.mul, (x, mask))
    exe = compile_graph(g, {"B": 50}, use_cache=False)
    x_val = np.ones((50, 37), np.float32)
    first = exe.run({"x": x_val}, seed=7)
    np.testing.assert_array_equal(first[mask], dropout_mask_numpy((50, 37), 0.3, seed=7, salt=11))
    assert abs((first[mask] == 0).mean() - 0.3) < 0.03
    again = exe.run({"x": x_val}, seed=7)
    np.testing.assert_array_equal(again[mask], first[mask])
    other = exe.run({"x": x_val}, seed=8)
    assert (other[mask] != first[mask]).any()
