"""Learning-rate schedules: the rate for a step, from the train block's `schedule` spec.

`epoch` is the progress of training in epochs (0 at the first step, 1.5 halfway
through the second epoch), so per-epoch schedules (step, exponential) change at
epoch boundaries and smooth ones (cosine, warmup, cyclic) change every step.

`plateau` depends on the validation loss rather than on time: a run whose
schedule `needs_validation` keeps the `Plateau` that `plateau_for` makes, calls
its `observe(val_loss)` after each epoch's validation and passes it to
`learning_rate`, which then returns the rate it holds for the next epoch.
`Plateau.state()` / `load_state()` carry it across a resumed run.
"""

from __future__ import annotations

import math

from ..errors import NncError
from ..specs import SCHEDULES, Spec

PLATEAU_EPS = 1e-8  # ReduceLROnPlateau's eps: a reduction smaller than this is not made


class Plateau:
    """ReduceLROnPlateau (mode min, threshold_mode rel, cooldown 0) on the validation loss: after more than
    `patience` epochs without a loss below best·(1 − threshold), the rate becomes max(rate·factor, min_lr)."""

    def __init__(self, base: float, factor: float = 0.1, patience: float = 10, min_lr: float = 0.0,
                 threshold: float = 1e-4):
        if not 0 <= factor < 1:
            raise NncError(f"plateau: factor must be at least 0 and below 1, got {factor}")
        self.base, self.factor, self.patience, self.min_lr, self.threshold = base, factor, patience, min_lr, threshold
        self.lr = float(base)       # the rate of the next epoch
        self.best: float | None = None
        self.bad_epochs = 0

    @classmethod
    def from_spec(cls, spec: Spec, base: float) -> Plateau:
        args = {**SCHEDULES["plateau"], **spec.args}
        return cls(base, args["factor"], args["patience"], args["min_lr"], args["threshold"])

    def observe(self, metric: float) -> None:
        """Feed one epoch's validation loss (a NaN counts as no improvement)."""
        metric = float(metric)
        if metric < (math.inf if self.best is None else self.best) * (1 - self.threshold):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            reduced = max(self.lr * self.factor, self.min_lr)
            if self.lr - reduced > PLATEAU_EPS:
                self.lr = reduced
            self.bad_epochs = 0

    @property
    def factor_now(self) -> float:
        """The current rate as a multiple of the base rate."""
        return self.lr / self.base if self.base else 1.0

    def state(self) -> dict:
        """Everything `load_state` needs to continue, as plain JSON-able data."""
        return {"lr": self.lr, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state(self, state: dict) -> None:
        self.lr = float(state["lr"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


def _then(args: dict) -> Spec:
    """warmup's `then` as a Spec (the table's default is a bare name)."""
    then = args["then"]
    return then if isinstance(then, Spec) else Spec(str(then), dict(SCHEDULES.get(str(then), {})))


def _watching(spec: Spec) -> Spec | None:
    """The plateau spec that drives `spec` (itself, or warmup's `then`), or None."""
    if spec.name == "warmup":
        spec = _then({**SCHEDULES["warmup"], **spec.args})
    return spec if spec.name == "plateau" else None


def needs_validation(spec: Spec) -> bool:
    """Does the schedule follow the validation loss (`plateau`, also as warmup's `then`)?"""
    return _watching(spec) is not None


def plateau_for(spec: Spec, base: float) -> Plateau | None:
    """The Plateau a run with schedule `spec` and base rate `base` keeps; None when the schedule has none."""
    watched = _watching(spec)
    return None if watched is None else Plateau.from_spec(watched, base)


def learning_rate(spec: Spec, base: float, epoch: float, epochs: int, plateau: Plateau | None = None) -> float:
    """The rate at `epoch` of `epochs` for the base rate `base`; `plateau` (from `plateau_for`) is required by
    a schedule that `needs_validation`."""
    args = {**SCHEDULES.get(spec.name, {}), **spec.args}
    name = spec.name
    if name == "constant":
        return base
    if name == "step":  # ×gamma every `every` epochs
        return base * args["gamma"] ** math.floor(epoch / max(args["every"], 1))
    if name == "exponential":  # ×gamma each epoch
        return base * args["gamma"] ** math.floor(epoch)
    if name == "cosine":  # half a cosine from base down to min_lr over the whole run
        progress = min(epoch / max(epochs, 1), 1.0)
        return args["min_lr"] + (base - args["min_lr"]) * (1 + math.cos(math.pi * progress)) / 2
    if name == "warmup":  # linear from `start` over `epochs` epochs, then the `then` schedule on the rest
        warm, start = args["epochs"], args["start"]
        if epoch < warm:
            return start + (base - start) * (epoch + 1e-12) / warm if warm > 0 else base
        then = _then(args)
        if then.name == "warmup":
            raise NncError("warmup(then=warmup) would never end", hint="use then=constant, cosine, step ...")
        return learning_rate(then, base, epoch - warm, max(epochs - warm, 1), plateau)
    if name == "cyclic":  # triangular between low and high, one cycle every `period` epochs
        period = max(args["period"], 1e-9)
        phase = (epoch / period) % 1.0
        tri = 1 - abs(2 * phase - 1)
        return args["low"] + (args["high"] - args["low"]) * tri
    if name == "plateau":
        if plateau is None:
            raise ValueError("the plateau schedule's rate comes from a Plateau: pass plateau_for(spec, base)")
        return plateau.lr
    raise NncError(f"unknown schedule '{name}'", hint=f"choose one of {', '.join(SCHEDULES)}")
