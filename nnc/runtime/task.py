"""What a model learns, read off its graph, decided in this one place: `task_of(graph)`.

The target is the input the loss compares the prediction against:
- int labels that cross_entropy or one_hot index by: a classification, with as
  many classes as the logits are wide (or the one-hot depth); labels of any
  shape, one per example ([B]) or per position ([B, T]: each position is
  scored). Int ids that only index a table (an embedding's) are features;
- else one-hot float targets of cross_entropy: a classification;
- else the float input that binary_cross_entropy (a binary classification),
  mse or mae (a regression) compares the prediction with;
- else the one float input the loss needs but no output does (a regression).
A model with several losses (a GAN) is generative: no target, every input a feature.
Every other input is a feature input. The output that is evaluated is the
first (in graph order) that the loss depends on, else the first output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NncError
from ..ir import ops
from ..ir.ops import IndexUse

CLASSIFICATION, BINARY, REGRESSION = "classification", "binary", "regression"
GENERATIVE = "generative"   # several losses (a GAN): no target; the data are examples of what to generate
COMPARING_LAYERS = {"mse": ops.sub, "mae": ops.sub, "binary_cross_entropy": ops.bce_logits}


@dataclass(frozen=True)
class Task:
    kind: str                   # CLASSIFICATION, BINARY or REGRESSION
    output: str | None          # the output whose values are predictions; None when the model has none
    target: str | None          # the input holding labels or targets; None when nothing is compared
    classes: int | None = None  # classes told apart (2 for BINARY); None for a regression or when unknown
    class_source: str = ""      # where `classes` comes from, for messages: "logits [B, 10]"

    @property
    def classifies(self) -> bool:
        return self.kind not in (REGRESSION, GENERATIVE)

    def labels(self, targets: np.ndarray) -> np.ndarray:
        """Class indices from the target input's values: int labels of any shape ([N], or [N, T] for a
        sequence), 0/1 targets [N, 1], one-hot rows (the classes on the last axis)."""
        if targets.ndim == 1 or targets.dtype.kind in "iu":
            return targets
        if self.kind == CLASSIFICATION and targets.shape[-1] > 1:
            return targets.argmax(axis=-1)
        return targets.reshape(len(targets), -1)[:, 0].astype(np.int64)


def task_of(g) -> Task:
    """The task of the model whose (evaluation) graph is `g`."""
    outputs = {n: name for name, n in g.outputs.items()}
    if g.loss is None:
        return Task(REGRESSION, next(iter(g.outputs), None), None)
    if len(g.losses) > 1:
        return Task(GENERATIVE, next(iter(g.outputs), None), None)
    need = g.needed_for([g.loss])
    output = next((outputs[n] for n in g.topo() if n in outputs and n in need), next(iter(g.outputs), None))
    by_node = {node: name for name, node in g.inputs.items()}
    for name, node in g.inputs.items():
        if node in need and not g.type_of(node).is_float and _read_as_labels(g, node):
            classes = g.label_classes(node)
            if classes is not None:
                return Task(CLASSIFICATION, output, name, classes, _class_source(g, node))
    for n in sorted(need):
        op, layer = g.op(n), g.nodes[n].get("layer")
        if op is ops.xent and g.operands(n)[1] in by_node and g.type_of(g.operands(n)[1]).is_float:
            logits = g.type_of(g.operands(n)[0])
            classes = logits.shape[-1] if isinstance(logits.shape[-1], int) else None
            return Task(CLASSIFICATION, output, by_node[g.operands(n)[1]], classes, f"logits {logits}")
        if COMPARING_LAYERS.get(layer) is op:
            compared = [o for o in g.operands(n) if o in by_node and g.type_of(o).is_float]
            if compared:
                if layer == "binary_cross_entropy":
                    return Task(BINARY, output, by_node[compared[-1]], 2, "binary_cross_entropy")
                return Task(REGRESSION, output, by_node[compared[-1]])
    feeding_outputs = g.needed_for(list(outputs))
    only_loss = [name for name, node in g.inputs.items() if node in need and node not in feeding_outputs]
    return Task(REGRESSION, output, only_loss[0] if len(only_loss) == 1 else None)


def training_task(g) -> Task:
    """The task of a model about to be trained or evaluated with its loss: an error when it has no loss or
    no output to evaluate."""
    if g.loss is None:
        raise NncError(f"model '{g.model}' has no loss, so there is nothing to train",
                       hint="declare one, e.g. loss cross_entropy(logits, label)")
    task = task_of(g)
    if task.output is None:
        raise NncError(f"model '{g.model}' has no output to evaluate", hint="add `output NAME`")
    return task


def _read_as_labels(g, node: int) -> bool:
    """Does an op read the int values of `node` as class labels (rather than as ids of a table's rows)?"""
    for user in g.successors(node):
        op, operands = g.op(user), g.operands(user)
        types = [g.type_of(o) for o in operands]
        if not isinstance(op.labels, IndexUse) and any(o == node and op.label_operand(i, types)
                                                       for i, o in enumerate(operands)):
            return True
    return False


def _class_source(g, labels: int) -> str:
    """What decides how many classes the int labels `labels` index, for messages."""
    for user in g.successors(labels):
        if g.op(user) is ops.xent:
            return f"logits {g.type_of(g.operands(user)[0])}"
        if g.op(user) is ops.one_hot:
            return f"one_hot depth {g.nodes[user]['attrs']['depth']}"
    return ""
