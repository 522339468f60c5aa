"""Recurrent layers (nnc/front/recurrent.py) against PyTorch's nn.RNN / nn.LSTM / nn.GRU with the same weights.

Every layer, both directions, with and without an initial state, the last step or the whole sequence:
forward values and the gradients of a loss with respect to the input, the initial state and every
weight, native code in float32 within 1e-5 and the reference interpreter in float64 within 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nnc
from nnc.errors import NncError

B, T, D, H = 3, 6, 4, 5
TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def model(kind: str, sequences: bool, bidirectional: bool, initial: bool, activation: str = "tanh",
          unroll: bool = False) -> nnc.Model:
    out = 2 * H if bidirectional else H
    shape = f"[B, {T}, {out}]" if sequences else f"[B, {out}]"
    state = ""
    if initial:
        state = ", h0=h0" + (", c0=c0" if kind == "lstm" else "")
    act = f', activation="{activation}"' if kind == "rnn" else ""
    args = f"return_sequences={'true' if sequences else 'false'}, bidirectional={'true' if bidirectional else 'false'}"
    args += ", unroll=true" if unroll else ""
    return nnc.loads(f"""
model m {{
  input x: [B, {T}, {D}]
  input h0: [B, {H}]
  input c0: [B, {H}]
  input y: {shape}
  h = {kind}(x, {H}, {args}{state}{act}, name="cell")
  output h
  loss mse(h, y) + 0 * (sum(h0) + sum(c0))
}}""")


def torch_layer(kind: str, params: dict, bidirectional: bool, activation: str, dtype) -> torch.nn.Module:
    extra = {"nonlinearity": activation} if kind == "rnn" else {}
    layer = TORCH[kind](D, H, batch_first=True, bidirectional=bidirectional, dtype=dtype, **extra)
    with torch.no_grad():
        for prefix, suffix in (("cell.", ""), ("cell.reverse.", "_reverse"))[:2 if bidirectional else 1]:
            getattr(layer, f"weight_ih_l0{suffix}").copy_(torch.tensor(params[f"{prefix}weight_ih"].T))
            getattr(layer, f"weight_hh_l0{suffix}").copy_(torch.tensor(params[f"{prefix}weight_hh"].T))
            getattr(layer, f"bias_ih_l0{suffix}").copy_(torch.tensor(params[f"{prefix}bias_ih"]))
            getattr(layer, f"bias_hh_l0{suffix}").copy_(torch.tensor(params[f"{prefix}bias_hh"]))
    return layer


def torch_result(kind, params, inputs, sequences, bidirectional, initial, activation, dtype):
    layer = torch_layer(kind, params, bidirectional, activation, dtype)
    x = torch.tensor(inputs["x"], requires_grad=True)
    h0 = torch.tensor(inputs["h0"], requires_grad=True)
    c0 = torch.tensor(inputs["c0"], requires_grad=True)
    dirs = 2 if bidirectional else 1
    state = None
    if initial:
        state = (h0.expand(dirs, B, H), c0.expand(dirs, B, H)) if kind == "lstm" else h0.expand(dirs, B, H)
    out, last = layer(x, state)
    hn = last[0] if kind == "lstm" else last
    h = out if sequences else torch.cat(list(hn), dim=-1)
    loss = torch.mean((h - torch.tensor(inputs["y"])) ** 2)
    loss.backward()
    grads = {"x": x.grad, "h0": h0.grad, "c0": c0.grad}
    for prefix, suffix in (("cell.", ""), ("cell.reverse.", "_reverse"))[:dirs]:
        for w in ("weight_ih", "weight_hh"):
            grads[prefix + w] = getattr(layer, f"{w}_l0{suffix}").grad.T
        for w in ("bias_ih", "bias_hh"):
            grads[prefix + w] = getattr(layer, f"{w}_l0{suffix}").grad
    return h.detach().numpy(), {k: (v.numpy() if v is not None else None) for k, v in grads.items()}


CASES = [(kind, sequences, bidirectional, initial, False) for kind in ("rnn", "lstm", "gru")
         for sequences, bidirectional, initial in ((False, False, False), (True, False, True), (False, True, True),
                                                   (True, True, False))]
CASES += [(kind, True, True, True, True) for kind in ("rnn", "lstm", "gru")]  # unroll=true: the same numbers


@pytest.mark.parametrize("kind, sequences, bidirectional, initial, unroll", CASES)
@pytest.mark.parametrize("precision", ["float32-native", "float64-reference"])
def test_recurrent_layers_match_pytorch(kind, sequences, bidirectional, initial, unroll, precision):
    m = model(kind, sequences, bidirectional, initial, unroll=unroll)
    dtype, tol = (np.float32, 1e-5) if precision.startswith("float32") else (np.float64, 1e-9)
    params = m.init_params(0, float_dtype=dtype)
    rng = np.random.default_rng(1)
    out = 2 * H if bidirectional else H
    inputs = {"x": rng.normal(size=(B, T, D)), "h0": rng.normal(size=(B, H)), "c0": rng.normal(size=(B, H)),
              "y": rng.normal(size=(B, T, out) if sequences else (B, out))}
    inputs = {k: v.astype(dtype) for k, v in inputs.items()}
    want_h, want_grads = torch_result(kind, params, inputs, sequences, bidirectional, initial, "tanh",
                                      torch.float32 if dtype == np.float32 else torch.float64)
    backend = "reference" if dtype == np.float64 else None
    got = m.grad(inputs, params, wrt=[*(k for k in want_grads if k.startswith("cell.")), "x", "h0", "c0"],
                 float_dtype=dtype, backend=backend)
    h = m.eval(inputs, params, float_dtype=dtype, backend=backend)["h"]
    np.testing.assert_allclose(h, want_h, rtol=tol, atol=tol)
    for name, want in want_grads.items():
        if want is None:
            assert not np.any(got.grads[name]), name  # no initial state: its gradient is 0
            continue
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got.grads[name], want, rtol=tol, atol=tol * scale, err_msg=name)


def test_relu_rnn_matches_pytorch():
    m = model("rnn", True, False, True, activation="relu")
    params = m.init_params(0)
    rng = np.random.default_rng(2)
    inputs = {k: rng.normal(size=s).astype(np.float32)
              for k, s in (("x", (B, T, D)), ("h0", (B, H)), ("c0", (B, H)), ("y", (B, T, H)))}
    want, _ = torch_result("rnn", params, inputs, True, False, True, "relu", torch.float32)
    np.testing.assert_allclose(m.eval(inputs, params)["h"], want, rtol=1e-5, atol=1e-5)


def test_the_parameters_have_pytorchs_layout_transposed():
    m = model("lstm", False, True, False)
    types = {name: tuple(t.shape) for name, t in m.param_types.items()}
    assert types == {"cell.weight_ih": (D, 4 * H), "cell.weight_hh": (H, 4 * H), "cell.bias_ih": (4 * H,),
                     "cell.bias_hh": (4 * H,), "cell.reverse.weight_ih": (D, 4 * H),
                     "cell.reverse.weight_hh": (H, 4 * H), "cell.reverse.bias_ih": (4 * H,),
                     "cell.reverse.bias_hh": (4 * H,)}


@pytest.mark.parametrize("body, message", [
    ("input x: [B, 5]\nh = lstm(x, 4)", "lstm: input has shape [B, 5], expected a 3-D [B, T, features] sequence"),
    ("input x: int[B, 3, 5]\nh = gru(x, 4)", "gru: input is an int tensor int[B, 3, 5], expected a float"),
    ("input x: [B, 3, 5]\ninput h0: [B, 3]\nh = rnn(x, 4, h0=h0)", "rnn: h0 has shape [B, 3], expected [B, 4]"),
    ("input x: [B, 3, 5]\nh = rnn(x, 4, activation=\"sigmoid\")", 'rnn: activation must be "tanh" or "relu"'),
])
def test_bad_recurrent_calls_are_one_located_error(body, message):
    with pytest.raises(NncError) as info:
        nnc.loads(f"model m {{\n{body}\noutput h\n}}")
    assert message in info.value.message
    assert info.value.loc is not None


def test_an_unrolled_rnn_draws_backpropagation_through_time_step_by_step():
    """unroll=true writes the cell out per step: the shared weight's gradient is the sum of one
    contribution per time step, and the backward diagram labels each with its step."""
    from nnc.viz import diagram

    m = nnc.loads("""
model rnn3 {
  input x: [B, 3, 1]
  input y: [B, 2]
  h = rnn(x, 2, unroll=true, name="rnn")
  output h
  loss mse(h, y)
}""")
    g = m._gradient_graph(m.training_graph.loss, ("rnn.weight_hh",), ())
    grad = g.grads["rnn.weight_hh"]
    steps = {g.nodes[n].get("step") for n in g.needed_for([grad]) if g.nodes[n].get("grad_of") is not None}
    assert {1, 2, 3} <= steps
    dot = diagram(m, "backward")
    assert all(f"(step {t})" in dot for t in (1, 2, 3)) and "h, step 3" in dot
