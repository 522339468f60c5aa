"""The course's small built-in datasets: the logic gates `and`, `or`, `xor`, the 3-class `spiral`, `sine`
and `remember`.

A gate's data is its whole truth table: x [4, 2] of 0/1 and target [4, 1].
There is nothing else to test a gate on, so its test set is the table itself.

`spiral` is CS231n's toy set: K arms of N points each in the plane, radius
rising linearly from 0 to 1 while the angle turns by 4 radians plus Gaussian
noise; arm k is class k. The training points and the test points are two
independent draws (seeds 0 and 1), so the test set measures generalization.

`sine` is a noisy sine wave for forecasting: sin(2π·t / 25 + φ) plus Gaussian
noise of standard deviation 0.1 at steps t = 0, 1, ..., with a random phase φ;
2,000 steps to train on (seed 0) and another 500 (seed 1) to test on, cut into
windows of T steps whose next value is the target (nnc.data.sequences).

`remember` is the memory task that shows vanishing gradients through time
(Hochreiter and Schmidhuber's experiments, Bengio et al. 1994): sequences of
50 steps of one value, the first ±1 and the rest standard-normal noise; the
class is the sign of the first value (0 for −1, 1 for +1), so a recurrent
network must carry it across all 50 steps. 10,000 sequences to train on (seed 0),
1,000 to test on (seed 1), half of each class.
"""

from __future__ import annotations

import numpy as np

from .dataset import Dataset
from .sequences import Layout, series_dataset

GATE_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
GATE_OUTPUTS = {"and": (0, 0, 0, 1), "or": (0, 1, 1, 1), "xor": (0, 1, 1, 0)}

SPIRAL_POINTS_PER_CLASS = 100
SPIRAL_CLASSES = 3
SPIRAL_TRAIN_SEED, SPIRAL_TEST_SEED = 0, 1

SINE_PERIOD, SINE_NOISE = 25, 0.1
SINE_TRAIN_STEPS, SINE_TEST_STEPS = 2000, 500
SINE_TRAIN_SEED, SINE_TEST_SEED = 0, 1

REMEMBER_STEPS = 50
REMEMBER_TRAIN, REMEMBER_TEST = 10000, 1000
REMEMBER_TRAIN_SEED, REMEMBER_TEST_SEED = 0, 1


def gate(name: str) -> Dataset:
    """The truth table of the gate `and`, `or` or `xor`."""
    table = {"x": GATE_INPUTS.copy(), "target": np.array(GATE_OUTPUTS[name], np.float32).reshape(4, 1)}
    return Dataset(name, table, None, features=("x",), target="target", classes=2,
                   test_source="the whole truth table")


def spiral_points(points_per_class: int = SPIRAL_POINTS_PER_CLASS, classes: int = SPIRAL_CLASSES,
                  seed: int = 0, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """x float32 [points_per_class * classes, 2] and labels int32, class k's points contiguous."""
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.0, 1.0, points_per_class), classes)
    arm = np.repeat(np.arange(classes), points_per_class)
    turn = np.tile(np.linspace(0.0, 4.0, points_per_class), classes)
    angle = arm * 4.0 + turn + rng.normal(size=arm.shape) * noise
    x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1).astype(np.float32)
    return x, arm.astype(np.int32)


def spiral() -> Dataset:
    train_x, train_y = spiral_points(seed=SPIRAL_TRAIN_SEED)
    test_x, test_y = spiral_points(seed=SPIRAL_TEST_SEED)
    return Dataset("spiral", {"x": train_x, "label": train_y}, {"x": test_x, "label": test_y}, features=("x",),
                   target="label", classes=SPIRAL_CLASSES,
                   test_source=f"a second draw of the spiral (seed {SPIRAL_TEST_SEED})")


def sine_series(steps: int, seed: int, period: float = SINE_PERIOD, noise: float = SINE_NOISE) -> np.ndarray:
    """float32 [steps]: sin(2π·t / period + φ) + noise·N(0, 1), φ uniform in [0, 2π), all drawn from `seed`."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0.0, 2 * np.pi)
    t = np.arange(steps)
    return (np.sin(2 * np.pi * t / period + phase) + noise * rng.normal(size=steps)).astype(np.float32)


def sine(layout: Layout) -> Dataset:
    return series_dataset("sine", sine_series(SINE_TRAIN_STEPS, SINE_TRAIN_SEED),
                          sine_series(SINE_TEST_STEPS, SINE_TEST_SEED), layout,
                          test_source=f"a second draw of the wave (seed {SINE_TEST_SEED})")


def remember_sequences(count: int, seed: int, steps: int = REMEMBER_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """x float32 [count, steps, 1]: a first value of ±1, then N(0, 1) noise; labels int32: 1 where it is +1."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % 2).astype(np.int32)
    x = rng.normal(size=(count, steps, 1)).astype(np.float32)
    x[:, 0, 0] = 2.0 * labels - 1.0
    return x, labels


def remember() -> Dataset:
    train_x, train_y = remember_sequences(REMEMBER_TRAIN, REMEMBER_TRAIN_SEED)
    test_x, test_y = remember_sequences(REMEMBER_TEST, REMEMBER_TEST_SEED)
    return Dataset("remember", {"x": train_x, "label": train_y}, {"x": test_x, "label": test_y}, features=("x",),
                   target="label", classes=2, test_source=f"a second draw (seed {REMEMBER_TEST_SEED})",
                   note=f"{REMEMBER_STEPS} steps; the class is the sign of the first")
