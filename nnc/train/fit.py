"""The training loop: epochs over a dataset (or steps of a model without inputs) with validation, early
stopping, checkpoints (the last, the best, snapshots), divergence and non-finite-loss handling and
per-epoch callbacks. `nnc run` and `Model.fit` both run it; what they show goes through a `Reporter`.

`Loop.run` returns an `Outcome`: "done", "stopped early" (early_stop epochs without a better validation
loss; the best parameters are then the model's), "interrupted" (should_stop said so after a step; the
checkpoint saved where the run stopped, so it resumes exactly) or "diverged" (a loss that is not finite:
the state before the failing epoch is kept, and the node that first went bad is named when it can be).
Without a run folder (the Python API's default) nothing is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..passes.optim import LR
from ..runtime import checkpoint
from . import runfolder
from .trainer import DivergenceWatch, EpochStats, Interrupted, NonFiniteLoss

SAVE_EVERY_SECONDS = 5.0   # checkpoints after an epoch at most this often (and always after the first and at the end)
BEST = "best.npz"          # the parameters of the epoch with the lowest validation loss (early_stop, val)
TRAJECTORY = "trajectory.csv"
MAX_SHOWN_VALUES = 6       # a model without inputs with at most this many parameter values shows them each step


class Reporter:
    """What a training loop tells whoever watches it; the default says nothing."""

    def start_epoch(self, epoch: int, batch: int) -> None: ...
    def step(self, done: int, total: int, loss: float, accuracy: float | None) -> None: ...
    def epoch_end(self, stats: EpochStats, shown: bool) -> None: ...
    def warn(self, text: str) -> None: ...
    def say(self, text: str) -> None: ...


@dataclass
class Outcome:
    status: str                     # "done", "stopped early", "interrupted" or "diverged"
    samples_per_second: float = 0.0
    saved: Path | None = None       # the checkpoint written when interrupted or diverged
    located: NncError | None = None  # diverged: the first node whose value went bad, when found
    message: str = ""


def epoch_line(h: EpochStats, epochs: int) -> str:
    """One epoch's statistics as `nnc run` prints them."""
    parts = [f"epoch {h.epoch}/{epochs}"]
    if h.losses:
        parts.extend(f"{name} {value:.4f}" for name, value in h.losses.items())
    else:
        parts.append(f"loss {h.train_loss:.4f}")
    if h.train_accuracy is not None:
        parts.append(f"acc {100 * h.train_accuracy:.2f}%")
    if h.val_loss is not None:
        parts.append(f"val_loss {h.val_loss:.4f}")
    if h.val_accuracy is not None:
        parts.append(f"val_acc {100 * h.val_accuracy:.2f}%")
    parts.append(f"{h.samples_per_second / 1000:.1f}k samples/s" if h.samples_per_second >= 1000
                 else f"{h.samples_per_second:.0f} samples/s")
    parts.append(f"{h.seconds:.1f}s")
    if h.grad_norms:
        parts.append("‖∇‖ " + " ".join(f"{k} {v:.2g}" for k, v in h.grad_norms.items()))
    for label, norms in h.grad_steps.items():   # back through time: from the last step to the first
        parts.append(f"‖∇{label}‖ step {len(norms)} {norms[-1]:.2g} → step 1 {norms[0]:.2g}")
    return "  ".join(parts)


class EarlyStopping:
    """Keras's EarlyStopping(monitor="val_loss", patience, restore_best_weights=True): stop after `patience`
    epochs without a validation loss below the best; the best epoch's parameters are kept."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best: float | None = None
        self.best_epoch = 0
        self.best_params: dict | None = None
        self.waited = 0

    def observe(self, epoch: int, val_loss: float, params) -> bool:
        """After an epoch: is this the best so far (`params()` is then kept)? Sets `stop` when patience ran out."""
        if self.best is None or val_loss < self.best:
            self.best, self.best_epoch, self.best_params, self.waited = val_loss, epoch, params(), 0
            return True
        self.waited += 1
        return False

    @property
    def stop(self) -> bool:
        return self.patience is not None and self.waited >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "waited": self.waited}

    def load_state(self, state: dict, params: dict | None) -> None:
        self.best, self.best_epoch, self.waited = state["best"], state["best_epoch"], state["waited"]
        self.best_params = params


def needs_validation(config) -> str | None:
    """The setting that cannot work without validation data, if any."""
    from .schedules import needs_validation as schedule_needs

    if config.early_stop is not None:
        return f"early_stop = {config.early_stop}"
    if schedule_needs(config.schedule):
        return f"schedule = {config.schedule.name}"
    return None


def check_validation(config, data) -> None:
    """early_stop and a plateau schedule need validation data: an error before anything is compiled."""
    what = needs_validation(config)
    if what and not (data.val is not None and data.n_val):
        raise NncError(f"{what} watches the validation loss, but the run has no validation data",
                       hint="hold some out: val = 0.1 in the train block or --val 0.1")


class Loop:
    """The epochs still to train of `trainer` on `data` (a nnc.data BoundData), recorded in `folder`."""

    def __init__(self, trainer, data, folder: Path | None = None, reporter: Reporter | None = None, *,
                 watch: DivergenceWatch | None = None, resume_at=None, grad_stats: bool = False,
                 callbacks=(), lines: int = 25):
        self.trainer, self.data, self.folder = trainer, data, folder
        self.reporter = reporter or Reporter()
        self.watch = watch or DivergenceWatch()
        self.resume_at = resume_at
        self.grad_stats = grad_stats
        self.callbacks = list(callbacks)
        self.every = max(1, -(-trainer.config.epochs // lines))
        self.early = EarlyStopping(trainer.config.early_stop)
        self.has_val = data.val is not None and bool(data.n_val)
        check_validation(trainer.config, data)
        if folder is not None and trainer.epoch and (folder / BEST).exists() and self.has_val:
            params, meta = checkpoint.load(folder / BEST)
            self.early.load_state(meta["early_stop"], params)

    def run(self, should_stop=lambda: False) -> Outcome:
        trainer, data, config = self.trainer, self.data, self.trainer.config
        n_train = len(next(iter(data.train.values())))
        samples, train_seconds, last_save = 0, 0.0, None   # the first epoch saves: a killed run can resume

        def on_step(done: int, total: int, loss: float, accuracy: float | None) -> None:
            self.reporter.step(done, total, loss, accuracy)
            if self.watch.diverged(loss):
                self.reporter.warn(divergence_warning(self.watch, loss, trainer.epoch + 1, done, config))

        try:
            while trainer.epoch < config.epochs:
                self.reporter.start_epoch(trainer.epoch + 1, config.batch)
                try:
                    h = trainer.train_epoch(data.train, on_step, should_stop, resume=self.resume_at)
                except Interrupted as it:
                    saved = runfolder.save_state(self.folder, trainer, self.watch, it.progress) if self.folder else None
                    return Outcome("interrupted", saved=saved)
                self.resume_at = None
                samples += n_train - n_train % config.batch
                train_seconds += h.seconds
                if self.has_val:
                    ev = trainer.evaluate(data.val)
                    h.val_loss, h.val_accuracy = ev["loss"], ev.get("accuracy")
                    trainer.observe_validation(h.val_loss)
                if self.grad_stats:
                    self.record_grad_stats(h)
                trainer.history.append(h)
                stop = self.after_epoch(h)
                final = trainer.epoch == config.epochs or stop
                if self.folder is not None and (final or last_save is None
                                                or time.perf_counter() - last_save >= SAVE_EVERY_SECONDS):
                    runfolder.save_state(self.folder, trainer, self.watch)
                    last_save = time.perf_counter()
                self.reporter.epoch_end(h, final or h.epoch % self.every == 0 or h.epoch == 1)
                for callback in self.callbacks:
                    callback(h)
                if stop:
                    trainer.load_state(self.early.best_params)
                    return Outcome("stopped early", samples / train_seconds if train_seconds else 0.0,
                                   message=f"stopped early after epoch {trainer.epoch}: no better validation loss "
                                           f"for {self.early.patience} epochs; kept epoch {self.early.best_epoch}'s "
                                           f"parameters (val_loss {self.early.best:.4f})")
        except NonFiniteLoss as bad:
            located = trainer.locate_nonfinite(data.train, bad)
            state, global_step, begun = trainer.epoch_start  # the state before the failing epoch: all finite
            trainer.load_state(state)
            trainer.global_step = global_step
            saved = runfolder.save_state(self.folder, trainer, self.watch, begun) if self.folder else None
            return Outcome("diverged", saved=saved, located=located, message=str(bad))
        return Outcome("done", samples / train_seconds if train_seconds else 0.0)

    def after_epoch(self, h: EpochStats) -> bool:
        """The best parameters and snapshots kept; whether to stop early."""
        trainer = self.trainer
        if self.has_val and self.early.observe(h.epoch, h.val_loss, trainer.model_params) and self.folder:
            checkpoint.save(self.folder / BEST, self.early.best_params,
                            {"model": trainer.model.name, "epoch": h.epoch, "val_loss": h.val_loss,
                             "early_stop": self.early.state()})
        every = trainer.config.snapshots
        if every and self.folder is not None and h.epoch % every == 0:
            checkpoint.save(self.folder / f"snapshot_epoch_{h.epoch}.npz", trainer.model_params(),
                            {"model": trainer.model.name, "epoch": h.epoch})
        if self.has_val and self.early.stop:
            return True
        return False

    def record_grad_stats(self, h: EpochStats) -> None:
        """This epoch's per-layer (and per-step) gradient norms into the history and the CSV files."""
        from .grad_stats import write_grad_stats

        h.grad_norms, h.grad_steps = self.trainer.gradient_norms(self.data.train)
        if self.folder is not None:
            write_grad_stats(self.folder, self.trainer.model, [*self.trainer.history, h])


def divergence_warning(watch, loss: float, epoch: int, step: int, config) -> str:
    from .trainer import DIVERGENCE_FACTOR

    clip = f"a smaller --clip than {config.clip:g}" if config.clip else "--clip 1"
    return (f"warning: the training loss grew from {watch.first:.4g} at the first step to {loss:.4g} in epoch "
            f"{epoch} (step {step}), more than {DIVERGENCE_FACTOR:g} times: the run is diverging\n"
            f"hint: lower the learning rate (--lr, now {config.lr:g}) or clip the gradients ({clip})")


# ---- a model without inputs: steps on its parameters ---------------------------------------------------


def optimize(trainer, steps: int, folder: Path | None = None, reporter: Reporter | None = None) -> list[dict]:
    """`steps` steps of a model without inputs (gradient descent on a function of its parameters): each
    step's loss and parameters before the step (the start included), also as trajectory.csv."""
    reporter = reporter or Reporter()
    names = list(trainer.model.graph.params)
    params = trainer.model_params()
    small = sum(params[n].size for n in names) <= MAX_SHOWN_VALUES   # else each line shows the loss only
    every = max(1, -(-steps // 25))
    rows, latest = [], {}
    lr = np.zeros((), np.float32)
    for i in range(steps + 1):
        params = trainer.model_params()
        which = trainer.cycle[trainer.global_step % len(trainer.cycle)] or "loss"
        if i == steps:   # the point reached: its loss without stepping again
            which, loss = "loss", trainer.loss_now()
        else:
            lr[...] = trainer.lr_at(i / steps)
            loss = trainer.step_once({LR: lr})
        rows.append({"step": i, "loss": loss, "which": which, **{n: params[n].copy() for n in names}})
        latest[which] = loss
        if i % every == 0 or i == steps:
            reporter.say(trajectory_line(rows[-1], names if small else [], latest if i < steps else None))
        if not np.isfinite(loss):
            reporter.warn(f"warning: the loss is {loss} at step {i}: the steps diverge\n"
                          f"hint: lower the learning rate (--lr, now {trainer.config.lr:g})")
            break
    if folder is not None:
        write_trajectory(folder / TRAJECTORY, rows, names if small else [])
    return rows


def trajectory_line(row: dict, names: list[str], losses: dict | None = None) -> str:
    """A step's parameters (when `names`) and its loss, or the latest value of each of several `losses`."""
    values = "".join(f"  {n} = {_value_text(row[n])}" for n in names)
    shown = losses if losses and len(losses) > 1 else {row["which"]: row["loss"]}
    return f"step {row['step']:>3}{values}" + "".join(f"  {k} {v:.6g}" for k, v in shown.items())


def _value_text(v: np.ndarray) -> str:
    v = np.asarray(v)
    if v.size == 1:
        return f"{float(v.reshape(())):.6g}"
    if v.size <= 6:
        return "[" + ", ".join(f"{float(x):.4g}" for x in v.ravel()) + "]"
    return f"{v.shape} mean {float(v.mean()):.4g}"


def write_trajectory(path: Path, rows: list[dict], names: list[str]) -> None:
    from ..fileio import atomic_write

    columns = [f"{n}[{i}]" if rows[0][n].size > 1 else n for n in names for i in range(rows[0][n].size)]
    # (a model's many parameters are not written per step: the loss is)
    lines = [",".join(["step", "loss", "of", *columns])]
    for row in rows:
        flat = [f"{float(x):.9g}" for n in names for x in np.asarray(row[n]).ravel()]
        lines.append(",".join([str(row["step"]), f"{row['loss']:.9g}", row["which"], *flat]))
    atomic_write(path, lambda f: f.write(("\n".join(lines) + "\n").encode("utf-8")))
