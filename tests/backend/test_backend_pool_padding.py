"""Padded pooling natively against the interpreter: maxpool and avgpool with `pad`, `ceil_mode` and
`count_include_pad`, forward and backward, one thread and two sharing the planes, with a fused epilogue.

The kernels check only the taps that can leave the input (nnc/backend/kernels/pool.py); a tap checked
wrongly reads a neighbouring row or plane, which these comparisons see."""

from __future__ import annotations

import numpy as np
import pytest
from backend_support import assert_matches, leaf, random_values

from nnc.backend import compile_graph
from nnc.ir import ops
from nnc.ir.graph import Graph

# (height, width, size, stride, pad, ceil_mode, count_include_pad)
WINDOWS = [
    (7, 7, 3, 1, 1, False, True),     # Inception's: the size kept
    (8, 7, 3, 2, 1, True, False),     # ceil_mode keeps a partial window on the rows, not on the columns
    (7, 7, 2, 2, 1, True, True),      # ceil_mode's last window would start in the padding: dropped
    (9, 5, 3, 3, 1, True, False),
    (8, 8, 4, 3, 2, True, True),      # pad = half the window
    (5, 6, 2, 2, 0, True, True),      # unpadded, reaching past the end
    (1, 1, 2, 2, 0, True, False),     # one pixel, a window mostly past it (PyTorch allows it)
    (6, 6, 3, 2, 0, False, True),     # no padding at all: no tap is checked
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("h,w,size,stride,pad,ceil,include", WINDOWS, ids=[str(i) for i in range(len(WINDOWS))])
def test_padded_pooling_forward_and_backward(h, w, size, stride, pad, ceil, include, threads):
    g = Graph()
    x = leaf(g, "input", "x", ("B", 20, h, w))   # 4 · 20 = 80 planes: two threads share them
    attrs = {"size": size, "stride": stride, "pad": pad, "ceil_mode": ceil}
    mean_attrs = {**attrs, "count_include_pad": include}
    mp = g.add_op(ops.maxpool, (x,), attrs)
    g.outputs["max"] = g.add_op(ops.relu, (mp,))   # an epilogue fused into the pooling kernel
    g.outputs["avg"] = g.add_op(ops.avgpool, (x,), mean_attrs)
    dy = leaf(g, "input", "dy", g.type_of(mp).shape)
    g.outputs["dmax"] = g.add_op(ops.maxpool_grad, (x, dy), attrs)
    g.outputs["davg"] = g.add_op(ops.avgpool_grad, (dy,), {**mean_attrs, "in_shape": ("B", 20, h, w)})
    bindings = {"B": 4}
    inputs, params = random_values(g, bindings, np.random.default_rng(h * 10 + w))
    exe = compile_graph(g, bindings, None, use_cache=False, threads=threads)
    assert_matches(g, bindings, inputs, params, exe=exe)


def test_padding_never_wins_a_maximum_of_negative_values():
    """−inf padding: a window of negative numbers keeps its largest, not the padding's 0, and its gradient
    goes to that position inside the input."""
    g = Graph()
    x = leaf(g, "input", "x", ("B", 1, 3, 3))
    attrs = {"size": 3, "stride": 1, "pad": 1}
    g.outputs["y"] = g.add_op(ops.maxpool, (x,), attrs)
    dy = leaf(g, "input", "dy", ("B", 1, 3, 3))
    g.outputs["dx"] = g.add_op(ops.maxpool_grad, (x, dy), attrs)
    values = -np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    _, got = assert_matches(g, {"B": 1}, {"x": values, "dy": np.ones((1, 1, 3, 3), np.float32)}, {})
    y, dx = (got[g.outputs[k]] for k in ("y", "dx"))
    np.testing.assert_array_equal(y[0, 0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])
    np.testing.assert_array_equal(dx[0, 0], [[4, 2, 0], [2, 1, 0], [0, 0, 0]])
