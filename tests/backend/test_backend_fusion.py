"""Fusion that saves memory passes, natively against the interpreter: slices read in place by
pointwise kernels, neighbouring pointwise kernels merged into one loop with several outputs, and
concats assembled in place by the kernels that compute their pieces (one or several of them)."""

from __future__ import annotations

import numpy as np
import pytest
from backend_support import assert_matches, const, leaf, random_values

from nnc.backend import compile_graph
from nnc.backend.fusion import fuse
from nnc.ir import ops
from nnc.ir.graph import Graph
from nnc.ir.types import TensorType


def kinds(g) -> list[str]:
    return [k.kind for k in fuse(g, g.roots()).kernels]


def check(g, batch: int, threads: int):
    bindings = {"B": batch}
    inputs, params = random_values(g, bindings, np.random.default_rng(batch + threads))
    exe = compile_graph(g, bindings, use_cache=False, threads=threads)
    assert_matches(g, bindings, inputs, params, exe=exe)


def sl(g, x, axis, start, stop):
    return g.add_op(ops.slice, (x,), {"axis": axis, "start": start, "stop": stop})


def zeros(g, shape):
    return g.add_op(ops.broadcast_to, (const(g, 0.0),), {"shape": shape})


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [3, 40])
def test_gates_sliced_from_one_tensor_are_one_loop(batch, threads):
    """An LSTM cell's shape: four slices of one [B, 4H] tensor, their activations stored (two of them
    are outputs) and combined: one pointwise kernel reads the slices in place and writes every output."""
    g = Graph()
    z, c = leaf(g, "input", "z", ("B", 4 * 19)), leaf(g, "input", "c", ("B", 19))
    i, f, gg, o = (sl(g, z, 1, k * 19, (k + 1) * 19) for k in range(4))
    i, f, o = (g.add_op(ops.sigmoid, (v,)) for v in (i, f, o))
    gg = g.add_op(ops.tanh, (gg,))
    c_new = g.add_op(ops.add, (g.add_op(ops.mul, (f, c)), g.add_op(ops.mul, (i, gg))))
    g.outputs.update(i=i, c=c_new, h=g.add_op(ops.mul, (o, g.add_op(ops.tanh, (c_new,)))))
    assert kinds(g) == ["pointwise"]
    check(g, batch, threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_slice_of_a_computed_value_reads_it_from_memory(threads):
    g = Graph()
    x = leaf(g, "input", "x", ("B", 3, 20))
    e = g.add_op(ops.exp, (x,))                       # stored: a slice reads it in place
    g.outputs["y"] = g.add_op(ops.add, (sl(g, e, 2, 5, 17), const(g, 1.0)))
    g.outputs["t"] = g.add_op(ops.mul, (sl(g, e, 1, 1, 3), const(g, 2.0)))
    check(g, 33, threads)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [5, 40])
def test_concat_of_pieces_one_kernel_computes_is_written_in_place(batch, threads):
    g = Graph()
    a, w = leaf(g, "input", "a", ("B", 24)), leaf(g, "param", "w", (72, 5))
    pieces = [g.add_op(op, (a,)) for op in (ops.relu, ops.sigmoid, ops.tanh)]
    joined = g.add_op(ops.concat, tuple(pieces), {"axis": 1})
    g.outputs["y"] = g.add_op(ops.matmul, (joined, w))
    assert kinds(g) == ["pointwise", "matmul"]
    check(g, batch, threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_concat_of_pieces_from_several_kernels_is_written_in_place(threads):
    """A history shifted by one step, concat(h0, history[:-1]) along time, and the gradient that only
    the last step receives, concat(zeros, dh): pieces from different kernels, of different shapes,
    one of them a broadcast zero; the concat is alive from its first writer on."""
    g = Graph()
    hist, dh = leaf(g, "input", "hist", (6, "B", 17)), leaf(g, "input", "dh", (1, "B", 17))
    h0 = g.add_op(ops.mul, (leaf(g, "input", "h0", (1, "B", 17)), const(g, 3.0)))
    shifted = g.add_op(ops.concat, (h0, sl(g, hist, 0, 0, 5)), {"axis": 0})
    grads = g.add_op(ops.concat, (zeros(g, (5, "B", 17)), g.add_op(ops.neg, (dh,))), {"axis": 0})
    g.outputs["y"] = g.add_op(ops.add, (g.add_op(ops.exp, (shifted,)), grads))
    assert "concat" not in kinds(g)
    check(g, 7, threads)


def test_a_piece_read_elsewhere_keeps_the_concat_a_copy():
    g = Graph()
    a = leaf(g, "input", "a", ("B", 8))
    p, q = g.add_op(ops.relu, (a,)), g.add_op(ops.neg, (a,))
    g.outputs["joined"] = g.add_op(ops.concat, (p, q), {"axis": 1})
    g.outputs["p2"] = g.add_op(ops.sum, (p,), {"axis": (1,)})
    assert "concat" in kinds(g)
    check(g, 9, 1)


def test_int_slices_and_types():
    g = Graph()
    ids = leaf(g, "input", "ids", ("B", 10), "int32")
    g.outputs["s"] = g.add_op(ops.add, (sl(g, ids, 1, 2, 7), sl(g, ids, 1, 5, 10)))
    assert g.type_of(g.outputs["s"]) == TensorType(("B", 5), "int32")
    check(g, 6, 1)
