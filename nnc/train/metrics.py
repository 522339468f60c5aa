"""Evaluation metrics: accuracy, confusion matrix, per-class precision and recall, regression errors."""

from __future__ import annotations

import numpy as np


def predicted_classes(output: np.ndarray) -> np.ndarray:
    """argmax over classes for [N, C] scores; a 0.5 threshold for one sigmoid output [N, 1]."""
    if output.ndim == 2 and output.shape[1] > 1:
        return output.argmax(axis=1)
    return (output.reshape(len(output), -1)[:, 0] > 0.5).astype(np.int64)


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
