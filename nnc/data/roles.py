"""What each input of a model is for, read from its graph: the features, the labels or the regression target.

The target is the input the loss compares the prediction against:
- an int input is labels (cross_entropy's or one_hot's), a classification;
- else the float input that is the second operand of mse, mae or
  binary_cross_entropy (a regression, or a binary classification), or the
  one-hot target of cross_entropy;
- else the one float input the loss needs but no output does.
Every other input is a feature input.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import ops

CLASSIFICATION, BINARY, REGRESSION = "classification", "binary", "regression"
COMPARING_LAYERS = {"mse": ops.sub, "mae": ops.sub, "binary_cross_entropy": ops.bce_logits}


@dataclass(frozen=True)
class InputRoles:
    target: str | None          # the input holding labels or targets; None when the model has no loss
    task: str                   # CLASSIFICATION, BINARY or REGRESSION
    n_classes: int | None       # classes the model distinguishes (2 for BINARY); None for REGRESSION or unknown
    class_source: str = ""      # where n_classes comes from, for messages: "logits [B, 10]"


def input_roles(model) -> InputRoles:
    g = model.graph
    inputs = g.inputs
    ints = [name for name, node in inputs.items() if not g.type_of(node).is_float]
    if len(ints) == 1:
        classes, source = _classes_of_labels(g, inputs[ints[0]])
        return InputRoles(ints[0], CLASSIFICATION, classes, source)
    if ints or g.loss is None:
        return InputRoles(None, REGRESSION, None)
    by_node = {node: name for name, node in inputs.items()}
    for n in sorted(g.needed_for([g.loss])):
        op, layer = g.op(n), g.nodes[n].get("layer")
        if op is ops.xent and g.operands(n)[1] in by_node:
            logits = g.type_of(g.operands(n)[0])
            return InputRoles(by_node[g.operands(n)[1]], CLASSIFICATION, _int_or_none(logits.shape[-1]),
                              f"logits {logits}")
        if COMPARING_LAYERS.get(layer) is op:
            compared = [o for o in g.operands(n) if o in by_node and g.type_of(o).is_float]
            if compared:
                if layer == "binary_cross_entropy":
                    return InputRoles(by_node[compared[-1]], BINARY, 2, "binary_cross_entropy")
                return InputRoles(by_node[compared[-1]], REGRESSION, None)
    needed_by_outputs = g.needed_for(list(g.outputs.values()))
    only_loss = [name for name, node in inputs.items()
                 if node in g.needed_for([g.loss]) and node not in needed_by_outputs]
    return InputRoles(only_loss[0] if len(only_loss) == 1 else None, REGRESSION, None)


def _classes_of_labels(g, node) -> tuple[int | None, str]:
    for user in g.successors(node):
        if g.op(user) is ops.xent:
            logits = g.type_of(g.operands(user)[0])
            return _int_or_none(logits.shape[-1]), f"logits {logits}"
        if g.op(user) is ops.one_hot:
            depth = g.nodes[user]["attrs"]["depth"]
            return depth, f"one_hot depth {depth}"
    return None, ""


def _int_or_none(dim) -> int | None:
    return dim if isinstance(dim, int) else None
