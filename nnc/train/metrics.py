"""Evaluation metrics: accuracy, confusion matrix, per-class precision and recall, regression errors, the mean
cross-entropy of a sequence of classes (a text's perplexity), and a classifier's probabilities from its output."""

from __future__ import annotations

import numpy as np

from ..ir import ops


def probabilities(output: np.ndarray, normalized: bool = False) -> np.ndarray:
    """A classifier's class probabilities from its output: the output itself when `normalized` (it is a softmax's
    or a sigmoid's), else the sigmoid of one logit per example ([N, 1]) or the softmax over the classes (the last
    axis) of logits (or of log-probabilities, which gives the probabilities back)."""
    if normalized:
        return output
    if output.shape[-1] == 1:
        return ops.sigmoid.ref(output)
    return ops.softmax.ref(output, axis=-1)


def predicted_classes(output: np.ndarray) -> np.ndarray:
    """argmax over the classes (the last axis) of [N, C] scores, or of [N, T, C] for a sequence (a class per
    position); a 0.5 threshold for one sigmoid output [N, 1]."""
    if output.ndim >= 2 and output.shape[-1] > 1:
        return output.argmax(axis=-1)
    return (output.reshape(len(output), -1)[:, 0] > 0.5).astype(np.int64)


def correct_per_example(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The fraction of each example's positions classified right: 0 or 1 with one label per example, and
    per-position accuracy for sequence labels [N, T] (the confusion matrix of those counts positions)."""
    return (predicted == truth).reshape(len(truth), -1).mean(axis=1)


def correct_count(predicted: np.ndarray, truth: np.ndarray) -> float:
    """`correct_per_example(predicted, truth).sum()`, without the per-example array when there is one label
    per example (a training step counts its batch with it)."""
    if truth.ndim == 1:
        return float(np.count_nonzero(predicted == truth))
    return float(correct_per_example(predicted, truth).sum())


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[i, j]: examples of class i predicted as j."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (truth.astype(np.int64), predicted.astype(np.int64)), 1)
    return counts


def precision_recall(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class: precision = TP / predicted as it; recall = TP / truly it (0 where undefined)."""
    tp = np.diag(counts).astype(np.float64)
    predicted = counts.sum(axis=0)
    actual = counts.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    return precision, recall


def regression(pred: np.ndarray, target: np.ndarray) -> dict:
    err = pred.astype(np.float64) - target.astype(np.float64)
    mse = float(np.mean(err ** 2))
    return {"mse": mse, "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(mse))}


def mean_cross_entropy(output: np.ndarray, labels: np.ndarray, probabilities: bool = False) -> float:
    """Mean of −log p(label) over every position, in nats (float64): `output` [..., C] holds logits (or
    probabilities, a softmax's output), `labels` [...] the class indices. A text's perplexity is its exp."""
    scores = output.reshape(-1, output.shape[-1]).astype(np.float64)
    picked = scores[np.arange(len(scores)), labels.reshape(-1).astype(np.int64)]
    if probabilities:
        with np.errstate(divide="ignore"):
            return float(-np.log(picked).mean())
    top = scores.max(axis=1)
    log_sum = top + np.log(np.exp(scores - top[:, None]).sum(axis=1))
    return float((log_sum - picked).mean())
