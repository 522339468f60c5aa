"""Evaluation: a model's loss, outputs and metrics over a whole split, in chunks of EVAL_BATCH examples.

Runs the evaluation form of the model (dropout off, batch norm's running
statistics) through nnc.runtime.execute.run_graph, which compiles once per
chunk size and checks the arrays it is handed; the task (nnc.runtime.task)
says which output is scored against which input and how. A character model's
evaluation can add the perplexity (exp of the mean cross-entropy per character).
A scalar output (shape []) over a split is the mean of its chunks' values weighted by
their sizes (`join_chunks`).
"""

from __future__ import annotations

import numpy as np

from ..data.text import perplexity as text_perplexity
from ..errors import NncError
from ..ir import ops
from ..runtime.execute import check_backend, run_graph
from ..runtime.task import training_task
from .metrics import confusion_matrix, mean_cross_entropy, precision_recall, predicted_classes, regression

EVAL_BATCH = 1000


class Evaluator:
    """The model in evaluation mode with given parameters, and the task's metrics."""

    def __init__(self, model, backend: str = "llvm", params: dict | None = None):
        self.model = model
        self.backend = check_backend(backend)
        self.task = training_task(model.graph)
        self.params = params

    def predict(self, data: dict) -> tuple[float, np.ndarray]:
        """(mean loss, outputs) over a whole split, the chunks' outputs joined by `join_chunks`."""
        n = len(next(iter(data.values()))) if data else 0
        if n == 0:
            raise NncError("nothing to evaluate: the split has no examples")
        g = self.model.graph
        loss_node, out_node = g.loss, g.outputs[self.task.output]
        total, outputs, sizes = 0.0, [], []
        for start in range(0, n, EVAL_BATCH):
            chunk = {k: v[start:start + EVAL_BATCH] for k, v in data.items() if k in g.inputs}
            values = run_graph(g, chunk, self.params, [loss_node, out_node], backend=self.backend)
            m = len(next(iter(chunk.values())))
            total += float(values[loss_node]) * m
            outputs.append(np.asarray(values[out_node]))
            sizes.append(m)
        return total / n, join_chunks(outputs, sizes)

    def evaluate(self, data: dict, detailed: bool = False, perplexity: bool = False) -> dict:
        """The loss and the task's metrics; `detailed`: a classifier's confusion matrix, precision and recall;
        `perplexity`: exp of the mean cross-entropy per predicted class (a text's characters)."""
        loss, out = self.predict(data)
        result = {"loss": loss}
        if perplexity:
            softmax = self.model.graph.op(self.model.graph.outputs[self.task.output]) is ops.softmax
            result["perplexity"] = text_perplexity(mean_cross_entropy(out, data[self.task.target], softmax))
        if not self.task.classifies:
            if self.task.target and self.task.target in data:
                target = data[self.task.target]
                if target.shape == out.shape:
                    result.update(regression(out, target))
            return result
        truth = self.task.labels(data[self.task.target])
        predicted = predicted_classes(out)
        result["accuracy"] = float((predicted == truth).mean())
        if detailed:
            counts = confusion_matrix(truth, predicted, self.task.classes)
            precision, recall = precision_recall(counts)
            result.update(confusion=counts, precision=precision, recall=recall)
        return result


def final_evaluation(evaluator, data) -> tuple[str, dict]:
    """What `nnc run` ends with and `nnc eval --data` prints: the model on the data's final part (its test
    part, a text's validation part, the training set when there is neither), with a classifier's confusion
    matrix, or a character model's perplexity instead (no matrix of every character) -> (which, result)."""
    which, split = final_split(data)
    text = bool(data.vocabulary)
    result = evaluator.evaluate(split, detailed=evaluator.task.classifies and not text, perplexity=text)
    return which, result


def final_split(data) -> tuple[str, dict]:
    """The part of `data` a final evaluation scores: its test part (a text's validation part), else the training
    set -> (which, arrays)."""
    if data.test is not None and data.n_test:
        return data.final_split, data.test
    return "training", data.train


def join_chunks(outputs: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """One output over a whole split from its values on chunks of `sizes` examples: per-example outputs
    concatenated along the batch axis; a scalar output (rank 0, e.g. `s = mean(y)`: one value per chunk) becomes
    the mean of the chunks' values weighted by their sizes, which is exactly the whole split's value for a mean
    over the batch (of a sum over the batch it gives the chunks' sums weighted by size, not the split's sum)."""
    if outputs[0].ndim == 0:
        return np.asarray(np.average(np.stack(outputs), weights=sizes), dtype=outputs[0].dtype)
    return np.concatenate(outputs)
