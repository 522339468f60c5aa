"""Max pooling whose windows lie side by side along a row (stride = size, no padding) runs on vectors of
windows (nnc/backend/kernels/pool.py `_each_window_group`): forward and backward equal the interpreter bit for
bit on rows of every width class (one vector per row, a divisor width, a shorter last vector), sizes 2 and 3,
inputs the windows do not tile, ties, NaN and infinities, one thread and two."""

from __future__ import annotations

import numpy as np
import pytest
from backend_support import leaf, reference

from nnc.backend import compile_graph
from nnc.backend.kernels.pool import MAX_GROUP, _group_widths
from nnc.ir import ops
from nnc.ir.graph import Graph

# (height, width, size): output widths 14 and 5 (LeNet-5's), 1, 16, 24 (12 a row), 37 (16 + 16 + 5), 17 (16 + 1)
SHAPES = [(28, 28, 2), (10, 10, 2), (2, 3, 2), (4, 32, 2), (6, 48, 2), (5, 74, 2), (6, 51, 3), (11, 13, 2),
          (7, 9, 3)]


def test_group_widths_cover_every_window():
    for out_w in range(1, 200):
        width, rest = _group_widths(out_w)
        assert width <= MAX_GROUP and rest < width and (out_w - rest) % width == 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("h,w,size", SHAPES, ids=[f"{h}x{w}/{s}" for h, w, s in SHAPES])
def test_side_by_side_max_pooling_equals_the_interpreter_bit_for_bit(h, w, size, threads):
    g = Graph()
    x = leaf(g, "input", "x", ("B", 20, h, w))      # 3 · 20 = 60 planes... and 80 with B = 4: shared by threads
    attrs = {"size": size, "stride": size}
    mp = g.add_op(ops.maxpool, (x,), attrs)
    g.outputs["max"] = g.add_op(ops.relu, (mp,))   # with an epilogue fused into the kernel
    dy = leaf(g, "input", "dy", g.type_of(mp).shape)
    g.outputs["dmax"] = g.add_op(ops.maxpool_grad, (x, dy), attrs)
    rng = np.random.default_rng(h * 100 + w)
    values = rng.integers(-3, 4, (4, 20, h, w)).astype(np.float32)   # small integers: many ties
    specials = rng.random(values.shape)
    values[specials < 0.02] = np.nan
    values[(specials >= 0.02) & (specials < 0.04)] = np.inf
    values[(specials >= 0.04) & (specials < 0.06)] = -np.inf
    inputs = {"x": values, "dy": rng.standard_normal((4, 20) + g.type_of(mp).shape[2:]).astype(np.float32)}
    exe = compile_graph(g, {"B": 4}, None, use_cache=False, threads=threads)
    got = exe.run(inputs)
    want = reference(g, inputs, {}, list(g.outputs.values()))
    for name, node in g.outputs.items():
        np.testing.assert_array_equal(got[node], want[node], err_msg=name)


@pytest.mark.parametrize("size,stride", [(2, 2), (3, 2)])   # the vector path and the scalar one
def test_a_window_with_nan_gives_its_gradient_to_its_last_nan_as_pytorch(size, stride):
    torch = pytest.importorskip("torch")
    g = Graph()
    x = leaf(g, "input", "x", ("B", 1, 6, 6))
    attrs = {"size": size, "stride": stride}
    mp = g.add_op(ops.maxpool, (x,), attrs)
    g.outputs["y"] = mp
    dy = leaf(g, "input", "dy", g.type_of(mp).shape)
    g.outputs["dx"] = g.add_op(ops.maxpool_grad, (x, dy), attrs)
    rng = np.random.default_rng(7)
    values = rng.integers(-2, 3, (2, 1, 6, 6)).astype(np.float32)
    values[rng.random(values.shape) < 0.25] = np.nan
    grads = rng.standard_normal((2, 1) + g.type_of(mp).shape[2:]).astype(np.float32)
    tx = torch.tensor(values, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, size, stride).backward(torch.tensor(grads))
    got = compile_graph(g, {"B": 2}, None, use_cache=False).run({"x": values, "dy": grads})
    want = reference(g, {"x": values, "dy": grads}, {}, [g.outputs["dx"]])
    np.testing.assert_array_equal(got[g.outputs["dx"]], tx.grad.numpy())
    np.testing.assert_array_equal(want[g.outputs["dx"]], tx.grad.numpy())
