"""The convolution family beyond plain conv2d: grouped and dilated convolutions, transposed convolutions and
upsampling.

Each layer is compared with PyTorch (forward and the gradients of x, the weight and the bias) on both
backends: native float32 code and the float64 reference interpreter; the native kernels are compared with
the interpreter on one and two threads, with fused epilogues; mistakes are located errors at the argument.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from backend.backend_support import assert_matches, leaf, random_values
from conftest import run_main

import nnc
from nnc import NncError
from nnc.backend import compile_graph
from nnc.ir import ops
from nnc.ir.graph import Graph

# name -> (backend, float dtype, rtol, atol relative to the largest value compared)
BACKENDS = {"native": (None, np.float32, 1e-4, 1e-5), "reference": ("reference", np.float64, 1e-9, 1e-12)}


def close(got, want, backend: str, what: str) -> None:
    _, _, rtol, atol = BACKENDS[backend]
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    scale = float(np.abs(want).max()) or 1.0
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol,
                               atol=atol * scale, err_msg=what)


def against_torch(backend: str, call: str, x_shape, params: dict, torch_fn, seed: int = 0) -> None:
    """y = `call` on an input of `x_shape`, loss Σ y · c for a random cotangent c: nnc's y, dloss/dx and
    dloss/dparams against torch_fn(x, *params) (the parameters in the order of `params`: name -> shape)."""
    be, dtype, _, _ = BACKENDS[backend]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=x_shape)
    values = {name: rng.normal(size=shape) for name, shape in params.items()}
    leaves = [torch.tensor(v, requires_grad=True) for v in (x, *values.values())]
    want = torch_fn(*leaves)
    cot = rng.normal(size=tuple(want.shape))
    (want * torch.tensor(cot)).sum().backward()
    dims = ", ".join(str(d) for d in x_shape[1:])
    cdims = ", ".join(str(d) for d in want.shape[1:])
    model = nnc.load(f"model m {{\n  input x: [B, {dims}]\n  input c: [B, {cdims}]\n  y = {call}\n  output y\n"
                     f"  loss sum(y * c)\n}}")
    assert {k: t.shape for k, t in model.param_types.items()} == params
    inputs = {"x": x.astype(dtype), "c": cot.astype(dtype)}
    typed = {k: v.astype(dtype) for k, v in values.items()}
    got = model.eval(inputs, typed, backend=be, float_dtype=dtype)["y"]
    close(got, want, backend, f"{call}: y")
    grads = model.grad(inputs, typed, backend=be, float_dtype=dtype, wrt=["x", *params]).grads
    for name, leaf_ in zip(["x", *params], leaves):
        close(grads[name], leaf_.grad, backend, f"{call}: d{name}")


# ---- conv2d: groups and dilation --------------------------------------------------------------------------

CONV_CASES = [  # (call, x shape, weight shape, torch keywords)
    ("conv2d(x, 6, 3, pad=1, groups=2)", (2, 4, 7, 7), (6, 2, 3, 3), {"padding": 1, "groups": 2}),
    ("conv2d(x, 4, 3, stride=2, pad=1, groups=4)", (2, 4, 9, 8), (4, 1, 3, 3),   # depthwise
     {"stride": 2, "padding": 1, "groups": 4}),
    ("conv2d(x, 8, [3, 2], groups=4)", (3, 4, 6, 7), (8, 1, 3, 2), {"groups": 4}),   # depthwise, 2 per channel
    ("conv2d(x, 5, 3, dilation=2)", (2, 3, 9, 8), (5, 3, 3, 3), {"dilation": 2}),
    ("conv2d(x, 6, [3, 2], stride=2, pad=3, groups=3, dilation=3)", (2, 6, 11, 10), (6, 2, 3, 2),
     {"stride": 2, "padding": 3, "groups": 3, "dilation": 3}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call,x_shape,w_shape,kw", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_grouped_and_dilated_conv2d_match_pytorch(backend, call, x_shape, w_shape, kw):
    against_torch(backend, call, x_shape, {"y.weight": w_shape, "y.bias": (w_shape[0],)},
                  lambda x, w, b: F.conv2d(x, w, b, **kw))


def test_groups_divide_the_parameters_as_alexnet_does():
    """AlexNet's second layer in two groups: 256 filters of 48 channels, 307,456 parameters instead of 614,656."""
    model = nnc.load("model m { input x: [B, 96, 27, 27]\n y = conv2d(x, 256, 5, pad=2, groups=2)\n output y }")
    assert model.param_types["y.weight"].shape == (256, 48, 5, 5)
    assert sum(model.param_counts().values()) == 307_456


def test_plain_convolutions_keep_their_nodes():
    """groups=1 and dilation=1 are the plain convolution: the same node attributes (so the same compiled
    code and cache keys) as before those arguments existed, forward and backward."""
    plain = nnc.load("model m { input x: [B, 2, 8, 8]\n y = conv2d(x, 3, 3, pad=1)\n loss sum(y) }")
    spelt = nnc.load("model m { input x: [B, 2, 8, 8]\n y = conv2d(x, 3, 3, pad=1, groups=1, dilation=1)\n"
                     " loss sum(y) }")
    for model in (plain, spelt):
        g = model.grad({"x": np.ones((1, 2, 8, 8), np.float32)}, random_params=True).graph
        convs = sorted((g.op(n).name, sorted(g.nodes[n]["attrs"].items())) for n in g.nodes
                       if g.op(n) in (ops.conv2d, ops.conv2d_grad_input, ops.conv2d_grad_weight))
        assert convs == [("conv2d", [("pad", 1), ("stride", 1)]),
                         ("conv2d_grad_input", [("in_shape", ("B", 2, 8, 8)), ("pad", 1), ("stride", 1)]),
                         ("conv2d_grad_weight", [("kshape", (3, 2, 3, 3)), ("pad", 1), ("stride", 1)])]


# ---- conv_transpose2d -------------------------------------------------------------------------------------

TRANSPOSE_CASES = [  # (call, x shape, weight shape, torch keywords)
    ("conv_transpose2d(x, 3, 3)", (2, 4, 5, 6), (4, 3, 3, 3), {}),
    ("conv_transpose2d(x, 3, 4, stride=2, pad=1)", (2, 2, 5, 4), (2, 3, 4, 4), {"stride": 2, "padding": 1}),
    ("conv_transpose2d(x, 5, 3, stride=2, pad=1, output_pad=1)", (1, 3, 4, 5), (3, 5, 3, 3),
     {"stride": 2, "padding": 1, "output_padding": 1}),
    ("conv_transpose2d(x, 6, [3, 2], stride=3, pad=2, output_pad=2, groups=2, dilation=2)", (2, 4, 4, 3),
     (4, 3, 3, 2), {"stride": 3, "padding": 2, "output_padding": 2, "groups": 2, "dilation": 2}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call,x_shape,w_shape,kw", TRANSPOSE_CASES, ids=[c[0] for c in TRANSPOSE_CASES])
def test_conv_transpose2d_matches_pytorch(backend, call, x_shape, w_shape, kw):
    against_torch(backend, call, x_shape, {"y.weight": w_shape, "y.bias": (w_shape[1] * kw.get("groups", 1),)},
                  lambda x, w, b: F.conv_transpose2d(x, w, b, **kw))


def test_conv_transpose2d_undoes_the_size_of_a_strided_conv2d():
    """A stride-2 convolution halves 28 to 14; the transpose with output_pad=1 gives 28 back (an autoencoder)."""
    model = nnc.load("model m { input x: [B, 1, 28, 28]\n down = conv2d(x, 8, 3, stride=2, pad=1)\n"
                     " up = conv_transpose2d(down, 1, 3, stride=2, pad=1, output_pad=1)\n output up }")
    assert model.graph.type_of(model.graph.outputs["up"]).shape == ("B", 1, 28, 28)


# ---- upsample ---------------------------------------------------------------------------------------------

UPSAMPLE_CASES = [  # (call, x shape, torch keywords)
    ("upsample(x, 2)", (2, 3, 4, 5), {"scale_factor": 2, "mode": "nearest"}),
    ("upsample(x, 3)", (1, 2, 3, 2), {"scale_factor": 3, "mode": "nearest"}),
    ('upsample(x, 2, mode="bilinear")', (2, 3, 4, 5), {"scale_factor": 2, "mode": "bilinear", "align_corners": False}),
    ('upsample(x, 3, mode="bilinear")', (2, 2, 5, 1), {"scale_factor": 3, "mode": "bilinear", "align_corners": False}),
    ('upsample(x, 4, mode="bilinear")', (1, 1, 3, 6), {"scale_factor": 4, "mode": "bilinear", "align_corners": False}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call,x_shape,kw", UPSAMPLE_CASES, ids=[c[0] for c in UPSAMPLE_CASES])
def test_upsample_matches_pytorch(backend, call, x_shape, kw):
    against_torch(backend, call, x_shape, {}, lambda x: F.interpolate(x, **kw))


# ---- native kernels against the interpreter ---------------------------------------------------------------

KERNEL_CASES = [  # (batch, channels, size, filters, kernel, stride, pad, groups, dilation)
    (3, 4, 9, 6, 3, 1, 1, 2, 1),
    (2, 4, 9, 4, 3, 2, 1, 4, 1),      # depthwise
    (2, 4, 8, 8, 3, 1, 0, 4, 1),      # depthwise, two filters per channel
    (2, 3, 11, 5, 3, 1, 2, 1, 2),
    (3, 6, 12, 6, 2, 2, 3, 3, 3),
    (9, 8, 10, 16, 3, 1, 1, 8, 2),    # enough images for every thread
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,c,s,f,k,stride,pad,groups,dilation", KERNEL_CASES)
def test_native_grouped_dilated_convolutions(n, c, s, f, k, stride, pad, groups, dilation, threads):
    """Forward (with the bias and relu fused into it) and both backward forms."""
    g = Graph()
    x = leaf(g, "input", "x", ("B", c, s, s))
    w = leaf(g, "param", "w", (f, c // groups, k, k))
    bias = leaf(g, "param", "bias", (f, 1, 1))
    attrs = {"stride": stride, "pad": pad, "groups": groups, "dilation": dilation}
    y = g.add_op(ops.conv2d, (x, w), attrs)
    g.outputs["y"] = g.add_op(ops.relu, (g.add_op(ops.add, (y, bias)),))
    dy = leaf(g, "input", "dy", g.type_of(y).shape)
    g.outputs["dx"] = g.add_op(ops.conv2d_grad_input, (dy, w), {**attrs, "in_shape": ("B", c, s, s)})
    g.outputs["dw"] = g.add_op(ops.conv2d_grad_weight, (x, dy), {**attrs, "kshape": (f, c // groups, k, k)})
    inputs, params = random_values(g, {"B": n}, np.random.default_rng(s))
    exe = compile_graph(g, {"B": n}, None, use_cache=False, threads=threads)
    assert_matches(g, {"B": n}, inputs, params, exe=exe, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("batch,c,h,w,factor", [(2, 3, 4, 5, 2), (1, 2, 1, 3, 3), (16, 8, 9, 7, 4)])
def test_native_upsample(batch, c, h, w, factor, mode, threads):
    """upsample with a fused epilogue, and upsample_grad, natively against the interpreter."""
    g = Graph()
    x = leaf(g, "input", "x", ("B", c, h, w))
    shift = leaf(g, "param", "shift", (c, 1, 1))
    attrs = {"factor": factor, "mode": mode}
    up = g.add_op(ops.upsample, (x,), attrs)
    g.outputs["y"] = g.add_op(ops.tanh, (g.add_op(ops.add, (up, shift)),))
    dy = leaf(g, "input", "dy", g.type_of(up).shape)
    g.outputs["dx"] = g.add_op(ops.upsample_grad, (dy,), attrs)
    inputs, params = random_values(g, {"B": batch}, np.random.default_rng(h * w))
    exe = compile_graph(g, {"B": batch}, None, use_cache=False, threads=threads)
    assert_matches(g, {"B": batch}, inputs, params, exe=exe, rtol=1e-5, atol=1e-6)


ENCODER_DECODER = """
model ae {
  input  image: [B, 4, 8, 8]
  dw     = relu(conv2d(image, 4, 3, pad=1, groups=4))          # depthwise
  pw     = relu(conv2d(dw, 8, 1))                               # pointwise: a depthwise separable convolution
  wide   = relu(conv2d(pw, 8, 3, stride=2, pad=2, dilation=2, groups=2))   # [B, 8, 4, 4]
  up     = relu(conv_transpose2d(wide, 4, 3, stride=2, pad=1, output_pad=1))   # [B, 4, 8, 8]
  small  = conv2d(up, 4, 2, stride=2)                           # [B, 4, 4, 4]
  out    = upsample(small, 2, mode="bilinear") + upsample(small, 2)
  output out
  loss   mse(out, image)
}
"""


def test_encoder_decoder_gradients_native_match_the_reference():
    """Every new layer in one model, the backward pass included: native float32 against the float64 interpreter."""
    model = nnc.load(ENCODER_DECODER)
    rng = np.random.default_rng(3)
    image = rng.normal(size=(6, 4, 8, 8))
    params = {k: v.astype(np.float64) for k, v in model.init_params(seed=1).items()}
    want = model.grad({"image": image}, params, backend="reference", float_dtype=np.float64)
    got = model.grad({"image": image.astype(np.float32)}, {k: v.astype(np.float32) for k, v in params.items()})
    assert got.value == pytest.approx(want.value, rel=1e-5)
    for name, dw in want.grads.items():
        np.testing.assert_allclose(got.grads[name], dw, rtol=1e-3, atol=1e-5 * np.abs(dw).max(), err_msg=name)


# ---- located errors ---------------------------------------------------------------------------------------

ERRORS = [  # (statement, message, the argument the caret marks (its value, or its last part), hint or None)
    ("y = conv2d(x, 8, 3, groups=4)",
     "conv2d: groups must divide the 6 input channels and the 8 filters, got 4", "groups=4",
     "groups that divide both: 1, 2"),
    ("y = conv2d(x, 9, 3, 1, 0, 2)",
     "conv2d: groups must divide the 6 input channels and the 9 filters, got 2", "0, 2",
     "groups that divide both: 1, 3"),
    ("y = conv2d(x, 6, 3, dilation=0)", "conv2d: dilation must be at least 1, got 0", "dilation=0", None),
    ("y = conv2d(x, 6, 3, dilation=5)",
     "conv2d: a 11x11 window (stride 1, pad 0) does not fit the 10x10 input [B, 6, 10, 10]", "conv2d(x, 6, 3, "
     "dilation=5)", "use a smaller kernel or more padding"),
    ("y = conv_transpose2d(x, 4, 3, groups=4)",
     "conv_transpose2d: groups must divide the 6 input channels and the 4 filters, got 4", "groups=4",
     "groups that divide both: 1, 2"),
    ("y = conv_transpose2d(x, 4, 3, stride=2, output_pad=2)",
     "conv_transpose2d: output_pad must be 0 or more and less than stride (2), got 2", "output_pad=2",
     "output_pad adds the rows and columns a stride above 1 leaves out of the output size"),
    ("y = conv_transpose2d(x, 4, 1, pad=5)",
     "conv_transpose2d: pad=5 leaves an output of 0x0 from the 10x10 input, expected at least 1x1", "pad=5",
     "use less padding or a larger kernel"),
    ('y = upsample(x, 2, mode="linear")', 'upsample: mode must be "nearest" or "bilinear", got "linear"',
     'mode="linear"', None),
    ("y = upsample(x, 0)", "upsample: factor must be at least 1, got 0", "x, 0", None),
    ("y = upsample(flatten(x), 2)",
     "upsample: input has shape [B, 600], expected a 4-D [B, channels, height, width] tensor", "flatten(x)", None),
]


@pytest.mark.parametrize("statement,message,marked,hint", ERRORS, ids=[e[1] for e in ERRORS])
def test_mistakes_are_located_at_the_argument(statement, message, marked, hint):
    source = f"model m {{\n  input x: [B, 6, 10, 10]\n  {statement}\n  output y\n}}"
    with pytest.raises(NncError) as info:
        nnc.load(source)
    err = info.value
    assert err.message == message
    assert err.hint == hint
    span = err.loc.span
    assert span.line == span.end_line == 3
    line = source.split("\n")[2]
    assert span.end_column - 1 == line.index(marked) + len(marked)
    assert marked.endswith(line[span.column - 1:span.end_column - 1])


def test_conv_transpose2d_needs_a_height_and_width_in_numbers():
    with pytest.raises(NncError) as info:
        nnc.load("model m {\n  input x: [B, 6, H, 10]\n  y = conv_transpose2d(x, 4, 3)\n  output y\n}")
    assert info.value.message == ("conv_transpose2d: input has shape [B, 6, H, 10], expected numbers for its height "
                                  "and width, not symbols")
    assert str(info.value.loc.span) == "3:24"


def test_a_groups_mistake_is_one_message_from_the_command_line(tmp_path):
    path = tmp_path / "alexnet_groups.nn"
    path.write_text("model m {\n  input x: [B, 96, 27, 27]\n  y = conv2d(x, 256, 5, pad=2, groups=3)\n"
                    "  output y\n}\n")
    done = run_main("check", path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"{path}:3:39: error: conv2d: groups must divide the 96 input channels and the "
                                  f"256 filters, got 3\n")
    assert "hint: groups that divide both: 1, 2, 4, 8, 16, 32" in done.stderr
    assert "Traceback" not in done.stderr
