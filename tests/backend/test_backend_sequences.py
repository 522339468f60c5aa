"""The kernels of sequence models natively against the interpreter: batched matmul in every flag form,
broadcast and with fused epilogues (the stacked one-GEMM path, the batch loop, threads sharing the batch
or each GEMM), matmul_sum, take and scatter_add (the embedding and its gradient) with ids checked,
cross-entropy over [B, T, V], and softmax of scores masked with −inf."""

from __future__ import annotations

import numpy as np
import pytest
from backend_support import assert_matches, const, leaf, random_values

import nnc
from nnc.backend import compile_graph
from nnc.errors import NncError
from nnc.ir import ops
from nnc.ir.graph import Graph
from nnc.specs import optimizer_spec


def run(g, bindings, threads=1, classes=10, seed=0, **tol):
    inputs, params = random_values(g, bindings, np.random.default_rng(seed), classes=classes)
    exe = compile_graph(g, bindings, None, use_cache=False, threads=threads)
    return assert_matches(g, bindings, inputs, params, exe=exe, **tol)


# (left, right, ta, tb, epilogue operand shape or None); B = 5
PRODUCTS = [
    (("B", 7, 9), (9, 13), False, False, (13,)),             # stacked rows, bias-like epilogue
    (("B", 7, 9), (13, 9), False, True, (1, 7, 1)),          # stacked, Bᵀ packed, epilogue constant along rows
    (("B", 7, 9), (9, 13), False, False, (7, 13)),           # epilogue varies with the row: the batch loop
    (("B", 9, 7), (9, 13), True, False, None),               # Aᵀ cannot stack: the batch loop
    (("B", 3, 7, 9), ("B", 3, 9, 13), False, False, (3, 1, 13)),
    (("B", 3, 9, 7), ("B", 3, 13, 9), True, True, ("B", 1, 1, 1)),
    ((3, 1, 7, 9), (1, 4, 13, 9), False, True, None),        # both operands broadcast along a batch axis
    ((7, 9), ("B", 9, 13), False, False, None),              # the left factor shared
    ((1, 7, 9), (9, 13), False, False, None),                # a batch of one
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("left,right,ta,tb,epilogue", PRODUCTS, ids=[str(i) for i in range(len(PRODUCTS))])
def test_batched_matmul(left, right, ta, tb, epilogue, threads):
    g = Graph()
    a = leaf(g, "input", "a", left)
    b = leaf(g, "input", "b", right)
    y = g.add_op(ops.matmul, (a, b), {"ta": ta, "tb": tb})
    if epilogue is not None:
        e = leaf(g, "input", "e", epilogue)
        y = g.add_op(ops.relu, (g.add_op(ops.add, (y, e)),))
    g.outputs["y"] = y
    exe, _ = run(g, {"B": 5}, threads)
    assert exe.stats["kernels"] == 1   # the epilogue fused


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch,m,k,n", [(64, 30, 40, 50), (2, 90, 80, 70)])
def test_large_batched_matmul_splits_between_threads(batch, m, k, n, threads):
    """64 products: the threads share the batch; 2 large ones: they share each GEMM."""
    g = Graph()
    a = leaf(g, "input", "a", ("B", m, k))
    b = leaf(g, "input", "b", ("B", k, n))
    bias = leaf(g, "input", "bias", (m, 1))
    g.outputs["y"] = g.add_op(ops.add, (g.add_op(ops.matmul, (a, b), {}), bias))
    exe, _ = run(g, {"B": batch}, threads, rtol=1e-4, atol=1e-4)
    assert exe.stats["kernels"] == 1


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("ta,tb", [(True, False), (False, False), (False, True), (True, True)])
@pytest.mark.parametrize("batch", [("B",), ("B", 3)])
def test_matmul_sum_every_form(ta, tb, batch, threads):
    g = Graph()
    m, k, n = 11, 6, 19
    a = leaf(g, "input", "a", batch + ((k, m) if ta else (m, k)))
    b = leaf(g, "input", "b", batch + ((n, k) if tb else (k, n)))
    g.outputs["y"] = g.add_op(ops.relu, (g.add_op(ops.matmul_sum, (a, b), {"ta": ta, "tb": tb}),))
    run(g, {"B": 5}, threads, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_matmul_sum_split_between_threads(threads):
    g = Graph()
    a = leaf(g, "input", "a", ("B", 60, 70))
    b = leaf(g, "input", "b", ("B", 50, 70))
    g.outputs["y"] = g.add_op(ops.matmul_sum, (a, b), {"tb": True})
    run(g, {"B": 6}, threads, rtol=1e-4, atol=1e-4)


def embedding_graph(vocab=10, dim=6):
    g = Graph()
    table = leaf(g, "param", "table", (vocab, dim))
    ids = leaf(g, "input", "ids", ("B", 4), "int32")
    pos = leaf(g, "param", "pos", (4, dim))
    looked = g.add_op(ops.take, (table, ids))
    g.outputs["y"] = g.add_op(ops.add, (looked, pos))          # an epilogue: learned positions
    dy = leaf(g, "input", "dy", ("B", 4, dim))
    scattered = g.add_op(ops.scatter_add, (dy, ids), {"rows": vocab})
    g.outputs["dtable"] = g.add_op(ops.mul, (scattered, const(g, 2.0)))   # an epilogue on the gradient
    return g


def test_take_and_scatter_add_with_repeated_ids():
    g = embedding_graph()
    bindings = {"B": 3}
    inputs, params = random_values(g, bindings, np.random.default_rng(1), classes=10)
    inputs["ids"][0] = [3, 3, 0, 9]   # an id used twice: scatter_add collects both rows
    exe = compile_graph(g, bindings, None, use_cache=False)
    assert_matches(g, bindings, inputs, params, exe=exe)
    assert exe.stats["kernels"] == 2


@pytest.mark.parametrize("threads", [1, 2])
def test_an_id_out_of_range_stops_the_native_call_with_its_position(threads):
    g = embedding_graph()
    bindings = {"B": 3}
    inputs, params = random_values(g, bindings, np.random.default_rng(1), classes=10)
    exe = compile_graph(g, bindings, None, use_cache=False, threads=threads)
    exe.run(inputs, params)
    inputs["ids"][1, 2] = 10
    with pytest.raises(NncError, match=r"ids out of range: got class 10 at \[1, 2\], expected 0 to 9$"):
        exe.run(inputs)
    inputs["ids"][1, 2] = -1
    with pytest.raises(NncError, match=r"got class -1 at \[1, 2\]"):
        exe.run(inputs)
    inputs["ids"][1, 2] = 9
    exe.run(inputs)   # the executable still works


@pytest.mark.parametrize("targets", ["labels", "one-hot"])
def test_cross_entropy_over_sequences(targets):
    g = Graph()
    logits = leaf(g, "input", "logits", ("B", 5, 7))
    if targets == "labels":
        labels = leaf(g, "input", "labels", ("B", 5), "int32")
    else:
        labels = g.add_op(ops.softmax, (leaf(g, "input", "scores", ("B", 5, 7)),), {"axis": -1})
    per_position = g.add_op(ops.xent, (logits, labels))
    g.outputs["loss"] = g.add_op(ops.mean, (per_position,), {"axis": None, "keepdims": False})
    g.outputs["per_position"] = per_position
    run(g, {"B": 3}, classes=7)


def test_a_bad_label_of_a_sequence_is_reported_with_its_position():
    g = Graph()
    logits = leaf(g, "input", "logits", ("B", 5, 7))
    labels = leaf(g, "input", "labels", ("B", 5), "int32")
    g.outputs["loss"] = g.add_op(ops.xent, (logits, labels))
    inputs, _ = random_values(g, {"B": 2}, np.random.default_rng(0), classes=7)
    inputs["labels"][1, 4] = 7
    exe = compile_graph(g, {"B": 2}, None, use_cache=False)
    with pytest.raises(NncError, match=r"labels out of range: got class 7 at \[1, 4\], expected 0 to 6"):
        exe.run(inputs)


@pytest.mark.parametrize("threads", [1, 2])
def test_softmax_of_causally_masked_scores_has_no_nan(threads):
    """Rows of scores with −inf above the diagonal: weights exactly 0 there, finite everywhere, forward and
    backward (softmax's gradient rule multiplies by the weights, never by the −inf)."""
    g = Graph()
    t = 6
    q = leaf(g, "input", "q", ("B", 2, t, 4))
    k = leaf(g, "input", "k", ("B", 2, t, 4))
    m = const(g, np.triu(np.full((t, t), -np.inf, dtype=np.float32), 1))
    scores = g.add_op(ops.add, (g.add_op(ops.matmul, (q, k), {"tb": True}), m))
    weights = g.add_op(ops.softmax, (scores,), {"axis": -1})
    dy = leaf(g, "input", "dy", ("B", 2, t, t))
    dot = g.add_op(ops.sum, (g.add_op(ops.mul, (dy, weights)),), {"axis": (3,), "keepdims": True})
    g.outputs["weights"] = weights
    g.outputs["dscores"] = g.add_op(ops.mul, (weights, g.add_op(ops.sub, (dy, dot))))
    _, got = run(g, {"B": 3}, threads)
    for n in g.outputs.values():
        assert np.all(np.isfinite(got[n]))
    w = got[g.outputs["weights"]]
    assert np.all(w[..., np.triu_indices(t, 1)[0], np.triu_indices(t, 1)[1]] == 0)
    np.testing.assert_allclose(w.sum(axis=-1), 1, rtol=1e-6)


TRANSFORMER = """model block {
  input  tokens: int[B, 8]
  input  next: int[B, 8]
  param  pos: [8, 16] = normal(0, 0.02)
  param  head: [16, 12] = xavier
  x      = embedding(tokens, 12, 16) + pos
  h      = x + attention(layernorm(x), 4, 16, causal=true)
  logits = layernorm(h) @ head
  output logits
  loss   cross_entropy(logits, next)
}
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_a_transformer_training_step(threads):
    """Embedding, attention (batched products, causal mask, softmax), sequence cross-entropy, their
    gradients (matmul_sum, scatter_add) and the SGD updates fused into them, natively as the reference."""
    step = nnc.loads(TRANSFORMER).training_step(optimizer_spec("sgd"))
    run(step, {"B": 6}, threads, classes=12, rtol=1e-4, atol=1e-5)
    kinds = {k.kind for k in compile_graph(step, {"B": 6}, None, use_cache=False).plan.kernels}
    assert {"take", "scatter_add", "matmul", "matmul_sum", "softmax", "xent"} <= kinds
