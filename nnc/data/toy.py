"""The course's small built-in datasets: the logic gates `and`, `or`, `xor` and the 3-class `spiral`.

A gate's data is its whole truth table: x [4, 2] of 0/1 and target [4, 1].
There is nothing else to test a gate on, so its test set is the table itself.

`spiral` is CS231n's toy set: K arms of N points each in the plane, radius
rising linearly from 0 to 1 while the angle turns by 4 radians plus Gaussian
noise; arm k is class k. The training points and the test points are two
independent draws (seeds 0 and 1), so the test set measures generalization.
"""

from __future__ import annotations

import numpy as np

from .dataset import Dataset

GATE_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
GATE_OUTPUTS = {"and": (0, 0, 0, 1), "or": (0, 1, 1, 1), "xor": (0, 1, 1, 0)}

SPIRAL_POINTS_PER_CLASS = 100
SPIRAL_CLASSES = 3
SPIRAL_TRAIN_SEED, SPIRAL_TEST_SEED = 0, 1


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
