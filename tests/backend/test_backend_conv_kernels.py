"""The convolutions natively against the interpreter, on each of their kernels. The weight gradient
has three: the filter-vector kernel (whole vectors of filters per group, no padding), the row-vector
kernel (stride 1, output rows of a few vectors) and the im2row GEMM (everything else); the input
gradient two: the row-vector kernel (stride 1, input rows of a few vectors, two rows at once, summing as one
row at a time does) and the GEMM with col2im;
the forward two: the row-vector kernel (stride 1, output rows of a few well-filled vectors) and the
im2col GEMM, each with a fused epilogue evaluated on its registers or after it (an operand varying
along the rows). The geometries are cut from the host's vector width so that every kernel, its
register-block tails (filters, channels, taps) and its masked lanes (padding, the end of a row) are
taken on any host; batches of 1 and 7, on 1 to 3 threads (more shares than images, shares without
images)."""

from __future__ import annotations

import numpy as np
import pytest
from backend_support import assert_matches, leaf, random_values

from nnc.backend import compile_graph, jit
from nnc.backend.kernels import conv
from nnc.ir import ops
from nnc.ir.graph import Graph

W = jit.host().vector_width


class Host:
    width = W


def geometry(c, h, w, f, kh, kw, stride, pad, groups=1, dilation=1) -> conv.Geometry:
    ho = (h + 2 * pad - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dilation * (kw - 1) - 1) // stride + 1
    return conv.Geometry(1, c, h, w, f, kh, kw, ho, wo, stride, pad, groups, dilation)


def weight_kernel(*case) -> str:
    geo = geometry(*case)
    if conv._channels_fit(Host, geo):
        return "filters"
    return "rows" if conv._direct_fits(Host, geo, geo.wo) else "gemm"


def input_kernel(*case) -> str:
    geo = geometry(*case)
    return "rows" if conv._direct_fits(Host, geo, geo.w) else "gemm"


def forward_kernel(*case) -> str:
    geo = geometry(*case)
    return "rows" if conv._direct_fits(Host, geo, geo.wo, conv.FORWARD_LANES) else "gemm"


def backward_graph(c, h, w, f, kh, kw, stride, pad, groups=1, dilation=1, grads=("dw", "dx")):
    g = Graph()
    x = leaf(g, "input", "x", ("B", c, h, w))
    wt = leaf(g, "input", "w", (f, c // groups, kh, kw))
    attrs = {"stride": stride, "pad": pad, "groups": groups, "dilation": dilation}
    dy = leaf(g, "input", "dy", g.type_of(g.add_op(ops.conv2d, (x, wt), attrs)).shape)
    if "dw" in grads:
        g.outputs["dw"] = g.add_op(ops.conv2d_grad_weight, (x, dy), {**attrs, "kshape": (f, c // groups, kh, kw)})
    if "dx" in grads:
        g.outputs["dx"] = g.add_op(ops.conv2d_grad_input, (dy, wt), {**attrs, "in_shape": ("B", c, h, w)})
    return g


WEIGHT_CASES = [  # (channels, height, width, filters, kh, kw, stride, pad, groups, dilation), kernel
    ((1, 9, W + 4, W, 5, 5, 1, 0, 1, 1), "filters"),
    ((3, 7, 11, W, 3, 3, 2, 0, 1, 1), "filters"),          # stride 2
    ((6, 14, 14, 2 * W, 5, 5, 1, 0, 1, 1), "filters"),     # LeNet-5's second convolution at twice the filters
    ((3, 11, 13, W, 6, 6, 1, 0, 1, 1), "filters"),         # 36 taps: a block per kernel row
    ((4, 10, 9, 2 * W, 3, 2, 1, 0, 2, 2), "filters"),      # groups, dilation, a rectangular kernel
    ((16, 6, 6, W, 1, 1, 1, 0, 1, 1), "filters"),          # 1 x 1
    ((1, 28, 28, 6, 5, 5, 1, 2, 1, 1), "rows" if W >= 8 else "gemm"),    # LeNet-5's first convolution
    ((3, 9, W // 2 + 2, 7, 5, 5, 1, 2, 1, 1), "rows"),     # half a vector; a filter tail of one
    ((2, 8, 2 * W + 3, 4, 3, 9, 1, 1, 1, 1), "rows"),      # 9 taps a row: two tap blocks; a masked third vector
    ((6, 7, W + 1, 6, 3, 3, 1, 1, 2, 1), "rows"),          # groups
    ((2, 9, W + 5, 5, 3, 3, 1, 2, 1, 2), "rows"),          # dilation, padding wider than the reach
    ((3, 8, 4 * W - 1, 3, 2, 2, 1, 1, 1, 1), "rows"),      # four vectors a row
    ((16, 5, W, 5, 1, 1, 1, 0, 1, 1), "rows"),
    ((3, 9, 9, 5, 3, 3, 2, 1, 1, 1), "gemm"),              # stride 2 with padding
    ((2, 6, 3, 3, 3, 3, 1, 1, 1, 1), "gemm" if W >= 8 else "rows"),      # rows too short for a vector
    ((4, 7, 7, 6, 3, 3, 2, 1, 2, 2), "gemm"),
]

INPUT_CASES = [
    ((6, 14, 14, 16, 5, 5, 1, 0, 1, 1), "rows"),           # LeNet-5's second convolution
    ((1, 9, W, 3, 5, 5, 1, 2, 1, 1), "rows"),
    ((25, 5, W // 2 + 1, 2, 3, 3, 1, 1, 1, 1), "rows"),    # 25 channels: a block and a tail
    ((3, 8, 2 * W + 3, 4, 3, 7, 1, 3, 1, 1), "rows"),      # a masked third vector, 7 taps a row
    ((4, 9, W + 5, 6, 3, 3, 1, 2, 2, 2), "rows"),          # groups, dilation, padding wider than the reach
    ((2, 6, 4 * W, 3, 2, 3, 1, 0, 1, 1), "rows"),          # four vectors a row, a rectangular kernel
    ((3, 9, W + 1, 5, 3, 3, 2, 1, 1, 1), "gemm"),          # stride 2
    ((2, 7, W // 2 - 1, 3, 3, 3, 1, 1, 1, 1), "gemm"),     # rows too short for a vector
]


FORWARD_CASES = [
    ((1, 28, 28, 6, 5, 5, 1, 2, 1, 1), "rows" if W >= 8 else "gemm"),    # LeNet-5's first convolution
    ((3, 9, W, 25, 3, 3, 1, 1, 1, 1), "rows"),             # 25 filters: a block and a tail
    ((2, 8, 2 * W + 6, 4, 3, 7, 1, 3, 1, 1), "rows"),      # a masked third vector, 7 taps a row
    ((4, 9, W, 6, 3, 3, 1, 2, 2, 2), "rows"),              # groups, dilation, padding wider than the reach
    ((2, 6, 4 * W + 2, 3, 2, 3, 1, 0, 1, 1), "rows"),      # four vectors a row, a rectangular kernel
    ((6, 14, 14, 16, 5, 5, 1, 0, 1, 1), "gemm" if W >= 8 else "rows"),   # LeNet-5's second convolution
    ((3, 9, W + 1, 5, 3, 3, 2, 1, 1, 1), "gemm"),          # stride 2
    ((2, 6, 5, 3, 3, 3, 1, 1, 1, 1), "gemm"),              # rows too short for a vector
]


def forward_graph(c, h, w, f, kh, kw, stride, pad, groups=1, dilation=1, per_row=False):
    """relu(conv2d(x, w) + bias): the bias per filter, or (`per_row`) per output row, which the
    epilogue cannot evaluate on a row's vector."""
    g = Graph()
    x = leaf(g, "input", "x", ("B", c, h, w))
    wt = leaf(g, "param", "w", (f, c // groups, kh, kw))
    y = g.add_op(ops.conv2d, (x, wt), {"stride": stride, "pad": pad, "groups": groups, "dilation": dilation})
    bias = leaf(g, "param", "bias", (g.type_of(y).shape[2], 1) if per_row else (f, 1, 1))
    g.outputs["y"] = g.add_op(ops.relu, (g.add_op(ops.add, (y, bias)),))
    return g


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("case, kernel", FORWARD_CASES, ids=[f"{k}{i}" for i, (_, k) in enumerate(FORWARD_CASES)])
def test_conv_forward_kernels(case, kernel, per_row, batch, threads):
    assert forward_kernel(*case) == kernel
    g = forward_graph(*case, per_row=per_row)
    inputs, params = random_values(g, {"B": batch}, np.random.default_rng(sum(case) + batch))
    exe = compile_graph(g, {"B": batch}, None, use_cache=False, threads=threads)
    assert exe.stats["kernels"] == 1
    assert_matches(g, {"B": batch}, inputs, params, exe=exe, rtol=2e-4, atol=2e-4)


def run(case, batch, threads, grads):
    g = backward_graph(*case, grads=grads)
    inputs, params = random_values(g, {"B": batch}, np.random.default_rng(sum(case) + batch))
    exe = compile_graph(g, {"B": batch}, None, use_cache=False, threads=threads)
    # sums of up to 7·Ho·Wo products of unit normals, in another order than NumPy's: absolute rounding
    assert_matches(g, {"B": batch}, inputs, params, exe=exe, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case, kernel", WEIGHT_CASES, ids=[f"{k}{i}" for i, (_, k) in enumerate(WEIGHT_CASES)])
def test_conv_weight_gradient_kernels(case, kernel, batch, threads):
    assert weight_kernel(*case) == kernel     # the case takes the kernel it is meant to test on this host
    run(case, batch, threads, ("dw",))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case, kernel", INPUT_CASES, ids=[f"{k}{i}" for i, (_, k) in enumerate(INPUT_CASES)])
def test_conv_input_gradient_kernels(case, kernel, batch, threads):
    assert input_kernel(*case) == kernel
    run(case, batch, threads, ("dx",))


@pytest.mark.parametrize("case", [case for case, kernel in INPUT_CASES if kernel == "rows"])
def test_the_input_gradient_on_two_rows_at_once_sums_as_on_one(case, monkeypatch):
    """Two input rows per register block (conv.GRAD_INPUT_ROWS) add every dx element's products in the same
    order as one row at a time: the same bits, odd heights (a last row alone) and empty reaches included."""
    g = backward_graph(*case, grads=("dx",))
    inputs, _ = random_values(g, {"B": 3}, np.random.default_rng(sum(case)))
    results = []
    for rows in (1, 2):
        monkeypatch.setattr(conv, "GRAD_INPUT_ROWS", rows)
        exe = compile_graph(g, {"B": 3}, None, use_cache=False)
        results.append(exe.run(inputs)[g.outputs["dx"]])
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.skipif(W < 8, reason="with 4 lanes LeNet-5's first convolution is a GEMM")
def test_lenet_convolutions_read_the_images_in_place():
    """LeNet-5's two weight gradients ask for scratch the size of their accumulators (and the second a
    transposed dy), not an im2row copy of each image's receptive fields ([Ho·Wo, C·kh·kw] floats);
    its second input gradient asks for none (no col matrix to scatter back), nor its first forward
    convolution (no im2col)."""
    first, second = (1, 28, 28, 6, 5, 5, 1, 2), (6, 14, 14, 16, 5, 5, 1, 0)
    cases = [(first, ("dw",), 6 * 25 * W), (second, ("dw",), 16 * 150 + 100 * 16), (second, ("dx",), 0)]
    graphs = [(backward_graph(*case, grads=grads), floats) for case, grads, floats in cases]
    for g, floats in graphs + [(forward_graph(*first), 0)]:
        exe = compile_graph(g, {"B": 4}, use_cache=False)
        assert [slot.nbytes for slot in exe.mem.scratch.values()] == ([-(-floats * 4 // 64) * 64] if floats else [])
