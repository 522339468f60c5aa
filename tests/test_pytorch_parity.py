"""nnc against PyTorch where an outside test found wrong numbers (issue 11), and the differences
docs/language.md lists.

Each number is compared with torch (a dev dependency) on both backends: native code in float32
within 1e-5 relative, the reference interpreter in float64 within 1e-9. Where PyTorch itself
rounds badly (its binary cross-entropy subtracts nearly equal numbers), the exact value is the
judge and PyTorch is compared within its own rounding error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import EXAMPLES

import nnc
from nnc.runtime.execute import run_graph
from nnc.specs import OPTIMIZERS

# name -> (backend, float dtype, relative tolerance)
BACKENDS = {"native": (None, np.float32, 1e-5), "reference": ("reference", np.float64, 1e-9)}
TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}


def close(got, want, rtol, atol=0.0, what=""):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64),
                               rtol=rtol, atol=atol, err_msg=what)


def torch_grads(fn, *values, dtype):
    """fn's value and its gradients with respect to each of `values`, in PyTorch."""
    leaves = [torch.tensor(np.asarray(v), dtype=TORCH_DTYPES[dtype], requires_grad=True) for v in values]
    out = fn(*leaves)
    out.backward()
    return out, [leaf.grad for leaf in leaves]


def nnc_grads(model, inputs, backend, dtype, **kw):
    """(loss from Model.eval, Gradients from Model.grad) on one backend."""
    be = BACKENDS[backend][0]
    inputs = {k: np.asarray(v, dtype=dtype) for k, v in inputs.items()}
    loss = model.eval(inputs, backend=be, float_dtype=dtype, **kw)["loss"]
    return loss, model.grad(inputs, backend=be, float_dtype=dtype, **kw)


# ---- item 2: binary cross-entropy from logits --------------------------------------------------

ZS = [-100, -30, -20, -17, -10, -1, 0, 1, 10, 17, 20, 30, 100]
TS = [0.0, 0.3, 1.0]
BCE = "model bce { input z: [B] input t: [B] loss binary_cross_entropy(z, t) }"


def _sigmoid(z):
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def exact_bce(z, t):
    """Loss and d/dz in double precision by forms that never subtract nearly equal numbers."""
    return max(z, 0) - z * t + math.log1p(math.exp(-abs(z))), (1 - t) * _sigmoid(z) - t * _sigmoid(-z)


@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_cross_entropy_matches_pytorch_and_the_exact_values(backend):
    _, dtype, rtol = BACKENDS[backend]
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    model = nnc.load(BCE)
    for z in ZS:
        for t in TS:
            at = f"{backend} at z={z}, t={t}"
            loss, g = nnc_grads(model, {"z": [z], "t": [t]}, backend, dtype)
            tl, (tdz, tdt) = torch_grads(F.binary_cross_entropy_with_logits, [z], [t], dtype=dtype)
            want_loss, want_dz = exact_bce(z, t)
            close(loss, want_loss, rtol, tiny, f"loss {at}")  # absolute only below the normal range
            close(g.value, loss, 0, 0, f"grad's loss {at}")
            close(g.grads["z"], [want_dz], rtol, eps, f"dz {at}")  # σ(z) − t: differences of numbers ≤ 1
            close(g.grads["t"], [-z], rtol, 0, f"dt {at}")
            # PyTorch computes (1 − t)·z − log σ(z): its error is about eps·|z|
            close(loss, tl, rtol, 2 * eps * (1 + abs(z)), f"loss vs torch {at}")
            close(g.grads["z"], tdz, rtol, eps, f"dz vs torch {at}")
            close(g.grads["t"], tdt, rtol, 0, f"dt vs torch {at}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_initialised_and_gate_steps_downhill_like_pytorch(backend):
    """examples/and_gate.nn from w = 0, b = 0: every logit is 0, so db = mean(σ(0) − t) = 0.25."""
    _, dtype, rtol = BACKENDS[backend]
    model = nnc.load(EXAMPLES / "and_gate.nn")
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype)
    t = np.array([[0], [0], [0], [1]], dtype)
    params = {"w": np.zeros((2, 1), dtype), "b": np.zeros(1, dtype)}
    loss, g = nnc_grads(model, {"x": x, "target": t}, backend, dtype, params=params)
    _, (dw, db) = torch_grads(lambda w, b: F.binary_cross_entropy_with_logits(torch.tensor(x) @ w + b,
                                                                              torch.tensor(t)),
                              params["w"], params["b"], dtype=dtype)
    close(g.grads["w"], dw, rtol, 0, "dw")
    close(g.grads["b"], db, rtol, 0, "db")
    assert g.grads["b"][0] == pytest.approx(0.25)
    stepped = {k: params[k] - g.grads[k] for k in params}  # the file's sgd(lr=1.0)
    after = model.eval({"x": x, "target": t}, stepped, backend=BACKENDS[backend][0], float_dtype=dtype)["loss"]
    assert after < loss


# ---- item 3: batchnorm's running variance ----------------------------------------------------------


def _batchnorm_steps(backend, shape, momentum, batches):
    _, dtype, _ = BACKENDS[backend]
    dims = ", ".join(["B", *map(str, shape[1:])])
    model = nnc.load(f"model bn {{ input x: [{dims}] h = batchnorm(x, momentum={momentum}) output h }}")
    g = model.training_graph
    params = model.init_params(0, dtype)
    out, updates = g.outputs["h"], g.updates
    for x in batches:
        values = run_graph(g, {"x": x}, params, [out, *updates.values()], backend=BACKENDS[backend][0],
                           float_dtype=dtype)
        params.update({name: values[n] for name, n in updates.items()})
        yield values[out], params["h.running_mean"], params["h.running_var"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(8, 3), (2, 3), (4, 3, 5, 2), (1, 3, 2, 2)])
def test_batchnorm_running_statistics_follow_pytorch(backend, shape):
    """Several training steps of BatchNorm1d / BatchNorm2d: outputs, running_mean and the running
    variance PyTorch keeps, the unbiased one (n − 1 with n = B, or B·H·W per channel)."""
    _, dtype, rtol = BACKENDS[backend]
    rng = np.random.default_rng(len(shape))
    batches = [(rng.normal(size=shape) * (1 + step) + step).astype(dtype) for step in range(4)]
    layer = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(3, momentum=0.3)
    layer = layer.to(TORCH_DTYPES[dtype]).train()
    for step, (h, mean, var) in enumerate(_batchnorm_steps(backend, shape, 0.3, batches)):
        want = layer(torch.tensor(batches[step])).detach()
        close(h, want, rtol, rtol * float(want.abs().max()), f"output, step {step}")
        close(mean, layer.running_mean, rtol, 0, f"running_mean, step {step}")
        close(var, layer.running_var, rtol, 0, f"running_var, step {step}")


def test_batchnorm_of_one_value_per_channel_keeps_running_var():
    """PyTorch refuses such a batch while training; nnc uses it for the mean and leaves the variance."""
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm1d(3).train()(torch.ones(1, 3))
    for backend in BACKENDS:
        x = np.array([[1.0, -2.0, 4.0]], BACKENDS[backend][1])
        [(h, mean, var)] = _batchnorm_steps(backend, (1, 3), 0.1, [x])
        close(h, np.zeros((1, 3)), 0, 0, "output: x − mean(x) = 0")
        close(mean, 0.1 * x[0], BACKENDS[backend][2], 0, "running_mean")
        close(var, np.ones(3), 0, 0, "running_var")


# ---- item 4: the simplifier keeps IEEE arithmetic ---------------------------------------------------

INF, NAN = math.inf, math.nan
SPECIAL = [
    ("model m { input x: [2] loss sum(x * 0) }", {"x": [1.0, INF]}),
    ("model m { input x: [3] loss sum(0 / x) }", {"x": [1.0, 0.0, -2.0]}),
    ("model m { input x: [3] loss sum(exp(x) * 0) + sum(0 * x) }", {"x": [1000.0, 1.0, -1.0]}),
    ("model m { input x: [4] loss sum((x * 1 + 0 - 0) / 1) }", {"x": [NAN, INF, -INF, -0.0]}),
    ("model m { input x: [4] loss sum(-(-x) * -1) + sum(0 - x) }", {"x": [INF, -0.0, 0.0, 2.0]}),
    ("model m { input x: [3] input y: [3] loss sum(x + -y) * sum(x - -y) + sum(-x * y) }",
     {"x": [INF, 1.0, 0.0], "y": [INF, 2.0, -0.0]}),
    ("model m { input x: [3] loss sum(x ** 2) + mean(relu(x)) }", {"x": [INF, -INF, 0.0]}),
    ("model m { input x: [2, 2] loss sum(reshape(transpose(x, [1, 0]), [4]) * -1) }", {"x": [[NAN, 1.0], [-INF, 0.0]]}),
    ("model m { input x: [3] loss sum(x * exp(0.1) / 3) + mean(x * 0.1) }", {"x": [1.0, 2.0, 3.0]}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("source,inputs", SPECIAL, ids=[f"model{i}" for i in range(len(SPECIAL))])
def test_grad_reports_the_loss_eval_computes(backend, source, inputs):
    """Model.grad's loss comes from the simplified forward + backward graph, Model.eval's from the
    model as written: they must be the same number, NaN included."""
    _, dtype, _ = BACKENDS[backend]
    loss, g = nnc_grads(nnc.load(source), inputs, backend, dtype)
    np.testing.assert_array_equal(g.value, loss)


# ---- item 6: d(a ** b)/db at a = 0 -------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_pow_gradients_follow_pytorch_at_zero_bases_and_exponents(backend):
    """PyTorch: db = 0 where a = 0 and b ≥ 0 (not 0 · ln 0), da = 0 where b = 0 (not 0 · 0⁻¹)."""
    _, dtype, rtol = BACKENDS[backend]
    a = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.5, -2.0, 3.0]
    b = [0.0, 0.5, 1.0, 2.0, 3.0, -1.0, 0.0, 1.5, 2.0, -0.5]
    model = nnc.load("model p { input a: [10] input b: [10] loss sum(a ** b) }")
    loss, g = nnc_grads(model, {"a": a, "b": b}, backend, dtype)
    tl, (da, db) = torch_grads(lambda x, y: (x ** y).sum(), a, b, dtype=dtype)
    close(loss, tl, rtol)
    close(g.grads["a"], da, rtol, 0, "da")
    close(g.grads["b"], db, rtol, 0, "db")


# ---- items 7 and 8: elu far left, log and sqrt at 0 ----------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu_gradient_far_left_follows_pytorch(backend, alpha):
    _, dtype, rtol = BACKENDS[backend]
    x = [-100.0, -20.0, -10.0, -7.5, -1.0, -0.0, 0.0, 0.5, 3.0, 100.0]
    model = nnc.load(f"model e {{ input x: [10] loss sum(elu(x, alpha={alpha})) }}")
    _, g = nnc_grads(model, {"x": x}, backend, dtype)
    _, (dx,) = torch_grads(lambda v: F.elu(v, alpha).sum(), x, dtype=dtype)
    close(g.grads["x"], dx, rtol, np.finfo(dtype).tiny)  # α·e^−100 is below float32's normal range
    assert g.grads["x"][1] == pytest.approx(alpha * math.exp(-20), rel=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", ["log", "sqrt"])
def test_log_and_sqrt_gradients_at_zero_are_infinite_like_pytorch(backend, fn):
    _, dtype, rtol = BACKENDS[backend]
    x = [0.0, 0.25, 1.0, 4.0]
    _, g = nnc_grads(nnc.load(f"model u {{ input x: [4] loss sum({fn}(x)) }}"), {"x": x}, backend, dtype)
    _, (dx,) = torch_grads(lambda v: getattr(torch, fn)(v).sum(), x, dtype=dtype)
    assert dx[0] == math.inf
    close(g.grads["x"], dx, rtol)


# ---- the differences docs/language.md lists -------------------------------------------------------


def test_dense_weight_is_the_transpose_of_linear_weight():
    model = nnc.load("model d { input x: [B, 3] y = dense(x, 2) output y }")
    rng = np.random.default_rng(0)
    x, w, bias = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    y = model.eval({"x": x}, {"y.weight": w, "y.bias": bias}, float_dtype=np.float64)["y"]
    linear = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(w.T))  # PyTorch stores [out, in]
        linear.bias.copy_(torch.tensor(bias))
    close(y, linear(torch.tensor(x)), 1e-12)


def test_hinge_sums_over_classes_where_multi_margin_loss_averages():
    model = nnc.load("model h { input s: [B, 5] input y: int[B] loss hinge(s, y) }")
    s, y = np.random.default_rng(1).normal(size=(4, 5)), np.array([0, 3, 1, 4])
    loss = model.eval({"s": s, "y": y}, float_dtype=np.float64)["loss"]
    close(loss, 5 * F.multi_margin_loss(torch.tensor(s), torch.tensor(y)), 1e-12)


def test_half_an_l2_penalty_is_pytorchs_weight_decay():
    """λ·l2(w) = λ·Σ w² has the gradient 2λ·w; PyTorch's weight_decay=λ adds λ·w."""
    w = np.array([[0.5, -2.0], [1.5, 3.0]])
    g = nnc.load("model r { param w: [2, 2] loss 0.5 * 0.1 * l2(w) }").grad(
        params={"w": w}, float_dtype=np.float64)
    p = torch.tensor(w, requires_grad=True)
    sgd = torch.optim.SGD([p], lr=1.0, weight_decay=0.1)
    (0 * p).sum().backward()
    sgd.step()
    close(w - g.grads["w"], p, 1e-12)


def test_maximum_gives_ties_to_its_first_argument_where_pytorch_splits():
    a, b = [1.0, 2.0, 3.0], [1.0, 1.0, 4.0]
    g = nnc.load("model m { input a: [3] input b: [3] loss sum(maximum(a, b)) }").grad(
        {"a": a, "b": b}, float_dtype=np.float64)
    _, (da, db) = torch_grads(lambda x, y: torch.maximum(x, y).sum(), a, b, dtype=np.float64)
    close(g.grads["a"], [1, 1, 0], 0)
    close(da, [0.5, 1, 0], 0)
    close(g.grads["a"] + g.grads["b"], da + db, 0)  # the same total, routed differently at the tie


def test_concat_joins_along_axis_1_by_default():
    model = nnc.load("model c { input a: [2, 3] input b: [2, 1] y = concat([a, b]) output y }")
    a, b = np.ones((2, 3)), np.zeros((2, 1))
    close(model.eval({"a": a, "b": b}, float_dtype=np.float64)["y"], torch.cat([torch.tensor(a), torch.tensor(b)],
                                                                               dim=1), 0)


def test_optimizer_defaults_differ_where_documented():
    def defaults(cls):
        return cls([torch.zeros(1, requires_grad=True)]).defaults

    assert (OPTIMIZERS["sgd"]["lr"], defaults(torch.optim.SGD)["lr"]) == (0.01, 0.001)
    assert (OPTIMIZERS["rmsprop"]["lr"], defaults(torch.optim.RMSprop)["lr"]) == (0.001, 0.01)
    assert (OPTIMIZERS["rmsprop"]["rho"], defaults(torch.optim.RMSprop)["alpha"]) == (0.9, 0.99)
    for name, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        d = defaults(cls)
        assert (OPTIMIZERS[name]["lr"], OPTIMIZERS[name]["beta1"], OPTIMIZERS[name]["beta2"],
                OPTIMIZERS[name]["eps"]) == (d["lr"], *d["betas"], d["eps"])
