"""Optimizer updates as graph nodes: each against an independent NumPy implementation, native vs reference,
and several steps of each against torch.optim on the same model.

The reference formulas below are written from PyTorch's documentation, not from
nnc/optim.py, and are driven by gradients from `Model.grad`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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
    Spec("adagrad", {"lr": 0.1}),
    Spec("adagrad", {"lr": 0.1, "lr_decay": 0.5, "initial_accumulator_value": 0.2}),
    Spec("adadelta", {}),
    Spec("adam", {"lr": 0.01}),
    Spec("adamw", {"lr": 0.01, "weight_decay": 0.1}),
]


def lr_of(spec):
    return {**OPTIMIZERS[spec.name], **spec.args}["lr"]


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
        elif name == "adagrad":
            s = state.get(k, np.full_like(p, a["initial_accumulator_value"])) + g * g
            state[k] = s
            new[k] = p - lr / (1 + (t - 1) * a["lr_decay"]) * g / (np.sqrt(s) + a["eps"])
        elif name == "adadelta":
            s, u = state.get(k, (np.zeros_like(p), np.zeros_like(p)))
            s = a["rho"] * s + (1 - a["rho"]) * g * g
            delta = np.sqrt(u + a["eps"]) / np.sqrt(s + a["eps"]) * g
            state[k] = (s, a["rho"] * u + (1 - a["rho"]) * delta * delta)
            new[k] = p - lr * delta
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
    lr = lr_of(spec)
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
    if spec.name in ("adam", "adamw", "adagrad"):
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
    expected = run_steps(g, start, data, lr_of(spec), np.float32)
    exe = compile_graph(g, {"B": 5})
    exe.set_params(start)
    for batch in data:
        exe.run({**batch, LR: np.asarray(lr_of(spec), dtype=np.float32)})
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


# ---- against torch.optim ------------------------------------------------------------------------

# backend -> (float dtype, relative tolerance): native code runs in float32, the reference in float64
BACKENDS = {"native": (np.float32, 1e-5), "reference": (np.float64, 1e-9)}


def torch_optimizer(spec: Spec, decayed: list, others: list, weight_decay: float):
    """The torch.optim counterpart of `spec`, with nnc's weight decay: on weight matrices only."""
    a = {**OPTIMIZERS[spec.name], **spec.args}
    if spec.name == "adamw":  # the train block's weight_decay replaces AdamW's own
        weight_decay = weight_decay or a["weight_decay"]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]
    if spec.name in ("sgd", "momentum"):
        return torch.optim.SGD(groups, lr=a["lr"], momentum=a["momentum"], nesterov=a["nesterov"])
    if spec.name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=a["lr"], alpha=a["rho"], eps=a["eps"])
    if spec.name == "adagrad":
        return torch.optim.Adagrad(groups, lr=a["lr"], lr_decay=a["lr_decay"], eps=a["eps"],
                                   initial_accumulator_value=a["initial_accumulator_value"])
    if spec.name == "adadelta":
        return torch.optim.Adadelta(groups, lr=a["lr"], rho=a["rho"], eps=a["eps"])
    cls = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
    return cls(groups, lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"])


def torch_steps(spec, params: dict, data: list, weight_decay: float, dtype) -> dict:
    """MODEL's parameters after one torch.optim step per batch of `data`."""
    p = {k: torch.tensor(np.asarray(params[k]), dtype=dtype, requires_grad=True)
         for k in ("h.weight", "h.bias", "pred.weight", "pred.bias")}
    opt = torch_optimizer(spec, [p["h.weight"], p["pred.weight"]], [p["h.bias"], p["pred.bias"]], weight_decay)
    for batch in data:
        x, y = (torch.tensor(np.asarray(batch[k]), dtype=dtype) for k in ("x", "y"))
        pred = torch.tanh(x @ p["h.weight"] + p["h.bias"]) @ p["pred.weight"] + p["pred.bias"]
        opt.zero_grad()
        F.mse_loss(pred, y).backward()
        opt.step()
    return {k: v.detach().numpy() for k, v in p.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", SPECS, ids=[f"{s.name}-{i}" for i, s in enumerate(SPECS)])
def test_steps_match_torch_optim(model, spec, backend):
    from nnc.backend import compile_graph

    dtype, rtol = BACKENDS[backend]
    g = model.training_step(spec, weight_decay=0.01)
    start = init_params(g, seed=4, float_dtype=dtype)
    data = batches(model, 6)
    if backend == "native":
        exe = compile_graph(g, {"B": 5})
        exe.set_params(start)
        for batch in data:
            exe.run({**batch, LR: np.asarray(lr_of(spec), dtype=np.float32)})
        got = exe.params
    else:
        got = run_steps(g, start, data, lr_of(spec), np.float64)
    want = torch_steps(spec, start, data, 0.01, torch.float32 if dtype is np.float32 else torch.float64)
    for name, value in want.items():
        assert not np.allclose(value, start[name], rtol=1e-3), f"{name} barely moved: the test would prove little"
        np.testing.assert_allclose(got[name], value, rtol=rtol, atol=rtol, err_msg=name)  # parameters are O(1)


def test_adagrad_and_adadelta_defaults_are_pytorchs():
    def defaults(cls):
        return cls([torch.zeros(1, requires_grad=True)]).defaults

    assert OPTIMIZERS["adagrad"] == {k: defaults(torch.optim.Adagrad)[k]
                                     for k in ("lr", "lr_decay", "initial_accumulator_value", "eps")}
    assert OPTIMIZERS["adadelta"] == {k: defaults(torch.optim.Adadelta)[k] for k in ("lr", "rho", "eps")}
