"""Autodiff end to end: hand derivations from the course, simplification, train/eval forms, commands.

Per-op rules are checked against finite differences in test_vjp.py; here the
whole pipeline is checked on the example models.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import nnc
from nnc.cli.main import main
from nnc.ir import interp
from nnc.ir.graph import verify
from nnc.passes import pipeline
from nnc.passes.autodiff import grad
from nnc.passes.simplify import _key, simplify

EXAMPLES = sorted(p for p in __import__("pathlib").Path(__file__).parent.parent.joinpath("examples").glob("*.nn"))
AT = {"x": -2.0, "y": 5.0, "z": -4.0}


def test_circuit_gradients_match_the_course():
    m = nnc.load("examples/circuit.nn")
    r = m.grad(AT, intermediates=True)
    assert r.of == "f" and float(r.value) == -12
    assert {k: float(v) for k, v in r.grads.items()} == {"x": -4, "y": -4, "z": 3}
    assert float(r.intermediates["q"]) == -4


CHAIN_AT = {"x1": 2.0, "x2": 1.0, "x3": -1.0, "x4": 0.5, "y": 1.0}


def test_chain_rule_network_matches_hand_derivation():
    """The course's network: z1k = Σ_j x_j·W[k, j] (hidden unit 1's weights w1j, 2's u1j, 3's v1j), a1k = σ(z1k),
    a2 = z2 = Σ_k a1k·w2k, L = (y − a2)²; every gradient from the course's chain-rule factors."""
    m = nnc.load("examples/mlp_chain_rule.nn")
    x = np.array([CHAIN_AT[f"x{j}"] for j in (1, 2, 3, 4)])
    y = CHAIN_AT["y"]
    p = m.init_params()
    hidden = ("w1", "u1", "v1")
    w = np.array([[float(p[f"{unit}{j}"]) for j in (1, 2, 3, 4)] for unit in hidden])
    v = np.array([float(p[f"w2{k}"]) for k in (1, 2, 3)])
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    a1 = sig(w @ x)
    a2 = a1 @ v                                  # the output is linear: ∂a2/∂z2 = 1
    dL_dz2 = -2 * (y - a2) * 1
    expected_w = np.outer(dL_dz2 * v * a1 * (1 - a1), x)   # ∂L/∂a2 · ∂a2/∂z2 · ∂z2/∂a1k · ∂a1k/∂z1k · ∂z1k/∂w
    r = m.grad(CHAIN_AT, p, float_dtype=np.float64)
    assert float(r.value) == pytest.approx((y - a2) ** 2, rel=1e-12)
    for k, unit in enumerate(hidden):
        for j in range(4):
            assert r.grads[f"{unit}{j + 1}"] == pytest.approx(expected_w[k, j], rel=1e-12, abs=1e-15)
    for k in range(3):
        assert r.grads[f"w2{k + 1}"] == pytest.approx(dL_dz2 * a1[k], rel=1e-12)


def test_gates_route_gradients_as_the_course_says():
    """f = 2·(x·y + max(z, w)) at 3, -4, 2, -1: add distributes, max routes, mul switches."""
    m = nnc.load("examples/gates.nn")
    r = m.grad({"x": 3, "y": -4, "z": 2, "w": -1}, intermediates=True)
    assert float(r.value) == -20
    assert {k: float(v) for k, v in r.grads.items()} == {"x": -8, "y": 6, "z": 2, "w": 0}
    assert {k: float(v) for k, v in r.intermediates.items()} == {"p": 2, "m": 2, "s": 2, "f": 1}
    r = m.grad({"x": 1, "y": 5, "z": -3, "w": 4})   # now w is the larger: max routes everything to it
    assert {k: float(v) for k, v in r.grads.items()} == {"x": 10, "y": 2, "z": 0, "w": 2}


def test_backward_nodes_record_provenance():
    m = nnc.load("examples/mnist_mlp.nn")
    g = grad(m.graph)
    backward = [n for n in g.nodes if g.nodes[n].get("grad_of") is not None]
    assert backward
    for n in backward:
        assert g.nodes[n]["grad_of"] in g and g.nodes[n]["rule"], g.describe(n)
    rules = {g.nodes[n]["rule"] for n in backward}
    assert "matmul: dA = dC · Bᵀ" in rules and "relu: dx = dy · [x > 0]" in rules


def test_mnist_backward_graph_has_no_dead_or_duplicate_nodes():
    m = nnc.load("examples/mnist_mlp.nn")
    g = pipeline.gradient(m.graph)   # verified after every pass (NNC_VERIFY_PASSES=1 in the tests)
    needed = g.needed_for(g.roots()) | set(g.inputs.values()) | set(g.params.values())
    assert set(g.nodes) == needed, f"dead nodes: {set(g.nodes) - needed}"
    keys = [_key(g, n) for n in g.nodes if _key(g, n) is not None]
    assert len(keys) == len(set(keys)), "duplicate nodes survived CSE"
    backward = [n for n in g.nodes if g.nodes[n].get("grad_of") is not None]
    # a hand derivation: per dense layer dW, db, and (but for the first) dx and the relu mask product,
    # plus the loss's softmax − onehot scaled by 1/B
    assert len(backward) <= 22, g.dump()
    text = g.dump()
    assert "grad h1.weight" in text and "matmul(" in text


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_simplify_preserves_values(path):
    m = nnc.load(path)
    g = m.training_graph
    raw = grad(g, of=m.resolve(None, g)[1], wrt=m.default_wrt())
    simple = simplify(raw)
    verify(simple)
    inputs = m.random_inputs(2, seed=3)
    params = m.init_params(1)
    a = interp.run(raw, inputs, params, targets=list(raw.grads.values()), float_dtype=np.float64)
    b = interp.run(simple, inputs, params, targets=list(simple.grads.values()), float_dtype=np.float64)
    for name in raw.grads:
        np.testing.assert_allclose(b[simple.grads[name]], a[raw.grads[name]], rtol=1e-10,
                                   atol=1e-12, err_msg=name)
    assert len(simple) <= len(raw)


def test_dropout_and_batchnorm_have_train_and_eval_forms():
    m = nnc.load("examples/mnist_mlp_dropout_bn.nn")
    ops_eval = {m.graph.op(n).name for n in m.graph}
    ops_train = {m.training_graph.op(n).name for n in m.training_graph}
    assert "dropout_mask" not in ops_eval and "dropout_mask" in ops_train
    assert set(m.training_graph.updates) == {
        "h1.batchnorm.running_mean", "h1.batchnorm.running_var",
        "h2.batchnorm.running_mean", "h2.batchnorm.running_var"}
    inputs = m.random_inputs(64, seed=0)
    params = m.init_params(0)
    g = m.training_graph
    values = interp.run(g, inputs, params, seed=5)
    # running mean moves 10% of the way to the batch mean (momentum 0.1)
    rm = values[g.updates["h1.batchnorm.running_mean"]]
    pre = inputs["image"] @ params["h1.weight"] + params["h1.bias"]
    np.testing.assert_allclose(rm, 0.1 * pre.mean(axis=0), rtol=1e-4, atol=1e-6)
    # the same seed gives the same masks; another seed other masks
    again = interp.run(g, inputs, params, seed=5)
    other = interp.run(g, inputs, params, seed=6)
    loss = g.loss
    assert values[loss] == again[loss] and values[loss] != other[loss]


def test_dropout_mask_rate_and_scale():
    m = nnc.loads("""
    model d {
      input x: [B, 1000]
      y = dropout(x, 0.3)
      output y
      loss mean(y)
    }""")
    g = m.training_graph
    out = interp.run(g, {"x": np.ones((8, 1000))}, {}, seed=1)[g.outputs["y"]]
    assert abs((out == 0).mean() - 0.3) < 0.02
    np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-6)
    assert np.all(m.eval({"x": np.ones((8, 1000))})["y"] == 1)


def test_grad_command_prints_the_circuit(capsys):
    assert main(["grad", "examples/circuit.nn", "--at", "x=-2", "y=5", "z=-4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == ["f = -12", "df/dx = -4", "df/dy = -4", "df/dz = 3", "df/dq = -4"]


def test_grad_out_file_is_keyed_by_name(tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert main(["grad", "examples/linreg.nn", "--random-inputs", "4", "--out", str(out)]) == 0
    with np.load(out) as data:
        assert set(data.files) == {"a", "b", "x", "y"}
        assert data["a"].shape == (1, 1)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_grad_check_passes_for_every_example(path, capsys):
    m = nnc.load(path)
    args = ["grad", str(path), "--check", "--check-entries", "6", "--random-params"]
    if m.inputs and path.stem not in ("circuit", "gates"):
        args += ["--random-inputs", "2"]
    elif path.stem == "circuit":
        args += ["--at", "x=-2", "y=5", "z=-4"]
    elif path.stem == "gates":
        args += ["--at", "x=3", "y=-4", "z=2", "w=-1"]
    if path.stem == "resnet_mini":  # the interpreter's convolutions are slow: a representative subset
        args += ["--wrt", "stem.weight,r1.h.bias,r2.h_2.weight,r2.h_2.batchnorm.gamma,wide.weight,image"]
    if path.stem == "cifar_cnn":
        args += ["--wrt", "s1.h.weight,s3.h_2.batchnorm.gamma,h.weight,logits.bias"]
    if path.stem == "mlp_chain_rule":
        at = [f"{k}={v}" for k, v in CHAIN_AT.items()]
        args = ["grad", str(path), "--check", "--check-entries", "6", "--at", *at]
    assert main(args) == 0, capsys.readouterr()
    assert "FAIL" not in capsys.readouterr().out


def test_grad_check_fails_on_a_wrong_rule(monkeypatch, capsys):
    from nnc.ir.ops import VJP, get

    relu = get("relu")
    wrong = (VJP("relu: wrong", lambda c, dy: c.mul(dy, c.const(0.5))),)
    monkeypatch.setattr(relu, "vjp", wrong)
    assert main(["grad", "examples/mnist_mlp.nn", "--random-params", "--random-inputs", "3", "--check", "--wrt",
                 "h1.bias"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_grad_of_a_non_scalar_is_a_clear_error(capsys):
    assert main(["grad", "examples/mnist_mlp.nn", "--random-params", "--random-inputs", "--of", "h1"]) == 1
    err = capsys.readouterr().err
    assert "can only differentiate a scalar" in err and "mnist_mlp.nn:" in err


def test_grad_wrt_an_int_input_is_a_clear_error(capsys):
    assert main(["grad", "examples/mnist_mlp.nn", "--random-params", "--random-inputs", "--wrt", "label"]) == 1
    assert "int tensor" in capsys.readouterr().err


def test_explain_walks_the_circuit(capsys):
    assert main(["explain", "examples/circuit.nn", "--at", "x=-2", "y=5", "z=-4"]) == 0
    out = capsys.readouterr().out
    assert "df/dq = df/df · ∂f/∂q = 1 · z = 1 · -4 = -4" in out
    assert "df/dx = df/dq · ∂q/∂x = -4 · 1 = -4" in out


def test_explain_prints_the_chain_rule_product(capsys):
    """∂L/∂w11 as the course derives it: five factors, the alias a2 = z2 among them, each with its value."""
    at = [f"{k}={v}" for k, v in CHAIN_AT.items()]
    assert main(["explain", "examples/mlp_chain_rule.nn", "--at", *at, "--of", "L"]) == 0
    out = capsys.readouterr().out
    line = next(ln.strip() for ln in out.splitlines() if ln.strip().startswith("dL/dw11 = ∂L"))
    assert line.startswith("dL/dw11 = ∂L/∂a2 · ∂a2/∂z2 · ∂z2/∂a11 · ∂a11/∂z11 · ∂z11/∂w11 = "), line
    factors = [float(f) for f in re.findall(r"\(([^)]*)\)", line.split(" = ")[2])]
    p = nnc.load("examples/mlp_chain_rule.nn").init_params()
    x = [CHAIN_AT[f"x{j}"] for j in (1, 2, 3, 4)]
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    a1 = [sig(sum(xj * float(p[f"{unit}{j + 1}"]) for j, xj in enumerate(x))) for unit in ("w1", "u1", "v1")]
    a2 = sum(a * float(p[f"w2{k + 1}"]) for k, a in enumerate(a1))
    course = [-2 * (CHAIN_AT["y"] - a2), 1.0, float(p["w21"]), a1[0] * (1 - a1[0]), x[0]]
    assert factors == pytest.approx(course, rel=1e-5)
    assert float(line.rsplit(" = ", 1)[1]) == pytest.approx(np.prod(course), rel=1e-5)
