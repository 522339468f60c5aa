"""A run's configuration: the model's `train { }` block with the values given for this run over it.

`run_config` takes plain values (None: not given, the train block's holds),
so `nnc run` and the Python API resolve settings the same way. A new
optimizer keeps the train block's `lr = ...`; threads not given anywhere are
the cores this process may use, at most MAX_DEFAULT_THREADS.
"""

from __future__ import annotations

import os

from .. import specs
from ..specs import Spec
from .trainer import RunConfig

MAX_DEFAULT_THREADS = 8  # the kernels of a small model split into more shares than this only add overhead


def run_config(settings: dict, *, epochs: int | None = None, batch: int | None = None, lr: float | None = None,
               optimizer: str | None = None, schedule: str | None = None, weight_decay: float | None = None,
               clip: float | None = None, seed: int | None = None, backend: str | None = None,
               threads: int | None = None, steps: int | None = None, freeze=None, early_stop: int | None = None,
               snapshots: int | None = None, augment: tuple | None = None, tta: tuple | None = None) -> RunConfig:
    """The RunConfig of a model whose train block resolved to `settings` (Model.settings), with the values given
    (`augment`, `tta`: Specs, as nnc.specs.parse_specs reads a flag's; () for none)."""
    s = settings
    optimizer_spec = s["optimizer"]
    if optimizer:
        block_lr = {"lr": s["lr"]} if s["lr"] is not None else {}  # the train block's `lr = ...` still holds
        optimizer_spec = specs.optimizer_spec(optimizer, **block_lr)
    if lr is not None:
        optimizer_spec = Spec(optimizer_spec.name, {**optimizer_spec.args, "lr": lr})
    schedule_spec = specs.schedule_spec(schedule) if schedule else s["schedule"]
    return RunConfig(
        epochs=epochs if epochs is not None else s["epochs"],
        batch=batch if batch is not None else s["batch"],
        optimizer=optimizer_spec, schedule=schedule_spec,
        weight_decay=weight_decay if weight_decay is not None else s["weight_decay"],
        clip=clip if clip is not None else s["clip"],
        seed=seed if seed is not None else s["seed"],
        backend=backend or "llvm",
        threads=threads_of(s, threads),
        steps=steps if steps is not None else s["steps"],
        alternate=tuple(s["alternate"] or ()),
        freeze=tuple(freeze) if freeze is not None else tuple(s["freeze"] or ()),
        early_stop=early_stop if early_stop is not None else s["early_stop"],
        snapshots=snapshots if snapshots is not None else s["snapshots"],
        augment=tuple(augment) if augment is not None else tuple(s.get("augment") or ()),
        tta=tuple(tta) if tta is not None else tuple(s.get("tta") or ()))


def threads_of(settings: dict, threads: int | None = None) -> int:
    """The threads of a run (nnc run) or a measurement (nnc bench): `threads` if given, else the train block's,
    else `default_threads()`."""
    return next(t for t in (threads, settings["threads"], default_threads()) if t is not None)


def default_threads() -> int:
    """Threads when neither the run nor the train block says: the cores this process may use."""
    return max(1, min(usable_cores(), MAX_DEFAULT_THREADS))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which taskset and containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
