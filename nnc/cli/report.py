"""What nnc prints about training and evaluation: the epoch line of `nnc run`, and the result of an
evaluation (`nnc run` at the end, `nnc eval --data`): the loss with the accuracy and the confusion matrix
of a classifier, or the loss with MSE, MAE and RMSE of a regression, and a regression's fitted parameters;
a character model's perplexity, and the naive baseline of sequence data next to the model's figure."""

from __future__ import annotations

import numpy as np


def evaluation_text(which: str, result: dict, data_description: str | None = None, baseline=None,
                    class_names: tuple[str, ...] = ()) -> str:
    """An evaluation's result (Evaluator.evaluate, detailed for a classifier) on the `which` set ("test",
    "validation" or "training"); `data_description` ends a classifier's accuracy line when given; `baseline`
    (a nnc.data.Baseline) follows the model's figure it compares with; `class_names` (the data's) name the
    confusion matrix's rows."""
    lines = []
    if "accuracy" not in result:  # a regression: the loss and the errors the evaluator measured (MSE, MAE, RMSE)
        lines.append(f"{which} loss {result['loss']:.6g}" + "".join(
            f"  {k.upper()} {v:.6g}" for k, v in result.items() if k not in ("loss", "perplexity")))
    else:
        line = f"{which} loss {result['loss']:.4f}  {which} accuracy {100 * result['accuracy']:.2f}%"
        lines.append(line + (f" ({data_description})" if data_description is not None else ""))
        if "confusion" in result:
            lines.append(confusion_text(result, class_names))
    if "perplexity" in result:
        lines.append(f"{which} perplexity {result['perplexity']:.4g} per character")
    if baseline is not None:
        lines.append(baseline.text())
    return "\n".join(lines)


def confusion_text(result: dict, class_names: tuple[str, ...] = ()) -> str:
    """The matrix with each class's precision and recall; a row shows its class's name after its number when the
    name says more than the number (CIFAR-10's "cat", not MNIST's "3")."""
    counts, precision, recall = result["confusion"], result["precision"], result["recall"]
    k = len(counts)
    width = max(5, len(str(counts.max())) + 1)
    names = list(class_names) if len(class_names) == k and list(class_names) != [str(i) for i in range(k)] else []
    label = max(map(len, names)) + 1 if names else 0
    lines = ["confusion matrix (rows: true class, columns: predicted):",
             "      " + " " * label + "".join(f"{j:>{width}}" for j in range(k)) + "   precision  recall"]
    for i in range(k):
        name = f"{names[i]:<{label - 1}} " if names else ""
        lines.append(f"  {i:>3} {name}" + "".join(f"{counts[i, j]:>{width}}" for j in range(k)) +
                     f"   {100 * precision[i]:8.2f}%  {100 * recall[i]:6.2f}%")
    return "\n".join(lines)


def fitted_params_text(params: dict) -> str:
    """A regression's parameters after training, one `name = value` line each."""
    return "\n".join(["fitted parameters:", *(
        f"  {name} = {np.array2string(np.asarray(value), precision=4, suppress_small=True)}"
        for name, value in params.items())])
