"""Autodiff end to end: hand derivations from the course, simplification, train/eval forms, commands.

Per-op rules are checked against finite differences in test_vjp.py; here the
whole pipeline is checked on the example models.
"""

from __future__ import annotations

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


def test_chain_rule_network_matches_hand_derivation():
    m = nnc.load("examples/mlp_chain_rule.nn")
    x = np.array([1.0, 0.0, 1.0, 0.0])
    y = 1.0
    inputs = {f"x{i + 1}": x[i] for i in range(4)} | {"y": y}
    p = m.init_params()
    w = np.array([[float(p[f"w{i}{j}"]) for j in (1, 2, 3)] for i in (1, 2, 3, 4)])
    v = np.array([float(p[f"v{j}"]) for j in (1, 2, 3)])
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    a1 = sig(x @ w)
    a2 = sig(a1 @ v)
    # ∂L/∂w_ij = ∂L/∂a2 · ∂a2/∂z2 · ∂z2/∂a1j · ∂a1j/∂z1j · ∂z1j/∂w_ij
    dL_da2 = -2 * (y - a2)
    dz2 = dL_da2 * a2 * (1 - a2)
    expected_w = np.outer(x, dz2 * v * a1 * (1 - a1))
    expected_v = dz2 * a1
    r = m.grad(inputs, p, float_dtype=np.float64)
    for i in range(4):
        for j in range(3):
            assert r.grads[f"w{i + 1}{j + 1}"] == pytest.approx(expected_w[i, j], rel=1e-12, abs=1e-15)
    for j in range(3):
        assert r.grads[f"v{j + 1}"] == pytest.approx(expected_v[j], rel=1e-12)


def test_gates_route_gradients():
    m = nnc.load("examples/gates.nn")
    r = m.grad({"x": 3, "y": -4, "z": 2, "w": -1}, intermediates=True)
    # s = -1 > p = -2: max routes everything to s; add distributes it to x and y; mul's side gets 0
    assert {k: float(v) for k, v in r.grads.items()} == {"x": 2, "y": 2, "z": 0, "w": 0}
    r = m.grad({"x": 1, "y": 1, "z": 3, "w": 4})  # now p = 12 wins: mul switches, dz = 2·w, dw = 2·z
    assert {k: float(v) for k, v in r.grads.items()} == {"x": 0, "y": 0, "z": 8, "w": 6}


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
    if path.stem == "mlp_chain_rule":
        args = ["grad", str(path), "--check", "--check-entries", "6", "--at", "x1=1", "x2=0", "x3=1", "x4=0", "y=1"]
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
    assert main(["explain", "examples/mlp_chain_rule.nn", "--at", "x1=1", "x2=0", "x3=1", "x4=0", "y=1"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("dloss/dw11 = ∂loss"))
    assert "∂loss/∂a2 · ∂a2/∂z2 · ∂z2/∂a11 · ∂a11/∂z11 · ∂z11/∂w11" in line
