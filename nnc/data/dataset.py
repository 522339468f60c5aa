"""`Dataset`: the arrays of a data source before they meet a model, and what each array is for.

A dataset has a training part and, when the source provides one, a separate
test part (MNIST's t10k files, a spiral drawn with another seed). Each part
maps array names to arrays that share their first dimension, the samples.
`features` and `target` name the arrays that play those roles, for binding
to a model whose input names differ from the array names.

A dataset cut from one sequence (a text, a time series) holds its windows in
order: `overlap` says how many neighbouring windows share values (so that
holdouts take contiguous blocks, see nnc.data.splits), and `baseline` measures
the naive predictor its results are read against (a `Baseline`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import NncError


@dataclass
class Dataset:
    name: str                                  # what messages call it: "mnist", "data/study_hours.csv"
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray] | None = None  # None: the source has no separate test set
    features: tuple[str, ...] = ()             # concatenated per sample, in this order, for a features input
    target: str | None = None                  # labels or regression targets
    classes: int | None = None                 # the number of classes, when the data defines it
    class_names: tuple[str, ...] = ()          # their names, when the data has names for them
    test_source: str = ""                      # where `test` came from, for the run header
    by_name_only: bool = False                 # arrays bind to the model's inputs by name, never by role
    unit: str = "array"                        # what messages call one array: "array", or "column" of a table
    divisors: dict[str, float] = field(default_factory=dict)  # arrays stored as integers, divided by this
    # when bound (pixels 0..255: 255), so that splits copy bytes and only the bound parts are float
    files: dict[tuple[str, str], str] = field(default_factory=dict)  # ("train" or "test", array): the file
    # it was read from, when arrays come from separate files (IDX), so that messages about it name that file
    overlap: int = 0                           # 0: samples are independent; k >= 1: they are consecutive windows
    # of one sequence and windows i, j share values when |i - j| < k (holdouts are then contiguous blocks)
    default_val: float = 0.0                   # the validation share when the run asks for none (text: 0.1)
    final_on_val: bool = False                 # no test part: the final evaluation is the validation part's
    vocabulary: tuple[str, ...] = ()           # a text's characters, id i being vocabulary[i]
    note: str = ""                             # how the samples were made, for the run header
    baseline: Callable[[dict, dict], Baseline] | None = None  # (training part, evaluated part) -> the naive
    # predictor's score on the evaluated part, from the unbound arrays

    def file_of(self, array: str, own_test_part: bool) -> str:
        """Where messages about `array` point: its file if known, else the dataset's name."""
        return self.files.get(("test" if own_test_part else "train", array), self.name)

    @property
    def arrays(self) -> list[str]:
        return list(self.train)


@dataclass(frozen=True)
class Baseline:
    """A naive predictor's score, printed next to the model's: "unigram" perplexity of a text, the MSE of
    repeating a series' last value."""

    name: str       # what it predicts, for people
    metric: str     # "perplexity" or "mse": the key of the model's result it compares with
    value: float

    def text(self) -> str:
        if self.metric == "perplexity":   # as the model's perplexity is printed
            return f"baseline ({self.name}): perplexity {self.value:.4g}"
        return f"baseline ({self.name}): {self.metric.upper()} {self.value:.6g}"   # as the regression's errors


def sample_count(arrays: dict[str, np.ndarray], where: str) -> int:
    """The number of samples of a part; its arrays must agree on it."""
    counts = {name: (a.shape[0] if a.ndim else None) for name, a in arrays.items()}
    for name, count in counts.items():
        if count is None:
            raise NncError(f"array '{name}' is a single number, expected one value or row per sample",
                           filename=where)
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} has {count:,}" for name, count in counts.items())
        raise NncError(f"arrays disagree on the number of samples: {listed}", filename=where,
                       hint="every array needs one entry per sample along its first axis")
    if counts and next(iter(counts.values())) == 0:
        raise NncError("no samples: the arrays are empty", filename=where)
    return next(iter(counts.values()), 0)
