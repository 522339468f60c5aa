"""Learning-rate schedules: the rate for a step, from the train block's `schedule` spec.

`progress` is the fraction of training done (0 at the first step, 1 after the
last); `epoch` is that progress in epochs, so per-epoch schedules (step,
exponential) change at epoch boundaries and smooth ones (cosine, warmup,
cyclic) change every step.
"""

from __future__ import annotations

import math

from ..errors import NncError
from ..specs import SCHEDULES, Spec


def learning_rate(spec: Spec, base: float, epoch: float, epochs: int) -> float:
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
    if name == "warmup":  # linear from 0 over `epochs` epochs, then the `then` schedule on the rest
        warm = args["epochs"]
        if epoch < warm:
            return base * (epoch + 1e-12) / warm if warm > 0 else base
        then = args["then"]
        then = then if isinstance(then, Spec) else Spec(str(then), dict(SCHEDULES.get(str(then), {})))
        if then.name == "warmup":
            raise NncError("warmup(then=warmup) would never end", hint="use then=constant, cosine, step ...")
        return learning_rate(then, base, epoch - warm, max(epochs - warm, 1))
    if name == "cyclic":  # triangular between low and high, one cycle every `period` epochs
        period = max(args["period"], 1e-9)
        phase = (epoch / period) % 1.0
        tri = 1 - abs(2 * phase - 1)
        return args["low"] + (args["high"] - args["low"]) * tri
    raise NncError(f"unknown schedule '{name}'", hint=f"choose one of {', '.join(SCHEDULES)}")
