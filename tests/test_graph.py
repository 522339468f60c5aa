"""The graph IR's typed interface (nnc/ir/graph.py) and the checked pass pipeline (nnc/passes/pipeline.py)."""

from __future__ import annotations

import pytest

import nnc
from nnc.errors import GraphError
from nnc.ir import ops
from nnc.ir.graph import TABLES, Emitter, Graph, verify
from nnc.ir.types import TensorType
from nnc.passes import pipeline

MLP = """
model m {
  input x: [B, 3]
  input y: int[B]
  h = relu(dense(x, 4))
  logits = dense(h, 2)
  output logits
  loss cross_entropy(logits, y)
}
"""


def small_graph():
    g = Graph(model="t")
    t = TensorType(("B", 3))
    x = g.add_op(ops.input, (), {"name": "x", "type": t}, type=t)
    g.inputs["x"] = x
    e = Emitter(g, stmt="y")
    y = e.relu(x)
    s = e.sum(y, axis=None)
    g.outputs["y"] = y
    g.values["y"] = y
    g.loss = s
    return g, x, y, s


def test_every_table_is_an_attribute_and_clones_independently():
    g, x, y, s = small_graph()
    assert set(TABLES) == {"inputs", "params", "outputs", "updates", "values", "grads", "adjoints", "contributions",
                           "losses"}
    c = g.clone()
    c.outputs["z"] = x
    c.loss = None
    assert "z" not in g.outputs and g.loss == s
    assert c.model == "t" and c.inputs == {"x": x}


def test_replace_uses_reaches_every_table_and_root():
    g, x, y, s = small_graph()
    z = Emitter(g).neg(x)
    g.adjoints[x] = y
    g.grads["x"] = y
    g.grad_of = y
    g.replace_uses(y, z)
    assert g.outputs["y"] == z and g.values["y"] == z and g.grads["x"] == z and g.adjoints[x] == z
    assert g.grad_of == z
    assert g.operands(s) == (z,)


def test_forget_dead_drops_entries_about_removed_nodes():
    g, x, y, s = small_graph()
    g.adjoints[y] = s
    g.contributions[(s, 0)] = y
    g.remove_node(s)
    g.loss = None
    g.forget_dead()
    assert g.adjoints == {} and g.contributions == {} and g.outputs == {"y": y}


@pytest.mark.parametrize("break_it, message", [
    (lambda g, x, y, s: g.outputs.__setitem__("gone", 999), "outputs entry 'gone' points at missing node 999"),
    (lambda g, x, y, s: g.inputs.__setitem__("x", y), "inputs entry 'x' does not point at its input node"),
    (lambda g, x, y, s: setattr(g, "loss", y), "is not a scalar"),
    (lambda g, x, y, s: g.updates.__setitem__("nope", s), "update 'nope' is not a parameter"),
    (lambda g, x, y, s: setattr(g, "grad_of", 12345), "grad_of 12345 is not in the graph"),
])
def test_verify_checks_every_table(break_it, message):
    g, *nodes = small_graph()
    verify(g)
    break_it(g, *nodes)
    with pytest.raises(GraphError, match=message):
        verify(g)


def test_ops_are_objects_and_a_name_comparison_is_an_error():
    g, x, y, s = small_graph()
    assert g.op(y) is ops.relu
    with pytest.raises(TypeError):
        _ = g.op(y) == "relu"
    with pytest.raises(TypeError):
        g.add_op("relu", (x,))


def test_the_test_suite_verifies_after_every_pass():
    assert pipeline.verifying()


def test_a_pass_that_breaks_the_graph_is_named():
    g = nnc.loads(MLP).training_graph

    def dangling(graph):
        graph = graph.clone()
        graph.outputs["oops"] = 10**6
        return graph

    with pytest.raises(GraphError, match="pass 'dangling output'"):
        pipeline.run(g, [pipeline.SHAPES, pipeline.Pass("dangling output", dangling), pipeline.SIMPLIFY])


def test_every_job_goes_through_the_pipeline(monkeypatch):
    """Training steps, gradients, explanations and gradient statistics are all built by pipeline.run."""
    from nnc.runtime.explain import Explainer
    from nnc.train.grad_stats import norm_graph

    seen = []
    real = pipeline.run
    monkeypatch.setattr(pipeline, "run", lambda g, passes: seen.append([p.name for p in passes]) or real(g, passes))
    m = nnc.loads(MLP)
    m.training_step()
    m.grad(m.random_inputs(2), random_params=True, backend="reference")
    Explainer(m, m.random_inputs(2), m.init_params(), backend="reference")
    norm_graph(m)
    loops = ["keep forward values", "sink out of loops"]
    assert ["shapes", "grad", *loops, "optimizer", "simplify"] in seen
    assert ["shapes", "grad", *loops, "simplify"] in seen
    assert ["shapes", "grad"] in seen
    assert ["shapes", "grad", *loops, "layer gradient norms", "simplify"] in seen
