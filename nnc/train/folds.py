"""K-fold cross-validation: the data cut into K seeded folds; K models trained from scratch, each
validated and scored on the fold it did not see; each fold's score and the mean ± standard deviation
(`nnc run --folds K`). Every model trains with the run's settings, and fold k's model starts from the
same seeded initialization as the others, so the folds differ only in their data."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..data.splits import FOLD_STREAM, HOLDOUT, sample_total, take
from ..errors import NncError


def fold_indices(n: int, k: int, seed: int) -> list[np.ndarray]:
    """K disjoint sets of sample indices covering 0..n-1, sizes differing by at most one, seeded."""
    order = np.random.default_rng([seed & 0xFFFFFFFF, HOLDOUT, FOLD_STREAM]).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


def check_folds(k: int, data) -> None:
    """Cross-validation takes its held-out parts from the data itself: a fixed test set or a validation
    split next to it is a contradiction."""
    if k < 2:
        raise NncError(f"folds must be 2 or more, got {k}")
    if data.n_val:
        raise NncError(f"folds = {k} validates each model on its fold: drop `val`")
    if data.standardization is not None:
        raise NncError(f"folds = {k} with standardize: each fold would need statistics of its own training part, "
                       f"which nnc does not compute yet", hint="cross-validate without standardize")
    whole_table = data.test is data.train or "no separate test set" in data.test_source
    if not whole_table:
        raise NncError(f"folds = {k} holds each part of the data out in turn, but {data.name} has a fixed test set "
                       f"({data.test_source})", hint="cross-validate data without its own test part (a table), "
                       "or train once with `val` for a validation split")
    if sample_total(data.train) < k:
        raise NncError(f"folds = {k} needs at least {k} examples, the data has {sample_total(data.train)}")


@dataclass
class FoldResult:
    fold: int
    trained_on: int
    scored_on: int
    result: dict      # the evaluator's metrics on the held-out fold


def fold_data(data, held: np.ndarray):
    """The BoundData whose validation and test part is fold `held` and whose training part is the rest."""
    n = sample_total(data.train)
    rest = np.setdiff1d(np.arange(n), held)
    part = take(data.train, held)
    return replace(data, train=take(data.train, rest), val=part, test=part,
                   test_source=f"fold of {len(held)} examples", final_split="held-out fold")


def summary(results: list[FoldResult]) -> dict:
    """The mean and (sample) standard deviation over the folds of each scalar metric."""
    names = [k for k, v in results[0].result.items() if np.ndim(v) == 0]
    out = {}
    for name in names:
        values = np.array([float(r.result[name]) for r in results])
        out[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                     "folds": values.tolist()}
    return out
