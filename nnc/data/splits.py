"""Seeded splits of bound arrays (validation, held-out test, a training subset), the seeded changes of training
labels (noise, shuffling) and the per-epoch mini-batch order.

Every random choice comes from its own generator: a holdout from
`default_rng([seed, HOLDOUT, stream])`, epoch k's order from `default_rng([seed, k])`
(the trainer's order since the first release; the holdouts' keys are three long so
that no epoch shares their stream). So a split does not change when another part of
a run draws more numbers, and epoch k's batch order is known without replaying
epochs 0..k-1 (a resumed run gets the same order).

Windows cut from one sequence (a text, a time series) are not independent: a
window shares values with its neighbours, so a random holdout would test on
text the model trained on. Their holdouts (`contiguous_holdout`) take whole
blocks of consecutive windows, chosen at random by the same keys, and drop the
training windows that share a value with a held-out one.
"""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Real

import numpy as np

from ..errors import NncError

HOLDOUT, TEST_STREAM, VAL_STREAM = 0, 1, 2   # holdouts draw from [seed, HOLDOUT, stream], epochs from [seed, epoch]
SUBSET_STREAM, NOISE_STREAM, SHUFFLE_STREAM = 3, 4, 5   # train_size, label_noise, shuffle_labels: [seed, HOLDOUT, s]
FOLD_STREAM = 6   # cross-validation's fold assignment (nnc.train.folds): [seed, HOLDOUT, FOLD_STREAM]
HOLDOUT_BLOCKS = 100   # a contiguous holdout takes whole blocks of about 1% of the windows ...
BLOCK_OVERLAPS = 4     # ... each at least 4 times as long as the run of windows one window overlaps


def holdout_count(amount, available: int, what: str) -> int:
    """`amount` as a number of samples: 0/None for none, a count N >= 1, or a fraction in (0, 1) of `available`.

    A fraction rounds to the nearest count, at least 1. The rest must keep at least one sample.
    """
    if amount is None or (isinstance(amount, Real) and not isinstance(amount, bool) and amount == 0):
        return 0
    if isinstance(amount, bool) or not isinstance(amount, Real) or amount < 0 or \
            (amount >= 1 and not float(amount).is_integer()):
        raise NncError(f"{what} must be a number of samples (1, 2, ...) or a fraction between 0 and 1, "
                       f"got {amount!r}")
    count = max(1, round(amount * available)) if amount < 1 else int(amount)
    if count >= available:
        raise NncError(f"{what}={amount:g} takes {count:,} of the {available:,} samples, leaving none to train on",
                       hint=f"{what} must be less than {available:,}, or a fraction such as 0.1")
    return count


def holdout(arrays: dict[str, np.ndarray], count: int, seed: int, stream: int) -> tuple[dict, dict]:
    """(rest, held out): `count` samples chosen at random by (seed, stream); both keep the original order."""
    n = sample_total(arrays)
    if count == 0:
        return arrays, {k: v[:0] for k, v in arrays.items()}
    order = np.random.default_rng([_seed(seed), HOLDOUT, stream]).permutation(n)
    held, rest = np.sort(order[:count]), np.sort(order[count:])
    return take(arrays, rest), take(arrays, held)


def contiguous_holdout(arrays: dict[str, np.ndarray], count: int, seed: int, stream: int, overlap: int,
                       what: str = "val") -> tuple[dict, dict]:
    """(rest, held out) of windows in sequence order, where windows i and j share values when |i - j| < overlap:
    about `count` windows in whole blocks chosen at random by (seed, stream), and the rest less the windows
    that share a value with a held-out one. Both keep the sequence order."""
    n = sample_total(arrays)
    if count == 0:
        return arrays, {k: v[:0] for k, v in arrays.items()}
    rest, held = contiguous_indices(n, count, seed, stream, overlap, what)
    return take(arrays, rest), take(arrays, held)


def contiguous_indices(n: int, count: int, seed: int, stream: int, overlap: int,
                       what: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """(rest, held out) indices of `contiguous_holdout`."""
    block = max(-(-n // HOLDOUT_BLOCKS), BLOCK_OVERLAPS * overlap, 1)
    blocks = -(-n // block)
    wanted = max(1, round(count / block))
    order = np.random.default_rng([_seed(seed), HOLDOUT, stream]).permutation(blocks)
    held = np.zeros(n, bool)
    for b in order[:wanted]:
        held[b * block:(b + 1) * block] = True
    # the windows within overlap - 1 of a held-out one share a value with it
    reach = np.ones(2 * max(overlap, 1) - 1, np.int64)
    near = np.convolve(held.astype(np.int64), reach, mode="same") > 0
    rest = np.flatnonzero(~near)
    if wanted >= blocks or not len(rest):
        raise NncError(f"{what}={count:,} windows leaves none to train on: the {n:,} windows are held out in blocks "
                       f"of {block:,} consecutive ones, and a training window may not overlap a held-out one",
                       hint=f"hold out fewer, such as {what} = 0.1, or give more data")
    return rest, np.flatnonzero(held)


def subset_indices(n: int, count: int, seed: int) -> np.ndarray:
    """`count` of the samples 0..n-1 chosen at random by the seed, in their original order. They are the first
    `count` of one seeded permutation, so with the same seed a smaller subset lies inside a larger one (the
    points of a learning curve are nested)."""
    order = np.random.default_rng([_seed(seed), HOLDOUT, SUBSET_STREAM]).permutation(n)
    return np.sort(order[:count])


def noisy_labels(labels: np.ndarray, classes: np.ndarray, p: float, seed: int) -> np.ndarray:
    """`labels` (each one of the sorted `classes`) with each label, with probability p, replaced by one of the
    other classes drawn uniformly; seeded."""
    rng = np.random.default_rng([_seed(seed), HOLDOUT, NOISE_STREAM])
    changed = rng.random(labels.shape) < p
    step = rng.integers(1, len(classes), size=labels.shape)   # 1 .. C-1 classes further on: never the label itself
    position = np.searchsorted(classes, labels)
    out = labels.copy()
    out[changed] = classes[(position[changed] + step[changed]) % len(classes)]
    return out


def shuffled_labels(labels: np.ndarray, seed: int) -> np.ndarray:
    """`labels` permuted over the samples (the first axis), seeded: each sample gets another's label."""
    return labels[np.random.default_rng([_seed(seed), HOLDOUT, SHUFFLE_STREAM]).permutation(len(labels))]


def take(arrays: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in arrays.items()}


def sample_total(arrays: dict[str, np.ndarray]) -> int:
    return len(next(iter(arrays.values()))) if arrays else 0


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order samples 0..n-1 are visited in epoch `epoch`: a seeded permutation, or 0..n-1 unshuffled."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([_seed(seed), epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True,
                  drop_last: bool = False) -> list[np.ndarray]:
    """One epoch's mini-batches as index arrays into the n samples; the last may be smaller unless dropped."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise NncError(f"batch must be a positive integer, got {batch_size!r}")
    order = epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def iterate_batches(arrays: dict[str, np.ndarray], batch_size: int, *, seed: int = 0, epoch: int = 0,
                    shuffle: bool = True, drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Yield {input name: batch array} for one epoch; each array is indexed once per batch, no per-sample work."""
    for index in batch_indices(sample_total(arrays), batch_size, seed=seed, epoch=epoch, shuffle=shuffle,
                               drop_last=drop_last):
        yield take(arrays, index)


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NncError(f"seed must be an integer of 0 or more, got {seed!r}")
    return int(seed)
