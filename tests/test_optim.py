"""Optimizer updates as graph nodes: each against an independent NumPy implementation, then native vs reference.

The reference formulas below are written from PyTorch's documentation, not from
nnc/optim.py, and are driven by gradients from `Model.grad`.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnc
from nnc.ir import interp
from nnc.passes.optim import LR, STEP
from nnc.runtime.init import init_params
from nnc.specs import OPTIMIZERS, Spec

MODEL = """
model smooth {
  input  x: [B, 3]
  input  y: [B, 2]
  h = tanh(dense(x, 4))
  pred = dense(h, 2)
  output pred
  loss mse(pred, y)
}
"""

SPECS = [
    Spec("sgd", {"lr": 0.1}),
    Spec("sgd", {"lr": 0.1, "momentum": 0.9}),
    Spec("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    Spec("rmsprop", {"lr": 0.01}),
    Spec("adam", {"lr": 0.01}),
    Spec("adamw", {"lr": 0.01, "weight_decay": 0.1}),
]


def numpy_step(name, args, params, grads, state, t, lr, weight_decay=0.0):
    a = {**OPTIMIZERS[name], **args}
    new = {}
    for k, p in params.items():
        g = grads[k]
        if weight_decay and name != "adamw" and p.ndim >= 2:
            g = g + weight_decay * p
        if name in ("sgd", "momentum"):
            if a["momentum"]:
                v = state.get(k, np.zeros_like(p)) * a["momentum"] + g
                state[k] = v
                g = g + a["momentum"] * v if a["nesterov"] else v
            new[k] = p - lr * g
        elif name == "rmsprop":
            s = a["rho"] * state.get(k, np.zeros_like(p)) + (1 - a["rho"]) * g * g
            state[k] = s
            new[k] = p - lr * g / (np.sqrt(s) + a["eps"])
        else:
            m, v = state.get(k, (np.zeros_like(p), np.zeros_like(p)))
            m = a["beta1"] * m + (1 - a["beta1"]) * g
            v = a["beta2"] * v + (1 - a["beta2"]) * g * g
            state[k] = (m, v)
            if name == "adamw" and p.ndim >= 2:
                p = p - lr * a["weight_decay"] * p
            bc1, bc2 = 1 - a["beta1"] ** t, 1 - a["beta2"] ** t
            new[k] = p - (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + a["eps"])
    return new


def run_steps(g, params, batches, lr, float_dtype):
    params = {k: v.copy() for k, v in params.items()}
    for batch in batches:
        values = interp.run(g, {**batch, LR: np.asarray(lr)}, params, float_dtype=float_dtype)
        for name, n in g.updates.items():
            params[name] = values[n]
    return params


@pytest.fixture(scope="module")
def model():
    return nnc.loads(MODEL)


def batches(model, n=3):
    return [model.random_inputs(5, seed=s) for s in range(n)]


@pytest.mark.parametrize("spec", SPECS, ids=[f"{s.name}-{i}" for i, s in enumerate(SPECS)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_update_matches_numpy_reference(model, spec, weight_decay):
    g = model.training_step(spec, weight_decay=weight_decay)
    start = init_params(g, seed=2, float_dtype=np.float64)
    lr = spec.args["lr"]
    data = batches(model)
    got = run_steps(g, start, data, lr, np.float64)
    expected = {k: v for k, v in start.items() if k in model.param_types}
    state = {}
    for t, batch in enumerate(data, start=1):
        grads = model.grad(batch, expected, wrt=list(model.param_types), float_dtype=np.float64).grads
        if spec.name == "adamw":  # the train block's weight_decay is AdamW's decoupled decay
            args = {**spec.args, "weight_decay": weight_decay} if weight_decay else spec.args
            expected = numpy_step(spec.name, args, expected, grads, state, t, lr)
        else:
            expected = numpy_step(spec.name, spec.args, expected, grads, state, t, lr, weight_decay)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    if spec.name.startswith("adam"):
        assert got[STEP] == len(data)


def test_clipping_scales_by_the_global_norm(model):
    spec = Spec("sgd", {"lr": 1.0})
    clipped = model.training_step(spec, clip=1e-3)
    start = init_params(clipped, seed=2, float_dtype=np.float64)
    batch = batches(model, 1)
    got = run_steps(clipped, start, batch, 1.0, np.float64)
    grads = model.grad(batch[0], start, wrt=list(model.param_types), float_dtype=np.float64).grads
    norm = np.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    assert norm > 1e-3
    for name, g in grads.items():
        np.testing.assert_allclose(got[name], start[name] - g * (1e-3 / norm), rtol=1e-10)


@pytest.mark.parametrize("spec", SPECS, ids=[f"{s.name}-{i}" for i, s in enumerate(SPECS)])
def test_native_train_step_matches_reference(model, spec):
    from nnc.backend import compile_graph

    g = model.training_step(spec, weight_decay=0.01, clip=5.0)
    start = init_params(g, seed=4)
    data = batches(model)
    expected = run_steps(g, start, data, spec.args["lr"], np.float32)
    exe = compile_graph(g, {"B": 5})
    exe.set_params(start)
    for batch in data:
        exe.run({**batch, LR: np.asarray(spec.args["lr"], dtype=np.float32)})
    for name in g.updates:
        np.testing.assert_allclose(exe.params[name], expected[name], rtol=2e-5, atol=1e-6, err_msg=name)


def test_state_is_named_for_checkpoints(model):
    g = model.training_step(Spec("adam", {}))
    names = set(g.params)
    assert {"optimizer/step", "optimizer/h.weight/m", "optimizer/h.weight/v"} <= names
    assert all(not g.nodes[g.params[n]]["attrs"]["trainable"] for n in names if n.startswith("optimizer/"))


def test_a_model_without_loss_cannot_train():
    m = nnc.load("examples/circuit.nn")
    with pytest.raises(nnc.NncError, match="no loss"):
        m.training_step(Spec("sgd", {}))
