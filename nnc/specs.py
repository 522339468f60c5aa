"""The named choices of a training run: optimizers and schedules with their default arguments.

A train block (`optimizer = adam(lr=0.01)`), a flag (`--optimizer adam`), the
optimizer pass and the learning-rate schedule all read these tables, and a name
is checked in one place (`optimizer_spec`, `schedule_spec`). A choice with its
arguments is a `Spec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Loc, NncError, closest

OPTIMIZERS = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False},
    "momentum": {"lr": 0.01, "momentum": 0.9, "nesterov": False},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "eps": 1e-8},
    "adagrad": {"lr": 0.01, "lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
    "adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "adamw": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
}
SCHEDULES = {
    "constant": {},
    "step": {"every": 1, "gamma": 0.1},
    "exponential": {"gamma": 0.95},
    "cosine": {"min_lr": 0.0},
    "warmup": {"epochs": 1, "then": "constant", "start": 0.0},
    "cyclic": {"low": 0.0001, "high": 0.01, "period": 2},
    "plateau": {"factor": 0.1, "patience": 10, "min_lr": 0.0, "threshold": 0.0001},
}


@dataclass(frozen=True)
class Spec:
    name: str
    args: dict = field(default_factory=dict)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name}({inner})"


def check_name(table: dict, name: str, what: str, loc: Loc | None = None) -> str:
    """`name` if `table` has it; else an NncError naming the choices (and the closest one)."""
    if name in table:
        return name
    close = closest(name, table)
    raise NncError(f"unknown {what} '{name}'", loc,
                   hint=f"did you mean '{close}'?" if close else f"choose one of {', '.join(table)}")


def optimizer_spec(name: str, **args) -> Spec:
    """The optimizer `name` with its defaults, overridden by `args`."""
    return Spec(check_name(OPTIMIZERS, name, "optimizer"), {**OPTIMIZERS[name], **args})


def schedule_spec(name: str, **args) -> Spec:
    """The learning-rate schedule `name` with its defaults, overridden by `args`."""
    return Spec(check_name(SCHEDULES, name, "schedule"), {**SCHEDULES[name], **args})
