"""Tensors written out in the model file, and parameters given on the command line.

`param w: [2, 1] = [[20], [20]]` and `init=[[...]]` give every value of a parameter, checked against its
shape (a located error at the first list of the wrong length); `x * [1, 2, 3]` and `[[1, 0], [0, 1]] @ v` use a
written-out tensor as a constant in the dtype of the tensor it meets; `--at NAME=VALUE` sets parameters as
well as inputs (eval, grad, explain, viz), over --params. Golden errors: tests/errors/90 and 91.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_main

import nnc
from nnc import NncError
from nnc.ir import ops

RNG = np.random.default_rng(5)

GATE = """
model and_gate {
  input  x: [B, 2]
  param  w: [2, 1] = [[20], [20]]
  param  b: [1]    = [-30]
  h = sigmoid(x @ w + b)
  output h
}
"""
TRUTH = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_param_values_written_out():
    """The values are the parameter's initial value, deterministic: eval needs no --params or random_params."""
    model = nnc.loads(GATE)
    assert model.random_param_names() == []
    params = model.init_params(seed=3)
    np.testing.assert_array_equal(params["w"], [[20], [20]])
    np.testing.assert_array_equal(params["b"], [-30])
    want = sigmoid(TRUTH @ np.array([[20], [20]]) - 30)
    for backend in (None, "reference"):
        np.testing.assert_allclose(model.eval({"x": TRUTH}, backend=backend)["h"], want, rtol=1e-6)


def test_a_conv_kernel_written_out():
    """The slide's edge kernel, as a param and as conv2d's init=, against PyTorch's conv2d."""
    kernel = [[[[1, 0, 1], [0, 1, 0], [1, 0, 1]]]]
    text = f"""
model edges {{
  input  image: [B, 1, 6, 6]
  param  k: [1, 1, 3, 3] = {kernel}
  y = conv2d(image, 1, 3, bias=false, init={kernel})
  z = sum(image[:, :, 0:3, 0:3] * k, axis=[1, 2, 3])
  output y, z
}}"""
    model = nnc.loads(text)
    image = RNG.normal(size=(2, 1, 6, 6)).astype(np.float32)
    out = model.eval({"image": image})
    want = torch.nn.functional.conv2d(torch.tensor(image), torch.tensor(kernel, dtype=torch.float32))
    np.testing.assert_allclose(out["y"], want.numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["z"], want.numpy()[:, 0, 0, 0], rtol=1e-5)
    assert model.init_params()["y.weight"].tolist() == kernel


def test_written_out_tensors_in_expressions():
    model = nnc.loads("""
model m {
  input x: [B, 3]
  input v: [2, 3]
  input d: f64[3]
  input k: int[B, 2]
  a = x * [1, 2, 3] + [[0.5], [1.5]][1]
  b = [[2, 1], [0, 1]] @ v
  c = d - [1, 2, 3]
  e = -[1, 2] + relu([[-1, 1]])
  n = k + [1, 2]
  output a, b, c, e, n
  loss mean(square(a))
}""")
    g = model.graph
    consts = sorted(str(g.type_of(n)) for n in g.nodes if g.op(n) is ops.const and g.type_of(n).shape)
    assert consts == ["[1, 2]", "[2, 1]", "[2, 2]", "[2]", "[3]", "f64[3]", "int[2]"]  # the dtype they meet
    assert [str(g.type_of(g.values[k])) for k in ("c", "n")] == ["f64[3]", "int[B, 2]"]
    x, v, d = RNG.normal(size=(4, 3)), RNG.normal(size=(2, 3)), RNG.normal(size=3)
    k = np.array([[1, 2]] * 4, dtype=np.int32)
    for dtype in (np.float32, np.float64):  # f64 tensors run on the interpreter
        out = model.eval({"x": x.astype(dtype), "v": v.astype(dtype), "d": d, "k": k}, backend="reference",
                         float_dtype=dtype)
        np.testing.assert_allclose(out["a"], x * [1, 2, 3] + 1.5, rtol=1e-6)
        np.testing.assert_allclose(out["b"], np.array([[2, 1], [0, 1]]) @ v, rtol=1e-6)
        np.testing.assert_allclose(out["c"], d - [1, 2, 3], rtol=1e-12)
        np.testing.assert_allclose(out["e"], [[-1, -1]])
        np.testing.assert_array_equal(out["n"], k + [1, 2])


def test_native_code_reads_written_out_constants():
    model = nnc.loads("model m { input x: [B, 3] y = relu(x * [1, -2, 3] + [[1, 2, 3], [4, 5, 6]][0]) output y "
                      "loss sum(y * [[1, 1, 0]]) }")
    x = RNG.normal(size=(5, 3)).astype(np.float32)
    want = np.maximum(x * [1, -2, 3] + [1, 2, 3], 0)
    np.testing.assert_allclose(model.eval({"x": x})["y"], want, rtol=1e-6)
    native, reference = model.grad({"x": x}), model.grad({"x": x}, backend="reference")
    np.testing.assert_allclose(native.grads["x"], reference.grads["x"], rtol=1e-6)
    np.testing.assert_allclose(native.grads["x"], (want > 0) * [1, -2, 0], rtol=1e-6)


def test_lists_of_numbers_still_work_as_lists():
    model = nnc.loads("model m { input x: [B, 6] y = transpose(reshape(x, [B, 2, 3]), [0, 2, 1]) "
                      "z = sum(y, axis=[1, 2]) output y, z }")
    x = RNG.normal(size=(2, 6)).astype(np.float32)
    out = model.eval({"x": x})
    np.testing.assert_array_equal(out["y"], x.reshape(2, 2, 3).transpose(0, 2, 1))


LITERAL_ERRORS = [
    ("param w: [2, 1] = [[20, 20]]", "param 'w': the values have shape [1, 2], expected [2, 1]: dim 0 has 1 item, "
     "expected 2", "[[20, 20]]"),
    ("param w: [2, 2] = [[1, 0], [0, 1, 2]]", "the rows of a tensor written out differ in shape: got [3], "
     "expected [2] like the first", "[0, 1, 2]"),
    ("param w: [3] = [[1, 2, 3]]", "param 'w': the values have shape [1, 3], expected [3]: dim 0 has 1 item, "
     "expected 3", "[[1, 2, 3]]"),
    ("param s: float = [1]", "param 's': the values have shape [1], expected []: 1 levels of brackets, expected 0",
     "[1]"),
    ("param w: [2] = [1, [2]]", "a tensor written out mixes numbers and lists: got a list, expected the number 1",
     "[2]"),
    ("param w: [2] = [1, 1e39]", "param 'w': the initializer constant((1.0, 1e+39)) gives values beyond", "w"),
    ("y = dense(x, 2, init=[[1, 2]])", "dense: the weight: the values have shape [1, 2], expected [4, 2]: dim 0 has "
     "1 item, expected 4", "[[1, 2]]"),
    ("y = x * [1, 2, 3]", "mul: shapes [B, 4] and [3] do not broadcast", "x * [1, 2, 3]"),
    ("input k: int[B, 2]\ny = k + [1, 2.5]", "the list [2] (holding 2.5) meets an int tensor; expected a float "
     "tensor", "[1, 2.5]"),
    ("y = x * [1, 1e39, 0, 0]", "the list [4] does not fit float tensors: got 1e+39, expected", "[1, 1e39, 0, 0]"),
    ("y = dense([1, 2], 3)", "dense: x must be a tensor, got a list", "[1, 2]"),
]


@pytest.mark.parametrize("body, message, at", LITERAL_ERRORS, ids=[e[1][:40] for e in LITERAL_ERRORS])
def test_literal_errors_point_at_the_list(body, message, at):
    text = f"model m {{\ninput x: [B, 4]\n{body}\noutput x\n}}"
    with pytest.raises(NncError) as info:
        nnc.loads(text)
    err = info.value
    assert err.message.startswith(message)
    line = text.splitlines()[err.loc.span.line - 1]
    assert line[err.loc.span.column - 1:err.loc.span.end_column - 1] == at


# ---- --at sets parameters -----------------------------------------------------------------------

PERCEPTRON = """
model and_gate {
  input  x: [B, 2]
  param  w: [2, 1]
  param  b: [1]
  h = sigmoid(x @ w + b)
  output h
  loss mean(h)
}
"""
AT = ["--at", "w=[[20],[20]]", "b=-30", "x=[[0,0],[0,1],[1,0],[1,1]]"]


@pytest.fixture
def perceptron(tmp_path):
    (tmp_path / "gate.nn").write_text(PERCEPTRON, encoding="utf-8")
    return tmp_path


def test_at_sets_parameters_for_eval(perceptron):
    result = run_main("eval", "gate.nn", *AT, cwd=perceptron)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "h = [[0.      ],\n [0.000045],\n [0.000045],\n [0.999955]]\nloss = 0.250011\n"
    assert "random" not in result.stdout


def test_at_sets_parameters_for_grad_explain_and_viz(perceptron):
    result = run_main("grad", "gate.nn", *AT, "--dtype", "float64", "--out", "g.npz", cwd=perceptron)
    assert result.returncode == 0, result.stderr
    s = sigmoid(np.array([-30, -10, -10, 10]))
    grads = np.load(perceptron / "g.npz")
    np.testing.assert_allclose(grads["b"], [(s * (1 - s)).mean()], rtol=1e-12)
    np.testing.assert_allclose(grads["w"], (TRUTH.T @ (s * (1 - s)))[:, None] / 4, rtol=1e-12)
    result = run_main("explain", "gate.nn", *AT, cwd=perceptron)
    assert result.returncode == 0 and "w" in result.stdout, result.stderr
    result = run_main("viz", "gate.nn", *AT, "-o", "gate.dot", cwd=perceptron)
    assert result.returncode == 0, result.stderr
    dot = (perceptron / "gate.dot").read_text(encoding="utf-8")
    assert "w = [2, 1] ‖·‖=28.3 mean=20" in dot and "b = [1] ‖·‖=30 mean=-30" in dot


def test_at_over_params_and_params_for_the_rest(perceptron):
    np.savez(perceptron / "p.npz", w=np.array([[1.0], [1.0]]), b=np.array([5.0]))
    result = run_main("eval", "gate.nn", "--params", "p.npz", "--at", "b=-1.5", "x=[[1,1]]", cwd=perceptron)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"h = [[{sigmoid(0.5):.6f}]]\nloss = {sigmoid(0.5):.6f}\n"
    result = run_main("eval", "gate.nn", "--at", "b=-1.5", "x=[[1,1]]", cwd=perceptron)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no values for the randomly initialized parameters of model 'and_gate': "
                                    "w [2, 1]\n")


@pytest.mark.parametrize("args, message", [
    (["--at", "q=1"], "error: model 'and_gate' has no input or parameter 'q'\n"
                      "hint: its inputs are: x; its parameters: w, b\n"),
    (["--at", "w=[20,20]", "b=1", "x=[[1,1]]"], "error: --at w: got shape [2], expected [2, 1], the shape of "
                                                "parameter 'w'\n"),
    (["--at", "w=7", "b=1", "x=[[1,1]]"], "error: --at w: got shape [], expected [2, 1], the shape of parameter "
                                          "'w'\n"),
])
def test_at_mistakes(perceptron, args, message):
    result = run_main("eval", "gate.nn", *args, cwd=perceptron)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", message)
