"""Learning-rate schedules against torch.optim.lr_scheduler: warm-up from a given rate (LinearLR) and the
plateau schedule (ReduceLROnPlateau) on constructed validation losses, its state across a resumed run, and
how the train block reads them."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from nnc import NncError
from nnc.front.settings import read_train_block
from nnc.front.syntax import parse
from nnc.specs import SCHEDULES, Spec, schedule_spec
from nnc.train.schedules import Plateau, learning_rate, needs_validation, plateau_for


def settings(text: str) -> dict:
    return read_train_block(parse(f"train {{\n{text}\n}}").trains)


def test_warmup_from_a_start_rate_is_torchs_linear_warmup():
    base, start, steps, warm = 0.1, 0.001, 4, 2   # 4 steps an epoch, 2 epochs of warm-up
    spec = settings(f"schedule = warmup(epochs={warm}, start={start})")["schedule"]
    assert spec == Spec("warmup", {"epochs": warm, "then": "constant", "start": start})
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start / base, total_iters=warm * steps)
    for i in range(3 * steps):
        assert learning_rate(spec, base, i / steps, 3) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), i
        opt.step()
        linear.step()


def test_warmup_without_start_still_rises_from_zero():
    spec = schedule_spec("warmup", epochs=2)
    assert [learning_rate(spec, 0.1, e, 4) for e in (0, 1, 2)] == pytest.approx([0, 0.05, 0.1], abs=1e-12)


# (factor, patience, min_lr, threshold), the validation losses of the epochs one after another, and the
# rates the run goes through (down to min_lr in the first: 0.1, 0.05, 0.025, 0.02)
PLATEAUS = [
    ((0.5, 2, 0.02, 1e-3), [1.0, 0.9, 0.95, 0.9, 0.8999, 0.91, 0.5, 0.5, 0.49999, math.nan, 0.6, 0.7, 0.3, 0.3,
                            0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.2999], 4),
    ((0.1, 10, 0.0, 1e-4), [2.0 / (1 + e) for e in range(8)] + [0.25 * (1 - 1e-6 * e) for e in range(30)], 3),
    ((0.0, 1, 1e-3, 0.0), [math.nan, 1.0, 1.0, 0.999, 1.1, 0.5, 0.5, 0.5, 0.4], 2),
]


@pytest.mark.parametrize("args, losses, distinct", PLATEAUS)
def test_plateau_follows_torchs_reduce_lr_on_plateau(args, losses, distinct):
    factor, patience, min_lr, threshold = args
    spec = settings(f"schedule = plateau({factor}, {patience}, min_lr={min_lr}, threshold={threshold})")["schedule"]
    base = 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    torch_plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=factor, patience=patience,
                                                               min_lr=min_lr, threshold=threshold)
    plateau = plateau_for(spec, base)
    assert learning_rate(spec, base, 0, len(losses), plateau) == base
    rates = []
    for epoch, loss in enumerate(losses):
        if epoch == len(losses) // 2:  # a resumed run continues from the saved state
            saved = json.loads(json.dumps(plateau.state(), allow_nan=False))
            plateau = plateau_for(spec, base)
            plateau.load_state(saved)
        plateau.observe(loss)
        torch_plateau.step(loss)
        rates.append(opt.param_groups[0]["lr"])
        assert learning_rate(spec, base, epoch + 1, len(losses), plateau) == rates[-1], epoch
        assert plateau.factor_now == pytest.approx(rates[-1] / base, rel=1e-15)
    assert len({base, *rates}) == distinct  # the losses make it reduce the rate


def test_plateau_defaults_are_torchs():
    sig = inspect.signature(torch.optim.lr_scheduler.ReduceLROnPlateau).parameters
    assert SCHEDULES["plateau"] == {k: sig[k].default for k in ("factor", "patience", "min_lr", "threshold")}


def test_plateau_needs_validation_also_after_a_warmup():
    after_warmup = settings("schedule = warmup(epochs=2, then=plateau(patience=0))")["schedule"]
    assert needs_validation(schedule_spec("plateau")) and needs_validation(after_warmup)
    assert not any(needs_validation(schedule_spec(name)) for name in ("constant", "cosine", "warmup", "cyclic"))
    assert plateau_for(schedule_spec("cosine"), 0.1) is None
    plateau = plateau_for(after_warmup, 0.1)
    plateau.observe(1.0)
    plateau.observe(1.0)   # no improvement with patience 0: ×0.1
    assert learning_rate(after_warmup, 0.1, 1.0, 5, plateau) == pytest.approx(0.05)  # still warming up
    assert learning_rate(after_warmup, 0.1, 2.5, 5, plateau) == pytest.approx(0.01)


def test_plateau_factor_of_one_or_more_is_refused():
    with pytest.raises(NncError) as info:
        settings("schedule = plateau(factor=2)")
    assert info.value.message == "plateau: factor must be below 1, got 2" and info.value.loc is not None
    with pytest.raises(NncError, match="factor must be at least 0 and below 1"):
        Plateau(0.1, factor=1.0)
