"""Whole example models natively against the interpreter: every forward graph, the training
graphs (batch statistics, dropout masks, running-statistic updates written back to the
parameters), and the gradient graphs autodiff makes of them (all the backward primitives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from backend_support import assert_matches, random_values, reference

import nnc
from nnc.backend import compile_graph
from nnc.ir import ops
from nnc.ir.types import TensorType
from nnc.passes.autodiff import grad

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.nn"))


def model_values(model, batch, seed=0):
    g = model.graph
    inputs, _ = random_values(g, {"B": batch}, np.random.default_rng(seed))
    return inputs, model.init_params(seed)


def batch_sizes(path):
    return (1, 13) if path.stem in ("lenet5", "resnet_mini", "cifar_cnn") else (1, 13, 32)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_forward_graph_matches(path):
    model = nnc.load(path)
    for batch in batch_sizes(path):
        inputs, params = model_values(model, batch)
        assert_matches(model.graph, {"B": batch}, inputs, params, rtol=1e-4, atol=1e-5)


def with_masks_as_inputs(g):
    """A copy whose dropout masks are inputs, so the reference can be fed the native masks."""
    g = g.clone()
    names = {}
    for n in [n for n in g.nodes if g.op(n) is ops.dropout_mask]:
        t = g.type_of(n)
        name = f"mask{n}"
        m = g.add_op(ops.input, (), {"name": name, "type": TensorType(t.shape, t.dtype)}, type=t)
        g.inputs[name] = m
        g.replace_uses(n, m)
        names[n] = name
    return g, names


def test_training_graph_with_batchnorm_and_dropout():
    model = nnc.load(EXAMPLES[0].parent / "mnist_mlp_dropout_bn.nn")
    g = model.training_graph
    masks = [n for n in g.nodes if g.op(n) is ops.dropout_mask]
    batch = 19
    inputs, params = model_values(model, batch, seed=3)
    targets = g.roots() + masks
    exe = compile_graph(g, {"B": batch}, targets, use_cache=False)
    got = exe.run(inputs, params, seed=42)
    plain, names = with_masks_as_inputs(g)
    fed = dict(inputs, **{names[n]: got[n] for n in masks})
    want = reference(plain, fed, params, g.roots())
    for n in g.roots():
        np.testing.assert_allclose(got[n], want[n], rtol=1e-4, atol=1e-5, err_msg=g.describe(n))
    for name, n in g.updates.items():  # running statistics now hold the updates
        np.testing.assert_allclose(exe.params[name], want[n], rtol=1e-4, atol=1e-6, err_msg=name)
        assert not np.allclose(exe.params[name], params[name])


@pytest.mark.parametrize("stem,batch", [("mnist_mlp", 13), ("lenet5", 5), ("resnet_mini", 3)])
def test_gradient_graph_matches(stem, batch):
    model = nnc.load(EXAMPLES[0].parent / f"{stem}.nn")
    g = grad(model.graph)
    targets = [g.loss, *g.grads.values()]
    inputs, params = model_values(model, batch, seed=1)
    exe, _ = assert_matches(g, {"B": batch}, inputs, params, targets, rtol=1e-4, atol=2e-5)
    assert exe.stats["kernels"] < exe.stats["primitive_ops"]
