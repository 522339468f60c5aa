"""Ensembles: one model with several sets of parameters (its members: run folders, checkpoints), each scored on a
split alone and all together.

The ensemble predicts the mean of its members' predictions: a classifier's class
probabilities (the softmax of its logits, the sigmoid of a binary classifier's
logit; an output that is already a softmax's or a sigmoid's is averaged as it is),
a regression's outputs. A member and the ensemble are scored alike, from those
predictions: a classifier by its accuracy and the mean cross-entropy of the
probabilities against the labels (which is the model's loss when the loss is a
plain cross-entropy of the output), a regression by MSE, MAE and RMSE against
the target. `mean_outputs` averages the outputs of a forward pass instead
(`nnc eval --params A B` without data).
"""

from __future__ import annotations

import numpy as np

from ..data.text import perplexity as text_perplexity
from ..errors import NncError
from ..ir import ops
from ..ir.types import format_shape
from .evaluator import Evaluator
from .metrics import mean_cross_entropy, predicted_classes, probabilities, regression


def evaluate_ensemble(model, members: list[dict], split: dict, backend: str = "llvm",
                      perplexity: bool = False) -> tuple[list[dict], dict]:
    """Each member's scores on `split` (arrays keyed by input name) and the ensemble's -> (members, ensemble);
    `members` are complete parameter sets of `model`; `perplexity` adds exp of the cross-entropy (a text's)."""
    evaluator = Evaluator(model, backend)
    task = evaluator.task
    g = model.graph
    out_node = g.outputs[task.output]
    normalized = g.op(out_node) in (ops.softmax, ops.sigmoid)
    predictions = []
    for params in members:
        evaluator.params = params
        _, out = evaluator.predict(split)
        predictions.append(probabilities(out, normalized) if task.classifies else out)
    scored = [score(task, p, split, perplexity) for p in predictions]
    return scored, score(task, np.mean(np.stack(predictions), axis=0, dtype=np.float64), split, perplexity)


def score(task, prediction: np.ndarray, split: dict, perplexity: bool = False) -> dict:
    """A classifier's {accuracy, cross_entropy} from its class probabilities ([N, C], [N, T, C], or [N, 1] of a
    binary classifier), a regression's {mse, mae, rmse} from its outputs."""
    if task.classifies:
        truth = task.labels(split[task.target])
        probs = prediction.astype(np.float64)
        if probs.shape[-1] == 1:  # p(class 1) -> [p(class 0), p(class 1)]
            probs = np.concatenate([1 - probs, probs], axis=-1)
        result = {"accuracy": float((predicted_classes(prediction) == truth).mean()),
                  "cross_entropy": mean_cross_entropy(probs, truth, probabilities=True)}
        if perplexity:
            result["perplexity"] = text_perplexity(result["cross_entropy"])
        return result
    target = split.get(task.target) if task.target else None
    if target is None or target.shape != prediction.shape:
        got = "no target input" if target is None else f"target '{task.target}' {format_shape(target.shape)}"
        raise NncError(f"cannot score output '{task.output}' {format_shape(prediction.shape)} of an ensemble: "
                       f"got {got}, expected a target of the output's shape",
                       hint="an ensemble scores a regression by comparing its mean output with the target")
    return regression(prediction, target)


def mean_outputs(results: list[dict]) -> dict:
    """Each value of several forward passes (one per member, same inputs) averaged over the members."""
    return {name: np.mean(np.stack([np.asarray(r[name]) for r in results]), axis=0) for name in results[0]}
