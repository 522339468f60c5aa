"""Sequences cut into windows for a model: which input reads the window, its length T, and what is predicted.

A sequence model has one input that reads a window of T steps (`int[B, T]`
character ids, `[B, T]` or `[B, T, 1]` values) and one target input, which
the model's loss compares with its prediction (nnc.runtime.task decides
which). T is the window input's second dimension when it is a number; when
it is symbolic, the train block's `window = N` gives it (and must agree with
a number). The target is either

- the window shifted by one step, when it has the window's T too (`int[B, T]`
  next characters, `[B, T, 1]` next values): a window of T + 1 steps gives
  input = steps[:-1] and target = steps[1:];
- or only the step after the window (`int[B]`, `[B, 1]`, `[B]`): target =
  steps[-1].

`cut_windows` makes the windows (`stride` steps apart: T for a text, so every
character is a target once; 1 for a series); `last_value_baseline` is the
MSE of predicting that each value repeats the one before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NncError
from ..ir.types import format_shape
from ..runtime.task import task_of
from .dataset import Baseline, Dataset

TEST_SHARE = 0.1   # a series without a test series of its own tests on its last 10% of windows


@dataclass(frozen=True)
class Layout:
    """How a sequence meets a model: `input` reads windows of `length` steps, `target` is compared with the
    prediction of the next step(s)."""

    input: str
    target: str
    length: int                  # T
    shifted: bool                # the target is the window shifted by one (else only the step after it)
    source: str                  # where T came from, for messages: "the model" or "window = N"

    def overlap(self, stride: int) -> int:
        """Windows `stride` steps apart, i and j, share steps when |i - j| < overlap (Dataset.overlap)."""
        return -(-(self.length + 1) // stride)


def sequence_layout(model, window: int | None, what: str, ids: bool) -> Layout:
    """The Layout of `model` for sequence data `what` (named in messages), with the train block's `window`;
    `ids`: the steps are character ids (int inputs), else values (float inputs)."""
    g = model.graph
    task = task_of(g)
    inputs = model.inputs
    if task.target is None:
        raise NncError(f"{what} trains a model that predicts the next step, but model '{model.name}' compares its "
                       f"prediction with none of its inputs",
                       hint="declare the target as an input and use it in the loss, e.g. "
                            "`loss cross_entropy(logits, next)` or `loss mse(pred, next)`")
    others = [name for name in inputs if name != task.target]
    if len(others) != 1:
        listed = ", ".join(f"{n} ({inputs[n]})" for n in others) or "none"
        raise NncError(f"{what} feeds one input, the window, and the target '{task.target}': model '{model.name}' "
                       f"has other inputs: {listed}",
                       hint="a sequence model has two inputs, e.g. `input text: int[B, T]` and `input next: int[B, T]`")
    name = others[0]
    t = inputs[name]
    for n in (name, task.target):
        if inputs[n].is_float == ids:
            raise NncError(f"{what} feeds {'character ids' if ids else 'values'}: the model's input '{n}' is "
                           f"{inputs[n]}, expected {'an int' if ids else 'a float'} tensor",
                           hint=f"declare `input {n}: int[B, T]` and read it with embedding({n}, VOCAB, DIM)"
                           if ids and n == name else None)
    if len(t.shape) < 2:
        raise NncError(f"{what} feeds windows of steps: the model's input '{name}' is {t}, expected a batch of "
                       f"windows such as [B, T]", hint=f"declare `input {name}: [B, T]` (or int[B, T] for text)")
    dim = t.shape[1]
    if isinstance(dim, int):
        if window is not None and window != dim:
            raise NncError(f"window = {window} disagrees with model '{model.name}': its input '{name}' {t} reads "
                           f"windows of {dim}", hint=f"drop `window`, or make it {dim}")
        length, source = dim, "the model"
    elif window is None:
        raise NncError(f"model '{model.name}' reads windows of {dim} steps ({name}: {t}), and nothing says how "
                       f"long they are for {what}", hint="give the length with `window = N` in the train block "
                                                         "(or --window N), or a number in place of " + dim)
    else:
        length, source = window, f"window = {window}"
    target = inputs[task.target]
    shifted = len(target.shape) >= 2 and target.shape[1] == dim
    return Layout(name, task.target, length, shifted, source)


def cut_windows(values: np.ndarray, layout: Layout, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [N, T], targets [N, T] or [N]) of the windows of T + 1 steps starting 0, stride, 2·stride, ...
    that fit in `values`."""
    span = layout.length + 1
    count = (len(values) - span) // stride + 1 if len(values) >= span else 0
    starts = np.arange(count) * stride
    steps = values[starts[:, None] + np.arange(span)]
    return steps[:, :-1], (steps[:, 1:] if layout.shifted else steps[:, -1])


def too_short(where: str, steps: int, unit: str, layout: Layout, needed: int) -> NncError:
    """The error of a sequence (in the file or dataset `where`) with fewer than `needed` windows."""
    return NncError(f"got {steps:,} {unit}, too few for {needed} windows of T + 1 = {layout.length + 1} "
                    f"(T = {layout.length} from {layout.source})", filename=where,
                    hint="give a longer sequence, or shorter windows")


def series_dataset(name: str, train: np.ndarray, test: np.ndarray | None, layout: Layout, *,
                   test_source: str, unit: str = "values") -> Dataset:
    """Sliding windows (stride 1) of the series `train` and, when given, `test`; without a test series its
    last TEST_SHARE of windows is the test part (the future the model never saw), and the training windows
    that share a value with them are dropped."""
    values = np.asarray(train, np.float32)
    x, y = cut_windows(values, layout, 1)
    if test is None:
        held = max(1, round(TEST_SHARE * len(x)))
        keep = len(x) - held - layout.length  # the last training window ends right before the first test one
        if keep < 1:
            raise too_short(name, len(values), unit, layout, held + layout.length + 1)
        x, y, test_x, test_y = x[:keep], y[:keep], x[-held:], y[-held:]
        test_source = f"the last {held:,} windows"
    else:
        test_x, test_y = cut_windows(np.asarray(test, np.float32), layout, 1)
        if not len(test_x):
            raise too_short(f"{name} (its test series)", len(test), unit, layout, 1)
    if not len(x):
        raise too_short(name, len(values), unit, layout, 1)
    return Dataset(name, {layout.input: x, layout.target: y}, {layout.input: test_x, layout.target: test_y},
                   features=(layout.input,), target=layout.target, test_source=test_source,
                   overlap=layout.overlap(1), note=f"windows of {layout.length} (from {layout.source}), stride 1",
                   baseline=lambda train_part, evaluated: last_value_baseline(evaluated, layout))


def last_value_baseline(part: dict, layout: Layout) -> Baseline:
    """MSE of predicting that each value repeats the one before it."""
    x = part[layout.input].astype(np.float64)
    y = part[layout.target].astype(np.float64)
    guess = x if layout.shifted else x[:, -1]
    return Baseline("repeat the last value", "mse", float(np.mean((guess.reshape(y.shape) - y) ** 2)))


def check_width(model, layout: Layout, what: str) -> None:
    """A series has one value per step: the window input is [B, T] or [B, T, 1]."""
    t = model.inputs[layout.input]
    if len(t.shape) > 3 or (len(t.shape) == 3 and t.shape[2] != 1):
        raise NncError(f"{what} has one value per step: the model's input '{layout.input}' is {t}, expected "
                       f"[B, T] or [B, T, 1]", hint=f"declare `input {layout.input}: "
                                                    f"{format_shape(t.shape[:2] + (1,))}`")
