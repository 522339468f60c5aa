"""Losses over sequences against PyTorch, and how a model with one label per position is scored.

`cross_entropy` takes logits of any rank with the classes on the last axis (int labels or one-hot
targets) and averages over every position: PyTorch's F.cross_entropy of the logits reshaped to
[positions, classes]. `mse` and `mae` average over every value. Native float32 within 1e-5, the
reference in float64 within 1e-9. With [N, T] labels, accuracy counts positions (evaluation, the
training loop's running accuracy, `nnc run`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_main
from test_pytorch_parity import BACKENDS, close

import nnc
from nnc.runtime.task import training_task
from nnc.train.evaluator import Evaluator
from nnc.train.metrics import correct_per_example, predicted_classes


def xent_model(shape, one_hot: bool) -> nnc.Model:
    dims = ", ".join(["B", *map(str, shape[1:])])
    label = f"[{dims}]" if one_hot else f"int[{dims[:dims.rfind(',')]}]"
    return nnc.loads(f"model m {{\n  input logits: [{dims}]\n  input label: {label}\n  output logits\n"
                     f"  loss cross_entropy(logits, label)\n}}\n")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 3, 4, 6), (4, 7)])
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
def test_cross_entropy_over_positions_matches_torch(backend, shape, one_hot):
    be, dtype, rtol = BACKENDS[backend]
    rng = np.random.default_rng(sum(shape))
    logits = rng.normal(size=shape) * 3
    classes = shape[-1]
    if one_hot:   # soft targets: PyTorch takes class probabilities too
        label = np.exp(rng.normal(size=shape))
        label /= label.sum(axis=-1, keepdims=True)
        want_label = torch.tensor(label.reshape(-1, classes))
    else:
        label = rng.integers(0, classes, size=shape[:-1]).astype(np.int32)
        want_label = torch.tensor(label.reshape(-1), dtype=torch.long)
    t = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    want = F.cross_entropy(t.reshape(-1, classes), want_label)
    want.backward()
    model = xent_model(shape, one_hot)
    inputs = {"logits": logits.astype(dtype), "label": label.astype(dtype) if one_hot else label}
    loss = model.eval(inputs, backend=be, float_dtype=dtype)["loss"]
    g = model.grad(inputs, backend=be, float_dtype=dtype, wrt=["logits"])
    close(loss, want, rtol, what="loss")
    close(g.grads["logits"], t.grad, rtol, atol=rtol * np.abs(t.grad.numpy()).max(), what="dlogits")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss,torch_loss", [("mse", F.mse_loss), ("mae", F.l1_loss)])
def test_mse_and_mae_on_sequences_match_torch(backend, loss, torch_loss):
    be, dtype, rtol = BACKENDS[backend]
    model = nnc.loads(f"model m {{\n  input pred: [B, 6, 3]\n  input y: [B, 6, 3]\n  output pred\n"
                      f"  loss {loss}(pred, y)\n}}\n")
    rng = np.random.default_rng(5)
    pred, y = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 6, 3))
    tp = torch.tensor(pred, requires_grad=True)
    want = torch_loss(tp, torch.tensor(y))
    want.backward()
    inputs = {"pred": pred.astype(dtype), "y": y.astype(dtype)}
    g = model.grad(inputs, backend=be, float_dtype=dtype, wrt=["pred"])
    close(g.value, want, rtol, what=loss)
    close(g.grads["pred"], tp.grad, rtol, what=f"d{loss}")


def test_predicted_classes_and_labels_per_position():
    scores = np.zeros((2, 3, 4))
    scores[0, :, 1] = scores[1, :, 2] = 1
    assert predicted_classes(scores).tolist() == [[1, 1, 1], [2, 2, 2]]
    truth = np.array([[1, 0, 1], [2, 2, 2]])
    assert correct_per_example(predicted_classes(scores), truth).tolist() == [2 / 3, 1.0]
    assert correct_per_example(np.array([1, 0, 3]), np.array([1, 2, 3])).tolist() == [1.0, 0.0, 1.0]
    tagger = nnc.loads(TAGGER)
    task = training_task(tagger.graph)
    assert task.labels(truth.astype(np.int32)).shape == (2, 3)             # int labels stay per position
    assert task.labels(np.eye(4)[truth]).tolist() == truth.tolist()         # one-hot rows: argmax of the last axis


TAGGER = """model tagger {
  input  ids: int[B, 6]
  input  tags: int[B, 6]
  logits = embedding(ids, 10, 4)
  output logits
  loss   cross_entropy(logits, tags)
}
"""


def test_evaluation_scores_every_position():
    """logits = the embedding row of each id: with weight 10·[I | 0] the prediction at a position is its id
    (for ids below 4), so the accuracy is the share of positions whose tag is that id."""
    model = nnc.loads(TAGGER)
    ids = np.array([[0, 1, 2, 3, 0, 1], [2, 2, 3, 3, 1, 0]], dtype=np.int32)
    tags = ids.copy()
    tags[0, 5] = 3
    tags[1, :3] = 0
    weight = np.zeros((10, 4), np.float32)
    weight[:4] = 10 * np.eye(4)
    result = Evaluator(model, params={"logits.weight": weight}).evaluate({"ids": ids, "tags": tags}, detailed=True)
    assert result["accuracy"] == pytest.approx(8 / 12)
    assert result["confusion"].sum() == 12 and result["confusion"][0, 2] == 2


def test_nnc_run_trains_and_scores_a_sequence_tagger(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 10, size=(300, 6)).astype(np.int32)
    np.savez(tmp_path / "tags.npz", ids=ids, tags=(ids % 3).astype(np.int32))
    (tmp_path / "tagger.nn").write_text(TAGGER.replace("embedding(ids, 10, 4)", "embedding(ids, 10, 3)")
                                        + "\ntrain {\n  epochs = 4\n  batch = 20\n  optimizer = adam(lr=0.1)\n}\n")
    result = run_main("run", "tagger.nn", "--data", "tags.npz", "--out", "run", "--threads", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    accuracies = [float(line.split("acc ")[1].split("%")[0]) for line in epochs]
    assert len(accuracies) == 4 and all(0 <= a <= 100 for a in accuracies) and accuracies[-1] == 100
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == 1.0
    assert np.array(metrics["confusion_matrix"]).sum() == 300 * 6    # positions, not sequences
