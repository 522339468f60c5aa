"""Padded pooling, the normalization layers and softplus / xlogy against PyTorch (issue 15).

Each layer's forward value and its gradients (input and parameters) are compared with torch on both
backends: native float32 code within 1e-5 relative, the reference interpreter in float64 within 1e-9.
`maxpool` and `avgpool` take PyTorch's `pad`, `ceil_mode` and `count_include_pad`; `instancenorm`,
`groupnorm` and `lrn` are composed of primitive ops in nnc/front/layers.py; `softplus` and `xlogy` are
primitives. The Inception module as the course draws it (a 3×3 max pool with stride 1 and pad 1 beside
1×1/3×3/5×5 convolutions, concatenated) builds and trains natively, a KL divergence written with xlogy
is finite on one-hot targets, and bad arguments are one located error each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_pytorch_parity import BACKENDS, close

import nnc
from nnc.errors import NncError
from nnc.ir.ops.conv import pool_out
from nnc.passes.optim import LR
from nnc.specs import optimizer_spec
from nnc.train.engines import NativeEngine, ReferenceEngine

X_SHAPE = (3, 6, 8, 7)   # 8 and 7: ceil_mode keeps a partial window on one axis and drops one on the other

# (id, the call on x, the same in torch of (x, params)); params: n.gamma and n.beta, random
CASES = [
    ("maxpool-pad", "maxpool(x, 3, stride=1, pad=1)", lambda x, p: F.max_pool2d(x, 3, 1, 1)),
    ("maxpool-ceil", "maxpool(x, 3, stride=2, pad=1, ceil_mode=true)",
     lambda x, p: F.max_pool2d(x, 3, 2, 1, ceil_mode=True)),
    ("maxpool-ceil-unpadded", "maxpool(x, 2, ceil_mode=true)", lambda x, p: F.max_pool2d(x, 2, ceil_mode=True)),
    ("avgpool-pad", "avgpool(x, 3, stride=1, pad=1)", lambda x, p: F.avg_pool2d(x, 3, 1, 1)),
    ("avgpool-ceil", "avgpool(x, 2, stride=2, pad=1, ceil_mode=true)",
     lambda x, p: F.avg_pool2d(x, 2, 2, 1, ceil_mode=True)),
    ("avgpool-ceil-exclude", "avgpool(x, 3, stride=2, pad=1, ceil_mode=true, count_include_pad=false)",
     lambda x, p: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)),
    ("instancenorm", "instancenorm(x)", lambda x, p: F.instance_norm(x)),
    ("instancenorm-affine", 'instancenorm(x, eps=0.001, affine=true, name="n")',
     lambda x, p: F.instance_norm(x, weight=p["n.gamma"], bias=p["n.beta"], eps=1e-3)),
    ("groupnorm", 'groupnorm(x, 2, name="n")', lambda x, p: F.group_norm(x, 2, p["n.gamma"], p["n.beta"])),
    ("groupnorm-per-channel", 'groupnorm(x, 6, eps=0.01, name="n")',
     lambda x, p: F.group_norm(x, 6, p["n.gamma"], p["n.beta"], eps=0.01)),
    ("lrn", "lrn(x)", lambda x, p: F.local_response_norm(x, 5)),
    ("lrn-even", "lrn(x, size=4, alpha=0.01, beta=0.5, k=2.0)",
     lambda x, p: F.local_response_norm(x, 4, alpha=0.01, beta=0.5, k=2.0)),
    ("softplus", "softplus(x)", lambda x, p: F.softplus(x)),    # |x| > 20 for some of 8·N(0, 1)
    ("softplus-beta", "softplus(x, beta=2.0, threshold=3.0)", lambda x, p: F.softplus(x, beta=2.0, threshold=3.0)),
]


def layer_model(call: str, out_shape) -> nnc.Model:
    dims = ", ".join(map(str, out_shape[1:]))
    return nnc.loads(f"model m {{\n  input x: [B, {', '.join(map(str, X_SHAPE[1:]))}]\n  input c: [B, {dims}]\n"
                     f"  y = {call}\n  output y\n  loss sum(y * c)\n}}\n")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call,fn", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_layer_matches_pytorch_forward_and_gradients(backend, call, fn):
    be, dtype, rtol = BACKENDS[backend]
    rng = np.random.default_rng(15)
    x = 8 * rng.standard_normal(X_SHAPE)
    params = {"n.gamma": rng.uniform(0.5, 2.0, X_SHAPE[1]), "n.beta": rng.standard_normal(X_SHAPE[1])}
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in {"x": x, **params}.items()}
    want = fn(leaves["x"], leaves)
    c = rng.standard_normal(tuple(want.shape))
    (want * torch.tensor(c)).sum().backward()

    model = layer_model(call, tuple(want.shape))
    given = {k: v.astype(dtype) for k, v in params.items() if k in model.param_types}
    inputs = {"x": x.astype(dtype), "c": c.astype(dtype)}
    got = model.eval(inputs, given, backend=be, float_dtype=dtype)["y"]
    grads = model.grad(inputs, given, wrt=["x", *given], backend=be, float_dtype=dtype).grads
    want = want.detach()
    close(got, want, rtol, rtol * float(want.abs().max()), f"{call}: y")
    for name in ["x", *given]:
        expected = leaves[name].grad
        close(grads[name], expected, rtol, rtol * float(expected.abs().max()), f"{call}: d{name}")


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 8, 13, 28, 112])
def test_pooled_sizes_are_pytorchs(n):
    """Every window, stride and allowed pad, rounded down and up, on an axis of n."""
    for size in range(1, 6):
        for stride in range(1, 4):
            for pad in range(size // 2 + 1):
                for ceil in (False, True):
                    try:
                        want = F.max_pool2d(torch.zeros(1, 1, n, n), size, stride, pad, ceil_mode=ceil).shape[-1]
                    except RuntimeError:   # "Output size is too small"
                        want = 0
                    assert max(pool_out(n, size, stride, pad, ceil), 0) == want, (n, size, stride, pad, ceil)


def test_googlenet_stem_rounds_up():
    model = nnc.loads("model stem {\n  input x: [B, 64, 112, 112]\n  y = maxpool(x, 3, stride=2, ceil_mode=true)\n"
                      "  z = maxpool(x, 3, stride=2)\n  output y, z\n}\n")
    assert model.graph.type_of(model.graph.outputs["y"]).shape == ("B", 64, 56, 56)
    assert model.graph.type_of(model.graph.outputs["z"]).shape == ("B", 64, 55, 55)


# ---- xlogy and the KL divergence ------------------------------------------------------------

XLOGY = "model m {\n  input a: [6]\n  input b: [6]\n  y = xlogy(a, b)\n  output y\n  loss sum(y)\n}\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_xlogy_is_torchs_at_zeros_infinities_and_nan(backend):
    be, dtype, rtol = BACKENDS[backend]
    a = np.array([0.0, 0.0, 0.0, 2.0, -1.5, 3.0])
    b = np.array([0.0, np.nan, np.inf, 0.0, 2.0, np.inf])
    got = nnc.loads(XLOGY).eval({"a": a.astype(dtype), "b": b.astype(dtype)}, backend=be, float_dtype=dtype)["y"]
    want = torch.xlogy(torch.tensor(a), torch.tensor(b)).numpy()   # [0, nan, 0, −inf, −1.5·ln 2, inf]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    close(got[~np.isnan(want)], want[~np.isnan(want)], rtol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_xlogy_gradients_are_torchs_where_a_is_zero(backend):
    """d/da is ln b, where a = 0 too (as torch), d/db is a / b."""
    be, dtype, rtol = BACKENDS[backend]
    a, b = np.array([0.0, 0.0, 1.5, -2.0, 0.0, 4.0]), np.array([0.5, 2.0, 3.0, 0.25, 7.0, 1.0])
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    torch.xlogy(ta, tb).sum().backward()
    g = nnc.loads(XLOGY).grad({"a": a.astype(dtype), "b": b.astype(dtype)}, backend=be, float_dtype=dtype)
    close(g.grads["a"], ta.grad, rtol, rtol)
    close(g.grads["b"], tb.grad, rtol, rtol)


KL = """
model kl {
  input z: [B, 5]
  input p: [B, 5]
  output z
  loss mean(sum(xlogy(p, p) - p * log_softmax(z), axis=1))
}
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_kl_divergence_with_xlogy_is_finite_on_one_hot_targets_and_is_kl_div(backend):
    be, dtype, rtol = BACKENDS[backend]
    rng = np.random.default_rng(3)
    z = 3 * rng.standard_normal((4, 5))
    p = np.eye(5)[[0, 3, 3, 1]]
    p[3] = [0.5, 0.0, 0.25, 0.25, 0.0]   # a soft target with zeros too
    inputs = {"z": z.astype(dtype), "p": p.astype(dtype)}
    g = nnc.loads(KL).grad(inputs, wrt=["z"], backend=be, float_dtype=dtype)
    tz = torch.tensor(z, requires_grad=True)
    want = F.kl_div(F.log_softmax(tz, dim=-1), torch.tensor(p), reduction="batchmean")
    want.backward()
    assert np.isfinite(g.value) and np.all(np.isfinite(g.grads["z"]))
    close(g.value, want, rtol)
    close(g.grads["z"], tz.grad, rtol, rtol)
    naive = nnc.loads(KL.replace("xlogy(p, p)", "p * log(p)"))   # 0 · log 0 = 0 · (−inf): NaN
    assert np.isnan(naive.eval(inputs, backend=be, float_dtype=dtype)["loss"])


# ---- the Inception module ------------------------------------------------------------------

INCEPTION = """
model inception {
  input  image: [B, 3, 12, 12]
  input  label: int[B]
  stem   = relu(conv2d(image, 8, 3, pad=1))
  b1     = relu(conv2d(stem, 4, 1))
  b2     = relu(conv2d(relu(conv2d(stem, 4, 1)), 6, 3, pad=1))
  b3     = relu(conv2d(relu(conv2d(stem, 2, 1)), 3, 5, pad=2))
  b4     = relu(conv2d(maxpool(stem, 3, stride=1, pad=1), 3, 1))
  mixed  = concat([b1, b2, b3, b4], axis=1)
  logits = dense(global_avgpool(mixed), 4)
  output logits
  loss   cross_entropy(logits, label)
}
"""


def test_the_inception_module_as_drawn_builds_and_trains_natively():
    model = nnc.loads(INCEPTION)
    g = model.graph
    assert g.type_of(g.values["b4"]).shape == ("B", 3, 12, 12)
    assert g.type_of(g.values["mixed"]).shape == ("B", 16, 12, 12)
    rng = np.random.default_rng(0)
    batch = {"image": rng.standard_normal((8, 3, 12, 12)).astype(np.float32),
             "label": rng.integers(0, 4, 8).astype(np.int32), LR: np.asarray(0.1, dtype=np.float32)}
    step = model.training_step(optimizer_spec("sgd", momentum=0.9))
    native, reference = (engine(step, 8, [step.loss]) for engine in (NativeEngine, ReferenceEngine))
    start = model.init_params(seed=0)
    native.set_params(start)
    reference.set_params(start)
    first = float(native.run(batch, seed=0)[step.loss])
    reference.run({**batch, "label": batch["label"].astype(np.int64)}, seed=0)
    for name in start:   # one step, the same as the interpreter's: every parameter moved alike
        np.testing.assert_allclose(native.params[name], reference.params[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert any(not np.array_equal(native.params[name], start[name]) for name in start)
    losses = [float(native.run(batch, seed=0)[step.loss]) for _ in range(40)]
    assert losses[-1] < 0.1 * first, (first, losses[-1])   # it learns the batch


# ---- bad arguments ------------------------------------------------------------------------------


# (the call, the message, the text the error points at: where the call reads from there on)
@pytest.mark.parametrize("call,message,at", [
    ("maxpool(x, 3, stride=1, pad=2)", "maxpool: pad must be between 0 and 1 (half the window), got 2", "2)"),
    ("avgpool(x, 2, pad=-1)", "avgpool: pad must be between 0 and 1 (half the window), got -1", "-1)"),
    ("maxpool(x, 2, stride=0)", "maxpool: stride must be at least 1, got 0", "0)"),
    ("maxpool(x, 9)", "maxpool: a 9x9 window (stride 9, pad 0) does not fit the 8x7 input [B, 6, 8, 7]", "x, 9)"),
    ("groupnorm(x, 4)", "groupnorm: groups must divide the 6 channels of [B, 6, 8, 7]: got 4, expected one of "
     "1, 2, 3, 6", "4)"),
    ('instancenorm(x, name="n")', 'instancenorm: name= names parameters: got name="n" with affine=false, which has '
     'none, expected affine=true', '"n")'),
    ("instancenorm(reshape(x, [B, 336]))", "instancenorm: input has shape [B, 336], expected [B, C, H, W] or "
     "[B, C, L] with numbers after the batch dim", "reshape"),
    ("lrn(x, size=0)", "lrn: size must be at least 1, got 0", "0)"),
    ("softplus(x, beta=0)", "softplus: beta must not be 0, got 0", "0)"),
])
def test_bad_arguments_are_one_located_error(call, message, at):
    line = f"  y = {call}"
    with pytest.raises(NncError) as info:
        nnc.loads(f"model m {{\n  input x: [B, 6, 8, 7]\n{line}\n  output y\n}}\n", "m.nn")
    err = info.value
    assert err.message == message
    assert err.loc.span.line == 3 and line[err.loc.span.column - 1:].startswith(at)
