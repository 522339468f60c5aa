"""The NumPy reference interpreter (nnc/interp.py and each op's `ref`) against values computed by hand.

Convolution and pooling are compared with naive loops written out here, their
backward references with finite differences, and the losses with their
textbook formulas, including at logits large enough to overflow a naive exp.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import EXAMPLE_FILES, EXAMPLES

import nnc
from nnc import NncError
from nnc.ir import ops
from nnc.ir.ops import REGISTRY


def ref(op: str, *arrays, **attrs):
    return REGISTRY[op].ref(*arrays, **attrs)


def run(text: str, inputs: dict, params: dict | None = None, backend: str = "reference", **kw) -> dict:
    return nnc.loads(text).eval(inputs, params, backend=backend, **kw)


# The numerics tests below hold for the reference interpreter and for native float32 code.
BACKEND_DTYPES = [("reference", np.float32), ("reference", np.float64), ("llvm", np.float32)]


# ---- hand-computed models -------------------------------------------------------------------------


def test_circuit_gives_minus_twelve():
    m = nnc.load(EXAMPLES / "circuit.nn")
    out = m.eval({"x": -2, "y": 5, "z": -4})
    assert set(out) == {"f"}
    assert out["f"].shape == () and float(out["f"]) == -12.0


def test_and_and_or_gates_compute_their_truth_tables():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    and_h = nnc.load(EXAMPLES / "and_gate.nn").eval({"x": x})["h"].ravel()
    or_h = nnc.load(EXAMPLES / "or_gate.nn").eval({"x": x})["h"].ravel()
    # h = sigmoid(-30 + 20 x1 + 20 x2) and sigmoid(-10 + 20 x1 + 20 x2)
    np.testing.assert_allclose(and_h, 1 / (1 + np.exp(-np.array([-30, -10, -10, 10]))), rtol=1e-5)
    assert (np.round(and_h) == [0, 0, 0, 1]).all() and (np.round(or_h) == [0, 1, 1, 1]).all()


def study_hours():
    with open(EXAMPLES / "data" / "study_hours.csv") as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r["hours"])] for r in rows])
    y = np.array([[float(r["score"])] for r in rows])
    return x, y


def test_linreg_at_the_least_squares_solution():
    x, y = study_hours()
    design = np.hstack([x, np.ones_like(x)])
    (slope, intercept), *_ = np.linalg.lstsq(design, y.ravel(), rcond=None)
    assert (slope, intercept) == pytest.approx((2.3, 79.0))        # the course's answer
    m = nnc.load(EXAMPLES / "linreg.nn")
    best = {"a": np.array([[2.3]]), "b": np.array([79.0])}
    out = m.eval({"x": x, "y": y}, best, float_dtype=np.float64)
    np.testing.assert_allclose(out["pred"].ravel(), [83.6, 88.2, 92.8, 97.4])
    # residuals -2.6, 4.8, -1.8, -0.4: mean of squares = 33.2 / 4
    assert float(out["loss"]) == pytest.approx(8.3)
    for da, db in ((0.1, 0), (-0.1, 0), (0, 0.5), (0, -0.5)):
        moved = {"a": best["a"] + da, "b": best["b"] + db}
        assert float(m.eval({"x": x, "y": y}, moved, float_dtype=np.float64)["loss"]) > 8.3


def test_linreg_with_zero_parameters_predicts_zero():
    x, y = study_hours()
    out = nnc.load(EXAMPLES / "linreg.nn").eval({"x": x, "y": y})
    assert (out["pred"] == 0).all()
    assert float(out["loss"]) == pytest.approx(np.mean(y ** 2))


def test_dense_is_x_at_weight_plus_bias():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(5, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    out = run("model m { input x: [B, 3] y = dense(x, 2) output y }", {"x": x},
              {"y.weight": w, "y.bias": b}, float_dtype=np.float64)
    np.testing.assert_allclose(out["y"], x @ w + b)


def test_expressions_and_elementwise_functions():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    out = run("""model m {
  input x: [5]
  a = -x ** 2
  b = relu(x) + leaky_relu(x, alpha=0.1) + elu(x)
  c = step(x) * 10 + abs(x) / 2
  d = maximum(x, 0.25) - minimum(x, -1)
  e = sigmoid(x) + tanh(x) + exp(x) + square(x)
  f = sqrt(square(x) + 1) + log(abs(x) + 1)
  output a, b, c, d, e, f
}""", {"x": x}, float_dtype=np.float64)
    np.testing.assert_allclose(out["a"], -(x ** 2))
    elu = np.where(x > 0, x, np.exp(x) - 1)
    np.testing.assert_allclose(out["b"], np.maximum(x, 0) + np.where(x > 0, x, 0.1 * x) + elu)
    np.testing.assert_allclose(out["c"], (x >= 0) * 10 + np.abs(x) / 2)
    np.testing.assert_allclose(out["d"], np.maximum(x, 0.25) - np.minimum(x, -1))
    np.testing.assert_allclose(out["e"], 1 / (1 + np.exp(-x)) + np.tanh(x) + np.exp(x) + x ** 2)
    np.testing.assert_allclose(out["f"], np.sqrt(x ** 2 + 1) + np.log(np.abs(x) + 1))


def test_reductions_and_movement():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    out = run("""model m {
  input x: [B, 3, 4]
  s = sum(x)
  m0 = mean(x, axis=0)
  mx = max(x, axis=[1, 2], keepdims=true)
  t = transpose(x, [2, 0, 1])
  r = reshape(x, [B, -1])
  c = concat([x, x * 2], axis=2)
  output s, m0, mx, t, r, c
}""", {"x": x}, float_dtype=np.float64)
    assert float(out["s"]) == x.sum()
    np.testing.assert_array_equal(out["m0"], x.mean(axis=0))
    np.testing.assert_array_equal(out["mx"], x.max(axis=(1, 2), keepdims=True))
    np.testing.assert_array_equal(out["t"], x.transpose(2, 0, 1))
    np.testing.assert_array_equal(out["r"], x.reshape(2, 12))
    np.testing.assert_array_equal(out["c"], np.concatenate([x, 2 * x], axis=2))


def test_integer_arithmetic_stays_integer():
    out = run("model m { input k: int[B] j = k * 2 + 1 output j }", {"k": np.array([0, 1, 5])})
    assert out["j"].dtype.kind == "i" and out["j"].tolist() == [1, 3, 11]


# ---- convolution and pooling against naive loops -------------------------------------------------


def naive_conv2d(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, f, ho, wo))
    for i in range(n):
        for o in range(f):
            for r in range(ho):
                for s in range(wo):
                    for ch in range(c):
                        for p in range(kh):
                            for q in range(kw):
                                out[i, o, r, s] += xp[i, ch, r * stride + p, s * stride + q] * w[o, ch, p, q]
                    out[i, o, r, s] += b[o]
    return out


@pytest.mark.parametrize("stride, pad, kernel", [(1, 0, 3), (1, 1, 3), (2, 1, 3), (2, 0, 2), (3, 2, 5), (1, 0, [2, 3])])
def test_conv2d_matches_naive_loops(stride, pad, kernel):
    rng = np.random.default_rng(stride * 10 + pad)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.normal(size=(2, 3, 7, 6))
    w, b = rng.normal(size=(4, 3, kh, kw)), rng.normal(size=4)
    m = nnc.loads(f"model m {{ input x: [B, 3, 7, 6] y = conv2d(x, 4, {kernel}, stride={stride}, pad={pad}) "
                  f"output y }}")
    out = m.eval({"x": x}, {"y.weight": w, "y.bias": b}, float_dtype=np.float64)["y"]
    np.testing.assert_allclose(out, naive_conv2d(x, w, b, stride, pad), rtol=1e-10, atol=1e-12)


def naive_pool(x, size, stride, reduce):
    n, c, h, w = x.shape
    ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(n):
        for ch in range(c):
            for r in range(ho):
                for s in range(wo):
                    out[i, ch, r, s] = reduce(x[i, ch, r * stride:r * stride + size, s * stride:s * stride + size])
    return out


@pytest.mark.parametrize("size, stride", [(2, 2), (3, 1), (3, 2), (2, 3)])
def test_pooling_matches_naive_loops(size, stride):
    x = np.random.default_rng(size + stride).normal(size=(2, 3, 7, 8))
    out = run(f"model m {{ input x: [B, 3, 7, 8] a = maxpool(x, {size}, stride={stride}) "
              f"b = avgpool(x, {size}, stride={stride}) output a, b }}", {"x": x}, float_dtype=np.float64)
    np.testing.assert_allclose(out["a"], naive_pool(x, size, stride, np.max))
    np.testing.assert_allclose(out["b"], naive_pool(x, size, stride, np.mean))


def test_global_avgpool_and_flatten():
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5))
    out = run("model m { input x: [B, 3, 4, 5] g = global_avgpool(x) f = flatten(x) output g, f }", {"x": x},
              float_dtype=np.float64)
    np.testing.assert_allclose(out["g"], x.mean(axis=(2, 3)))
    np.testing.assert_array_equal(out["f"], x.reshape(2, 60))


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at every element of x."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("size, stride", [(2, 2), (3, 1), (2, 1)])
def test_pool_gradients_match_finite_differences(size, stride):
    rng = np.random.default_rng(7)
    x = rng.permutation(2 * 2 * 6 * 6).reshape(2, 2, 6, 6).astype(np.float64) / 10  # distinct values: a unique max
    y = ref("maxpool", x, size=size, stride=stride)
    dy = rng.normal(size=y.shape)
    want_max = numeric_grad(lambda v: (ref("maxpool", v, size=size, stride=stride) * dy).sum(), x.copy())
    np.testing.assert_allclose(ref("maxpool_grad", x, dy, size=size, stride=stride), want_max, atol=1e-6)
    want_avg = numeric_grad(lambda v: (ref("avgpool", v, size=size, stride=stride) * dy).sum(), x.copy())
    got_avg = ref("avgpool_grad", dy, size=size, stride=stride, in_shape=x.shape)
    np.testing.assert_allclose(got_avg, want_avg, atol=1e-6)


def test_maxpool_gradient_goes_to_the_first_maximum_of_a_tie():
    x = np.ones((1, 1, 2, 2))
    dx = ref("maxpool_grad", x, np.array([[[[5.0]]]]), size=2, stride=2)
    assert dx.tolist() == [[[[5.0, 0.0], [0.0, 0.0]]]]


@pytest.mark.parametrize("stride, pad", [(1, 0), (1, 1), (2, 1)])
def test_conv2d_gradients_match_finite_differences(stride, pad):
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(2, 2, 5, 5)), rng.normal(size=(3, 2, 3, 3))
    y = ref("conv2d", x, w, stride=stride, pad=pad)
    dy = rng.normal(size=y.shape)
    dx = ref("conv2d_grad_input", dy, w, stride=stride, pad=pad, in_shape=x.shape)
    dw = ref("conv2d_grad_weight", x, dy, stride=stride, pad=pad, kshape=w.shape)
    np.testing.assert_allclose(dx, numeric_grad(lambda v: (ref("conv2d", v, w, stride=stride, pad=pad) * dy).sum(),
                                                x.copy()), atol=1e-6)
    np.testing.assert_allclose(dw, numeric_grad(lambda v: (ref("conv2d", x, v, stride=stride, pad=pad) * dy).sum(),
                                                w.copy()), atol=1e-6)


# ---- softmax and losses: values and stability ------------------------------------------------------------


LOGITS = np.array([[1000.0, 0.0, -1000.0], [2.0, 1.0, 0.1], [-1e4, -1e4 + 1, -1e4 + 2]])


def log_softmax_exact(z):
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("backend, dtype", BACKEND_DTYPES)
def test_softmax_and_log_softmax_are_stable_at_large_logits(backend, dtype):
    out = run("model m { input z: [B, 3] p = softmax(z) lp = log_softmax(z) output p, lp }", {"z": LOGITS},
              float_dtype=dtype, backend=backend)
    assert np.isfinite(out["p"]).all() and np.isfinite(out["lp"]).all()
    np.testing.assert_allclose(out["lp"], log_softmax_exact(LOGITS), rtol=1e-6)
    np.testing.assert_allclose(out["p"], np.exp(log_softmax_exact(LOGITS)), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(out["p"].sum(axis=1), 1, rtol=1e-6)
    assert out["p"][0].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("backend, dtype", BACKEND_DTYPES)
def test_cross_entropy_is_stable_and_matches_the_formula(backend, dtype):
    labels = np.array([2, 0, 1])
    out = run("model m { input z: [B, 3] input k: int[B] output z loss cross_entropy(z, k) }",
              {"z": LOGITS, "k": labels}, float_dtype=dtype, backend=backend)
    want = -log_softmax_exact(LOGITS)[np.arange(3), labels].mean()  # (2000 + 0.417 + 1.408) / 3
    assert np.isfinite(out["loss"]) and float(out["loss"]) == pytest.approx(want, rel=1e-6)
    onehot = np.eye(3)[labels]
    out = run("model m { input z: [B, 3] input t: [B, 3] output z loss cross_entropy(z, t) }",
              {"z": LOGITS, "t": onehot}, float_dtype=dtype, backend=backend)
    assert float(out["loss"]) == pytest.approx(want, rel=1e-6)


def test_cross_entropy_refuses_labels_out_of_range():
    with pytest.raises(NncError, match="input .k. holds a class index out of range: got 3, expected 0 to 2"):
        run("model m { input z: [B, 3] input k: int[B] output z loss cross_entropy(z, k) }",
            {"z": np.zeros((2, 3)), "k": np.array([0, 3])})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_from_logits_is_stable(dtype):
    z = np.array([[800.0], [-800.0], [0.0], [2.0]])
    t = np.array([[1.0], [1.0], [0.0], [1.0]])
    out = run("model m { input z: [B, 1] input t: [B, 1] output z loss binary_cross_entropy(z, t) }",
              {"z": z, "t": t}, float_dtype=dtype)
    per = [0.0, 800.0, np.log(2.0), np.log1p(np.exp(-2.0))]    # -t·log σ(z) − (1 − t)·log(1 − σ(z))
    assert float(out["loss"]) == pytest.approx(np.mean(per), rel=1e-6)


def test_regression_losses_hinge_and_penalties():
    pred = np.array([[1.0, 2.0], [3.0, -1.0]])
    target = np.array([[0.0, 2.5], [3.0, 1.0]])
    out = run("model m { input p: [B, 2] input t: [B, 2] a = mse(p, t) b = mae(p, t) output a, b }",
              {"p": pred, "t": target}, float_dtype=np.float64)
    assert float(out["a"]) == pytest.approx((1 + 0.25 + 0 + 4) / 4)
    assert float(out["b"]) == pytest.approx((1 + 0.5 + 0 + 2) / 4)
    scores = np.array([[3.0, 1.0, 2.5], [0.0, 2.0, 2.0]])
    labels = np.array([0, 2])
    out = run("model m { input s: [B, 3] input k: int[B] output s loss hinge(s, k) }", {"s": scores, "k": labels},
              float_dtype=np.float64)
    # row 0: max(0, 1 − 3 + 1) + max(0, 2.5 − 3 + 1) = 0 + 0.5; row 1: max(0, 0 − 2 + 1) + max(0, 2 − 2 + 1) = 1
    assert float(out["loss"]) == pytest.approx((0.5 + 1.0) / 2)
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    out = run("model m { input x: [B, 2] param w: [2, 2] y = x @ w a = l1(w) b = l2(w) output y, a, b }",
              {"x": np.ones((1, 2))}, {"w": w}, float_dtype=np.float64)
    assert (float(out["a"]), float(out["b"])) == (3.5, 5.25)


# ---- layers in evaluation mode -------------------------------------------------------------------------


def test_batchnorm_in_evaluation_uses_running_statistics():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 3, 2, 2))
    stats = {"y.gamma": np.array([1.0, 2.0, 0.5]), "y.beta": np.array([0.0, -1.0, 3.0]),
             "y.running_mean": np.array([0.1, -0.2, 0.3]), "y.running_var": np.array([1.0, 4.0, 0.25])}
    out = run("model m { input x: [B, 3, 2, 2] y = batchnorm(x, eps=0.001) output y }", {"x": x}, stats,
              float_dtype=np.float64)["y"]
    view = {k: v.reshape(1, 3, 1, 1) for k, v in stats.items()}
    want = (x - view["y.running_mean"]) / np.sqrt(view["y.running_var"] + 0.001) * view["y.gamma"] + view["y.beta"]
    np.testing.assert_allclose(out, want)
    flat = rng.normal(size=(5, 3))
    out = run("model m { input x: [B, 3] y = batchnorm(x) output y }", {"x": flat}, stats, float_dtype=np.float64)["y"]
    np.testing.assert_allclose(out, (flat - stats["y.running_mean"]) / np.sqrt(stats["y.running_var"] + 1e-5)
                               * stats["y.gamma"] + stats["y.beta"])


def test_layernorm_normalizes_each_example():
    x = np.random.default_rng(2).normal(size=(3, 6)) * 5 + 2
    out = run("model m { input x: [B, 6] y = layernorm(x) output y }", {"x": x}, float_dtype=np.float64)["y"]
    np.testing.assert_allclose(out, (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5))


def test_dropout_is_the_identity_in_evaluation():
    x = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    m = nnc.loads("model m { input x: [B, 16] y = dropout(x, 0.5) output y }")
    np.testing.assert_array_equal(m.eval({"x": x})["y"], x)


def test_dropout_mask_keeps_the_expected_fraction_and_scales():
    mask = ref("dropout_mask", np.zeros((200, 200), np.float32), p=0.25, rng=np.random.default_rng(0))
    assert set(np.unique(mask).tolist()) == {0.0, np.float32(1 / 0.75)}
    assert (mask == 0).mean() == pytest.approx(0.25, abs=0.01)


# ---- the interpreter itself --------------------------------------------------------------------------------


def test_float32_by_default_and_float64_on_request():
    m = nnc.load(EXAMPLES / "mnist_mlp.nn")
    x = np.random.default_rng(0).random((2, 784))
    assert m.eval({"image": x}, random_params=True)["logits"].dtype == np.float32
    assert m.eval({"image": x}, random_params=True, float_dtype=np.float64)["logits"].dtype == np.float64


def test_loss_is_reported_only_when_its_inputs_are_given():
    m = nnc.load(EXAMPLES / "mnist_mlp.nn")
    x = np.random.default_rng(0).random((3, 784))
    assert set(m.eval({"image": x}, random_params=True)) == {"logits"}
    assert set(m.eval({"image": x, "label": np.array([1, 2, 3])}, random_params=True)) == {"logits", "loss"}


def test_same_seed_same_parameters():
    m = nnc.load(EXAMPLES / "xor.nn")
    a, b, c = m.init_params(seed=1), m.init_params(seed=1), m.init_params(seed=2)
    assert all((a[k] == b[k]).all() for k in a)
    assert any((a[k] != c[k]).any() for k in a if a[k].any())


@pytest.mark.parametrize("inputs, message", [
    ({}, "missing input 'x': expected a [B, 2] tensor"),
    ({"x": np.zeros((3, 2)), "t": np.zeros((4, 2))}, "input 't' has shape [4, 2]: B = 4 here but 3 in another input"),
    ({"x": np.zeros((3, 3))}, "input 'x' has shape [3, 3], expected [B, 2]"),
    ({"x": np.zeros(2)}, "input 'x' has shape [2], expected [B, 2]"),
    ({"x": np.zeros((1, 2)), "t": np.zeros((1, 2)), "k": np.array([0.5])},
     "input 'k' is int but holds non-integer values"),
])
def test_fed_inputs_are_checked(inputs, message):
    m = nnc.loads("model m {\n input x: [B, 2]\n input t: [B, 2]\n input k: int[B]\n y = x + t\n output y\n"
                  " z = x * 1\n output z\n j = k * 1\n output j\n}")
    with pytest.raises(NncError) as info:
        m.eval(inputs)
    assert info.value.message == message
    assert info.value.loc is not None      # points at the declaration


def test_given_parameters_are_checked():
    m = nnc.load(EXAMPLES / "linreg.nn")
    with pytest.raises(NncError, match=r"parameter 'a' has shape \[2\], expected \[1, 1\]"):
        m.eval({"x": np.ones((1, 1))}, {"a": np.ones(2)})
    with pytest.raises(NncError, match="unknown parameter 'c' for model 'linreg'"):
        m.eval({"x": np.ones((1, 1))}, {"c": np.ones(1)})


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_example_runs_forward_on_random_inputs(path):
    m = nnc.load(path)
    rng = np.random.default_rng(0)
    inputs = {}
    for name, t in m.inputs.items():
        shape = tuple(3 if isinstance(d, str) else d for d in t.shape)
        g = m.graph
        widths = [g.type_of(g.operands(n)[0]).shape[1] for n in g.nodes if g.op(n) is ops.xent]
        classes = min(widths, default=10) if "label" in name else 2
        inputs[name] = rng.integers(0, classes, shape) if not t.is_float else rng.normal(size=shape)
    out = m.eval(inputs, seed=1, random_params=True)
    for name in m.outputs:
        want = tuple(3 if isinstance(d, str) else d for d in m.graph.type_of(m.graph.outputs[name]).shape)
        assert out[name].shape == want
        assert np.isfinite(out[name]).all()
    if m.graph.loss is not None:
        assert "loss" in out and np.isfinite(out["loss"]) and out["loss"].shape == ()
