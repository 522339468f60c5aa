"""Several values at once: a block's `return h, c`, `h, c = cell(...)`, split and chunk, and picking one.

An LSTM cell written as a block that returns (h, c) and unrolled over x[:, t] is compared with PyTorch's
nn.LSTM (forward and every gradient, float32 within 1e-5 natively, float64 within 1e-9 on the interpreter);
the statement labels, parameter names, summary rows and diagram boxes of such statements are checked, and
every misuse of several values is one located error (golden cases 95 and 96 in tests/errors).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_main

import nnc
from nnc import NncError
from nnc.front import ast
from nnc.front.syntax import parse
from nnc.viz import diagram

RNG = np.random.default_rng(11)

LSTM = """
def lstm_cell(x, h, c, w_ih, w_hh, b) {
  i, f, g, o = chunk(x @ w_ih + h @ w_hh + b, 4, axis=1)    # PyTorch's gate order
  c = sigmoid(f) * c + sigmoid(i) * tanh(g)
  return sigmoid(o) * tanh(c), c
}

model lstm3 {
  input x: [B, 3, 2]
  input h0: [B, 4]
  input c0: [B, 4]
  param w_ih: [2, 16]
  param w_hh: [4, 16]
  param b: [16] = zeros
  h, c = lstm_cell(x[:, 0], h0, c0, w_ih, w_hh, b)
  h, c = lstm_cell(x[:, 1], h, c, w_ih, w_hh, b)
  h, c = lstm_cell(x[:, 2], h, c, w_ih, w_hh, b)
  output h, c
  loss mean(square(h)) + mean(c)
}
"""


@pytest.mark.parametrize("backend, dtype, rtol", [(None, np.float32, 1e-5), ("reference", np.float64, 1e-9)])
def test_unrolled_lstm_cell_matches_pytorch(backend, dtype, rtol):
    model = nnc.loads(LSTM)
    inputs = {"x": RNG.normal(size=(5, 3, 2)), "h0": RNG.normal(size=(5, 4)), "c0": RNG.normal(size=(5, 4))}
    params = {"w_ih": RNG.normal(size=(2, 16)), "w_hh": RNG.normal(size=(4, 16)), "b": RNG.normal(size=16)}
    inputs = {k: v.astype(dtype) for k, v in inputs.items()}
    params = {k: v.astype(dtype) for k, v in params.items()}
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    lstm = torch.nn.LSTM(2, 4, batch_first=True, dtype=tdt)
    with torch.no_grad():  # nnc computes x @ w_ih with w_ih [in, 4H]: PyTorch's weights transposed
        lstm.weight_ih_l0.copy_(torch.tensor(params["w_ih"].T))
        lstm.weight_hh_l0.copy_(torch.tensor(params["w_hh"].T))
        lstm.bias_ih_l0.copy_(torch.tensor(params["b"]))
        lstm.bias_hh_l0.zero_()
    x = torch.tensor(inputs["x"], requires_grad=True)
    _, (h, c) = lstm(x, (torch.tensor(inputs["h0"])[None], torch.tensor(inputs["c0"])[None]))
    loss = (h[0] ** 2).mean() + c[0].mean()
    loss.backward()

    out = model.eval(inputs, params, backend=backend, float_dtype=dtype)
    np.testing.assert_allclose(out["h"], h[0].detach().numpy(), rtol=rtol)
    np.testing.assert_allclose(out["c"], c[0].detach().numpy(), rtol=rtol)
    np.testing.assert_allclose(out["loss"], loss.item(), rtol=rtol)
    grads = model.grad(inputs, params, backend=backend, float_dtype=dtype).grads
    for name, want in (("w_ih", lstm.weight_ih_l0.grad.numpy().T), ("w_hh", lstm.weight_hh_l0.grad.numpy().T),
                       ("b", lstm.bias_ih_l0.grad.numpy()), ("x", x.grad.numpy())):
        # relative to the gradient's scale: an entry that is a sum of terms cancelling to ~0 keeps their rounding
        np.testing.assert_allclose(grads[name], want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=name)


def test_statement_labels_values_and_summary_rows():
    """Each name of `h, c = ...` is a value of its own, rebound names count as for `h = ...` (h_2), and the
    summary has one row per statement with one shape per name."""
    model = nnc.loads(LSTM)
    g = model.graph
    assert [k for k in g.values if k[0] in "hc" and "." not in k] == ["h0", "c0", "h", "c", "h_2", "c_2", "h_3",
                                                                       "c_3"]
    assert g.outputs["h"] == g.values["h_3"] and g.outputs["c"] == g.values["c_3"]
    rows = [line.split() for line in model.summary().splitlines()]
    assert ["h_2,", "c_2", "index", "→", "lstm_cell", "[B,", "4],", "[B,", "4]", "0", "96"] in rows   # 2·16 + 4·16 MACs


CELL = """
def cell(x, h) {
  h = tanh(dense(x, 4) + dense(h, 4, bias=false))
  return h, 2 * h
}

model m {
  input x: [B, 3]
  input h0: [B, 4]
  h, c = cell(x, h0)
  h, c = cell(x, h)
  p, q = split(dense(x, 6), 3)
  output h, c, p, q
}
"""


def test_parameters_are_named_after_the_first_name():
    """`h, c = cell(...)` names the block's parameters h.… as `h = cell(...)` would (h_2.… when rebound), so
    the names stay those of the value the block is mostly about and stay unique; a layer called in such a
    statement is named the same way (p.weight)."""
    model = nnc.loads(CELL)
    assert list(model.param_types) == ["h.h.weight", "h.h.bias", "h.h.dense.weight", "h_2.h.weight", "h_2.h.bias",
                                       "h_2.h.dense.weight", "p.weight", "p.bias"]
    info = {i.label: i for i in model.graph.statements}
    assert info["h, c"].params == ["h.h.weight", "h.h.bias", "h.h.dense.weight"]
    assert info["p, q"].params == ["p.weight", "p.bias"]


def test_nnc_check_and_the_layers_diagram_show_one_statement(tmp_path):
    (tmp_path / "cell.nn").write_text(CELL, encoding="utf-8")
    result = run_main("check", "cell.nn", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[6:9] == [" h, c       cell            [B, 4], [B, 4]       32     28",
                          " h_2, c_2   cell            [B, 4], [B, 4]       32     28",
                          " p, q       dense → split   [B, 3], [B, 3]       24     18"]
    dot = diagram(nnc.loads(CELL), "layers")
    assert "h_2, c_2" in dot and "[B, 4], [B, 4]" in dot


def test_one_of_several_values_by_index_and_one_value_to_one_name():
    model = nnc.loads("def two(x) { return x, -x }\n"
                      "model m { input x: [B, 6] a = split(x, 2)[-1] b = two(x)[1] c = chunk(x, 1) output a, b, c }")
    x = RNG.normal(size=(2, 6)).astype(np.float32)
    out = model.eval({"x": x})
    np.testing.assert_array_equal(out["a"], x[:, 4:])
    np.testing.assert_array_equal(out["b"], -x)
    np.testing.assert_array_equal(out["c"], x)


def test_return_and_unpack_parse():
    program = parse("def f(x) { return x, x * 2, 3 }\nmodel m { input x: [2] a, b , c = f(x) output a }")
    ret = program.blocks[0].body[0]
    assert isinstance(ret.value, ast.Values) and len(ret.value.items) == 3
    unpack = program.models[0].body[1]
    assert isinstance(unpack, ast.Unpack) and [t.name for t in unpack.targets] == ["a", "b", "c"]
    assert (unpack.targets[2].loc.span.column, unpack.loc.span.column) == (31, 24)


ERRORS = [
    ("def two(x) { return x, x }", "a = two(x)", "got 1 name, expected 2 values", "a",
     "name them first: a, b = ..., then use one"),
    ("def two(x) { return x, x }", "a, b, c = two(x)", "got 3 names, expected 2 values", "a, b, c",
     "one name per value: a, b = ..."),
    ("", "a, b = x", "got 2 names, expected 1 value", "a, b",
     "split(x, sizes, axis) and chunk(x, n, axis) cut a tensor into several"),
    ("", "a, a = split(x, 2)", "name 'a' is bound twice in one statement", "a", None),
    ("", "x, y = split(x, 2)", "duplicate name 'x': already declared as input at 3:7", "x",
     None),
    ("def two(x) { return x, x }", "y = two(x) + 1", "'+' needs tensors or numbers: got 2 values", "two(x)",
     "name them first: a, b = ..., then use one"),
    ("def two(x) { return x, x }", "y = -two(x)", "cannot negate 2 values", "two(x)", None),
    ("def two(x) { return x, x }", "y = dense(two(x), 3)", "dense: x must be a tensor, got 2 values", "two(x)", None),
    ("def two(x) { return split(x, 2), x }", "a, b = two(x)", "return: each item is one value: got 2 values",
     "split(x, 2)", None),
    ("", "y = split(x, 2)[0:1]", "2 values take one integer index: got a slice", "0:1", None),
    ("", "y = split(x, 2)[2]", "index out of range for 2 values: got 2, expected -2 to 1", "2", None),
]


@pytest.mark.parametrize("blocks, body, message, at, hint", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_several_values_misused(blocks, body, message, at, hint):
    text = f"{blocks}\nmodel m {{\ninput x: [B, 4]\n{body}\noutput x\n}}"
    with pytest.raises(NncError) as info:
        nnc.loads(text)
    err = info.value
    assert err.message == message
    line = text.splitlines()[err.loc.span.line - 1]
    assert line[err.loc.span.column - 1:err.loc.span.end_column - 1] == at
    if hint is not None:
        assert err.hint == hint


def test_a_loss_of_several_values_is_an_error():
    with pytest.raises(NncError, match="loss is 2 values, expected a scalar tensor"):
        nnc.loads("def two(x) { return mean(x), mean(x) }\nmodel m { input x: [B, 4] output x loss two(x) }")
