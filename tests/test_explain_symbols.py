"""Names the course writes stay in the explanation: an alias (`a2 = z2`) is a node of its own, and the local
derivative through a statement is printed as an expression of names, numbers multiplied out."""

from __future__ import annotations

import numpy as np

import nnc
from nnc.ir import ops
from nnc.runtime.explain import explain_text

NET = """model net {
  input x
  input y
  param w: float = 0.5
  z2 = x * w
  a2 = z2
  loss (y - a2) ** 2
}
"""
AT = {"x": np.array(2.0, np.float32), "y": np.array(3.0, np.float32)}


def test_an_alias_is_a_node_of_its_own_that_compiled_code_drops():
    model = nnc.loads(NET, "net.nn")
    g = model.graph
    assert g.values["a2"] != g.values["z2"] and g.op(g.values["a2"]) is ops.identity
    step = model.training_step(nnc.specs.optimizer_spec("sgd"))
    assert not any(step.op(n) is ops.identity for n in step.nodes)


def test_the_local_derivative_of_the_squared_error_is_written_out():
    model = nnc.loads(NET, "net.nn")
    text = explain_text(model, AT, model.complete_params({}))
    # y − a2 = 3 − 1 = 2, so ∂loss/∂a2 = −2·(y − a2) = −4 and ∂loss/∂y = 2·(y − a2) = 4
    assert "dloss/da2 = dloss/dloss · ∂loss/∂a2 = 1 · -2·(y − a2) = 1 · -4 = -4" in text
    assert "dloss/dz2 = dloss/da2 · ∂a2/∂z2 = -4 · 1 = -4" in text
    assert "dloss/dy = dloss/dloss · ∂loss/∂y = 1 · 2·(y − a2) = 1 · 4 = 4" in text
    assert "dloss/dw = ∂loss/∂a2 · ∂a2/∂z2 · ∂z2/∂w = (-4) · (1) · (2) = -8" in text


def test_a_dense_layer_is_explained_by_the_matrix_chain_rule_with_shapes_and_parameter_names():
    model = nnc.load("examples/mnist_mlp.nn")
    inputs = model.random_inputs(2)
    text = explain_text(model, inputs, model.complete_params({}, random_params=True))
    assert ":param#" not in text
    assert "dloss/dlogits.weight = h2ᵀ · dloss/dlogits   [128, 10] = [128, B]·[B, 10]  → [128, 10]" in text
    assert "dloss/dh1.weight = imageᵀ · (dloss/dh1·[((image @ h1.weight) + h1.bias) > 0])   " \
           "[784, 256] = [784, B]·[B, 256]" in text
    assert "dloss/dh2 = dloss/dlogits · logits.weightᵀ   [B, 128] = [B, 10]·[10, 128]" in text


def test_a_convolution_is_explained_as_a_correlation_with_shapes():
    model = nnc.load("examples/lenet5.nn")
    text = explain_text(model, model.random_inputs(2), model.complete_params({}, random_params=True))
    line = next(x for x in text.splitlines() if x.strip().startswith("dloss/dc1.weight = "))
    assert line.strip().startswith("dloss/dc1.weight = image ⋆ (dloss/dc1·")
    assert "[6, 1, 5, 5] = [B, 1, 28, 28] ⋆ [B, 6, 28, 28]" in line
    back = next(x for x in text.splitlines() if x.strip().startswith("dloss/dimage = "))
    assert "⋆ᵀ c1.weight   [B, 1, 28, 28] = [B, 6, 28, 28] ⋆ᵀ [6, 1, 5, 5]" in back
