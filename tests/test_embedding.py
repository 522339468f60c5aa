"""`embedding(ids, vocab, dim)`: PyTorch's nn.Embedding (layout, initialization, values, gradients), ids of
any shape, and its mistakes: float ids at build time, ids out of range when the data arrives, with their
position. An input holding ids is a feature of the model, never its target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_pytorch_parity import BACKENDS, close

import nnc
from nnc.errors import NncError
from nnc.runtime.task import CLASSIFICATION, REGRESSION, training_task

EMBED = """model emb {
  input  ids: int[B, 5]
  input  c: [B, 5, 4]
  e      = embedding(ids, 7, 4)
  output e
  loss   sum(e * c)
}
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_embedding_matches_torch(backend):
    be, dtype, rtol = BACKENDS[backend]
    model = nnc.loads(EMBED)
    rng = np.random.default_rng(0)
    ids = np.array([[0, 3, 3, 6, 1], [3, 2, 0, 0, 5], [6, 6, 6, 4, 3]], dtype=np.int32)   # repeats collect
    c = rng.normal(size=(3, 5, 4))
    layer = torch.nn.Embedding(7, 4, dtype=torch.float64)
    out = layer(torch.tensor(ids, dtype=torch.long))
    (out * torch.tensor(c)).sum().backward()
    params = {"e.weight": layer.weight.detach().numpy().astype(dtype)}   # PyTorch's layout, as it is
    inputs = {"ids": ids, "c": c.astype(dtype)}
    got = model.eval(inputs, params, backend=be, float_dtype=dtype)
    grads = model.grad(inputs, params, backend=be, float_dtype=dtype).grads
    close(got["e"], out, rtol, what="rows")
    close(grads["e.weight"], layer.weight.grad, rtol, what="d weight")
    close(grads["c"], out, rtol, what="dc")


def test_weight_is_vocab_by_dim_and_starts_standard_normal_as_pytorch():
    model = nnc.loads("model m {\n  input ids: int[B, 5]\n  e = embedding(ids, 2000, 64)\n  output e\n}\n")
    assert model.param_types["e.weight"].shape == (2000, 64)
    w = model.init_params(seed=3)["e.weight"]
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01
    custom = nnc.loads(EMBED.replace("embedding(ids, 7, 4)", "embedding(ids, 7, 4, init=zeros, name=\"tok\")"))
    assert not custom.init_params()["tok.weight"].any()


@pytest.mark.parametrize("shape", [(3,), (3, 2, 4)])
def test_ids_of_any_shape(shape):
    dims = ", ".join(["B", *map(str, shape[1:])])
    model = nnc.loads(f"model m {{\n  input ids: int[{dims}]\n  e = embedding(ids, 9, 5)\n  output e\n}}\n")
    ids = np.random.default_rng(1).integers(0, 9, size=shape).astype(np.int32)
    params = model.init_params()
    for backend in ("llvm", "reference"):
        got = model.eval({"ids": ids}, params, backend=backend)["e"]
        np.testing.assert_array_equal(got, params["e.weight"][ids])


@pytest.mark.parametrize("body,message,column", [
    ("input ids: [B, 5]\n  e = embedding(ids, 7, 4)",
     "embedding: ids are a float tensor [B, 5], expected int ids such as int[B, T]", 17),
    ("input ids: int[B, 5]\n  e = embedding(ids, 0, 4)", "embedding: vocab must be at least 1, got 0", 22),
    ("input ids: int[B, 5]\n  e = embedding(ids, 7, -2)", "embedding: dim must be at least 1, got -2", 25),
])
def test_bad_arguments_are_one_located_error(body, message, column):
    with pytest.raises(NncError) as info:
        nnc.loads(f"model m {{\n  {body}\n  output e\n}}\n", "m.nn")
    assert info.value.message == message
    assert (info.value.loc.span.line, info.value.loc.span.column) == (3, column)


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_computed_ids_out_of_range_are_located_with_their_position(backend):
    model = nnc.loads(EMBED.replace("embedding(ids, 7, 4)", "embedding(ids + 3, 7, 4)"), "emb.nn")
    ids = np.zeros((2, 5), dtype=np.int32)
    ids[1, 2] = 5
    with pytest.raises(NncError) as info:
        model.eval({"ids": ids, "c": np.zeros((2, 5, 4), np.float32)}, random_params=True, backend=backend)
    assert info.value.format().startswith("emb.nn:4:12: error: ids out of range: got id 8 at [1, 2], expected 0 "
                                          "to 6\n")


def test_fed_ids_out_of_range_are_refused_when_they_arrive():
    model = nnc.loads(EMBED, "emb.nn")
    ids = np.zeros((2, 5), dtype=np.int32)
    ids[0, 3] = 7
    for backend in ("llvm", "reference"):
        with pytest.raises(NncError, match="input 'ids' holds a class index out of range: got 7") as info:
            model.eval({"ids": ids, "c": np.zeros((2, 5, 4), np.float32)}, random_params=True, backend=backend)
        assert info.value.loc.span.line == 2


def test_an_input_of_ids_is_a_feature_not_the_target():
    tagger = nnc.loads("model t {\n  input ids: int[B, 6]\n  input tags: int[B, 6]\n  param w: [8, 3] = xavier\n"
                       "  logits = embedding(ids, 10, 8) @ w\n  output logits\n  loss cross_entropy(logits, tags)\n}\n")
    task = training_task(tagger.graph)
    assert (task.kind, task.target, task.classes) == (CLASSIFICATION, "tags", 3)
    regressor = nnc.loads("model r {\n  input ids: int[B, 6]\n  input y: [B, 6, 1]\n  param w: [8, 1] = xavier\n"
                          "  pred = embedding(ids, 10, 8) @ w\n  output pred\n  loss mse(pred, y)\n}\n")
    task = training_task(regressor.graph)
    assert (task.kind, task.target) == (REGRESSION, "y")


def test_ids_out_of_range_in_the_training_data_are_named_with_their_sample_and_position(tmp_path):
    from conftest import run_main

    (tmp_path / "tags.nn").write_text(
        "model tags {\n  input ids: int[B, 6]\n  input tags: int[B, 6]\n  param w: [4, 3] = xavier\n"
        "  logits = embedding(ids, 10, 4) @ w\n  output logits\n  loss cross_entropy(logits, tags)\n}\n",
        encoding="utf-8")
    ids = np.zeros((12, 6), np.int64)
    ids[8, 4] = 12
    np.savez(tmp_path / "d.npz", ids=ids, tags=np.zeros((12, 6), np.int64))
    result = run_main("run", "tags.nn", "--data", "d.npz", "--out", "run", "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "id 12 in array ids (sample 9, position [4] of the training data) is out of range for model 'tags': " \
           "expected 0 to 9" in result.stderr
    assert "hint: its input 'ids' indexes a table of 10 rows" in result.stderr
    assert not (tmp_path / "run").exists()
