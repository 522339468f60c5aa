"""`nnc run`: configure, train, evaluate and record a run in its folder.

Settings come from the model's `train { }` block, overridden by flags. The
run folder holds the checkpoint (after every epoch, atomically), history.csv,
metrics.json, curves.png and, for classifiers, confusion.png. Ctrl-C finishes
the current step, saves a checkpoint and says how to resume.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np

from . import checkpoint
from .errors import NncError
from .fileio import atomic_write
from .progress import Progress
from .settings import OPTIMIZERS, SCHEDULES, Spec
from .train import Interrupted, NonFiniteLoss, RunConfig, Trainer

CHECKPOINT = "checkpoint.npz"
SAVE_EVERY_SECONDS = 5.0   # checkpoints after an epoch at most this often (and always at the end)
MAX_EPOCH_LINES = 25       # longer runs print every k-th epoch; history.csv has them all


def config_from(model, args) -> RunConfig:
    s = model.settings
    optimizer = s["optimizer"]
    if args.optimizer:
        if args.optimizer not in OPTIMIZERS:
            raise NncError(f"unknown optimizer '{args.optimizer}'", hint=f"choose one of {', '.join(OPTIMIZERS)}")
        block_lr = {"lr": s["lr"]} if s["lr"] is not None else {}  # the train block's `lr = ...` still holds
        optimizer = Spec(args.optimizer, {**OPTIMIZERS[args.optimizer], **block_lr})
    if args.lr is not None:
        optimizer = Spec(optimizer.name, {**optimizer.args, "lr": args.lr})
    schedule = s["schedule"]
    if args.schedule:
        if args.schedule not in SCHEDULES:
            raise NncError(f"unknown schedule '{args.schedule}'", hint=f"choose one of {', '.join(SCHEDULES)}")
        schedule = Spec(args.schedule, dict(SCHEDULES[args.schedule]))
    return RunConfig(
        epochs=args.epochs if args.epochs is not None else s["epochs"],
        batch=args.batch if args.batch is not None else s["batch"],
        optimizer=optimizer, schedule=schedule,
        weight_decay=args.weight_decay if args.weight_decay is not None else s["weight_decay"],
        clip=args.clip if args.clip is not None else s["clip"],
        seed=args.seed if args.seed is not None else s["seed"],
        backend=args.backend, threads=next(t for t in (args.threads, s["threads"], default_threads()) if t is not None))


MAX_DEFAULT_THREADS = 8  # the kernels of a small model split into more shares than this only add overhead


def default_threads() -> int:
    """Threads when neither --threads nor the train block says: the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_THREADS))


def run_folder(model, args) -> Path:
    if args.resume:
        return Path(args.resume)
    if args.out:
        return Path(args.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model.name}-{stamp}"


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_history(path: Path, history) -> None:
    buf = io.StringIO()
    fields = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
              "samples_per_second"]
    w = csv.writer(buf)
    w.writerow(fields)
    for h in history:
        row = asdict(h)
        w.writerow(["" if row[f] is None else (f"{row[f]:.6g}" if isinstance(row[f], float) else row[f])
                    for f in fields])
    write_text(path, buf.getvalue())


# Figures are built with matplotlib's object API (no pyplot): nothing global to close, and
# importing pyplot alone would cost more than half a second of every run.
def plot_curves(path: Path, history, classifier: bool) -> None:
    from matplotlib.figure import Figure

    epochs = [h.epoch for h in history]
    panels = 2 if classifier else 1
    fig = Figure(figsize=(5 * panels, 3.6))
    axes = fig.subplots(1, panels, squeeze=False)
    ax = axes[0][0]
    ax.plot(epochs, [h.train_loss for h in history], "o-", label="train")
    if any(h.val_loss is not None for h in history):
        ax.plot(epochs, [h.val_loss for h in history], "s--", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.legend()
    if classifier:
        ax = axes[0][1]
        ax.plot(epochs, [100 * (h.train_accuracy or 0) for h in history], "o-", label="train")
        if any(h.val_accuracy is not None for h in history):
            ax.plot(epochs, [100 * (h.val_accuracy or 0) for h in history], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("accuracy")
        ax.legend()
    from matplotlib.ticker import MaxNLocator

    for row in axes:
        for a in row:
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    _save_figure(fig, path)


def plot_confusion(path: Path, counts: np.ndarray, labels=None) -> None:
    from matplotlib.figure import Figure

    k = len(counts)
    fig = Figure(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")
    ticks = list(range(k))
    ax.set_xticks(ticks, labels or ticks)
    ax.set_yticks(ticks, labels or ticks)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = counts.max() if counts.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if counts[i, j] > top / 2 else "black")
    ax.set_title("confusion matrix (test set)")
    fig.tight_layout()
    _save_figure(fig, path)


def _import_matplotlib_meanwhile() -> None:
    """Import the plotting code in a thread while training runs: the native steps release the GIL,
    so the half second matplotlib takes to import is not added to the run at the end."""
    threading.Thread(target=importlib.import_module, args=("matplotlib.figure",), daemon=True).start()


def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


class _StopFlag:
    """Ctrl-C sets the flag; the loop stops after the current step."""

    def __init__(self):
        self.set = False
        self._old = None

    def __enter__(self):
        def handler(signum, frame):
            if self.set:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.set = True
        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _epoch_line(h, epochs: int) -> str:
    parts = [f"epoch {h.epoch}/{epochs}", f"loss {h.train_loss:.4f}"]
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
    return "  ".join(parts)


def cmd_run(args) -> int:
    from .data import load_dataset
    from .model import load

    started = time.perf_counter()
    model = load(Path(args.model), model=args.model_name)
    config = config_from(model, args)
    data_spec = args.data or model.settings["data"]
    if not data_spec:
        raise NncError(f"no data for model '{model.name}'", hint="give --data mnist (or a .csv / .npz file), "
                       "or `data = ...` in the train block")
    val = args.val if args.val is not None else model.settings["val"]
    data = load_dataset(str(data_spec), model, target=args.target or model.settings["target"], val=val,
                        seed=config.seed, base_dir=Path(args.model).resolve().parent)
    progress = Progress(config.epochs, quiet=args.quiet)
    folder = run_folder(model, args)
    folder.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(model, config)
    trainer.check_numerics = args.check_numerics
    resumed_step = 0
    if args.resume:
        resumed_step = restore(trainer, folder / CHECKPOINT)
    progress.print(f"nnc run: {model.name} on {data.describe()}")
    progress.print(f"  {config.optimizer}, schedule {config.schedule.name}, batch {config.batch}, "
                   f"{config.epochs} epochs, seed {config.seed}, backend {config.backend}"
                   f"{f', {config.threads} threads' if config.backend == 'llvm' else ''} "
                   f"(compiled in {trainer.compile_seconds:.2f}s)")
    if args.resume:
        progress.print(f"  resuming {folder} after epoch {trainer.epoch}" +
                       (f", step {resumed_step}" if resumed_step else ""))
    progress.print(f"  run folder: {folder}")
    _import_matplotlib_meanwhile()
    n_train = len(next(iter(data.train.values())))
    samples = 0
    train_seconds = 0.0
    every = max(1, -(-config.epochs // MAX_EPOCH_LINES))
    last_save = time.perf_counter()
    try:
        with _StopFlag() as stop:
            while trainer.epoch < config.epochs:
                progress.start_epoch(trainer.epoch + 1, config.batch)
                try:
                    h = trainer.train_epoch(data.train, progress.step, lambda: stop.set, skip=resumed_step)
                except Interrupted as it:
                    save_checkpoint(trainer, folder, step=it.step)
                    write_history(folder / "history.csv", trainer.history)
                    progress.end_epoch(f"interrupted: checkpoint saved in {folder / CHECKPOINT}")
                    print(f"resume with: nnc run {args.model} --resume {folder}")
                    return 130
                resumed_step = 0
                samples += n_train - n_train % config.batch
                train_seconds += h.seconds
                if data.val is not None and data.n_val:
                    ev = trainer.evaluate(data.val)
                    h.val_loss, h.val_accuracy = ev["loss"], ev.get("accuracy")
                if getattr(args, "grad_stats", False):
                    record_grad_stats(trainer, h, data.train, folder)
                trainer.history.append(h)
                final = trainer.epoch == config.epochs
                if final or time.perf_counter() - last_save >= SAVE_EVERY_SECONDS:
                    save_checkpoint(trainer, folder)
                    write_history(folder / "history.csv", trainer.history)
                    last_save = time.perf_counter()
                if final or h.epoch % every == 0 or h.epoch == 1 or progress.live:
                    progress.end_epoch(_epoch_line(h, config.epochs))
    except NonFiniteLoss as bad:
        progress.end_epoch("")
        print(f"nnc: training stopped: {bad}", file=sys.stderr)
        located = trainer.locate_nonfinite(data.train, bad)
        if located is not None:
            print(located.format(), file=sys.stderr)
        trainer.load_state(trainer.epoch_start[0])  # the state before the failing epoch: all finite
        trainer.global_step = trainer.epoch_start[1]
        save_checkpoint(trainer, folder)
        write_history(folder / "history.csv", trainer.history)
        print(f"nnc: kept the last good checkpoint (after epoch {trainer.epoch}) in {folder / CHECKPOINT}",
              file=sys.stderr)
        return 1
    return finish(args, model, trainer, data, folder, progress, started, samples, train_seconds)


def record_grad_stats(trainer, h, train: dict, folder: Path) -> None:
    """--grad-stats: this epoch's per-layer gradient norms into the history and grad_stats.csv."""
    from .viz.grad_stats import write_grad_stats

    h.grad_norms = trainer.gradient_norms(train)
    write_grad_stats(folder, trainer.model, [*trainer.history, h])


def save_checkpoint(trainer, folder: Path, step: int = 0) -> None:
    meta = {"model": trainer.model.name, "epoch": trainer.epoch, "step": step, "global_step": trainer.global_step,
            "seed": trainer.config.seed, "optimizer": str(trainer.config.optimizer),
            "history": [asdict(h) for h in trainer.history]}
    checkpoint.save(folder / CHECKPOINT, trainer.state(), meta)


def restore(trainer, path: Path) -> int:
    from .train import EpochStats

    if not path.exists():
        raise NncError(f"nothing to resume: {path} does not exist", hint="resume a run folder that has a checkpoint")
    arrays, meta = checkpoint.load(path)
    expected = {k: v.shape for k, v in trainer.state().items()}
    checkpoint.check_against(path, arrays, expected)
    trainer.load_state(arrays)
    trainer.epoch = int(meta.get("epoch", 0))
    trainer.global_step = int(meta.get("global_step", 0))
    trainer.history = [EpochStats(**h) for h in meta.get("history", [])]
    return int(meta.get("step", 0))


def finish(args, model, trainer, data, folder, progress, started, samples, train_seconds) -> int:
    task = trainer.task
    has_test = data.test is not None and data.n_test
    test = data.test if has_test else data.train
    which = "test" if has_test else "training"
    result = trainer.evaluate(test, detailed=task.kind != "regression")
    seconds = time.perf_counter() - started
    last = trainer.history[-1] if trainer.history else None
    metrics = {"model": model.name, "data": data.describe(), "epochs": trainer.epoch,
               "test_loss": result["loss"], "train_loss": last.train_loss if last else None,
               "seconds": seconds, "samples_per_second": samples / train_seconds if train_seconds else 0.0}
    progress.print()
    if task.kind == "regression":
        metrics.update({f"test_{k}": result[k] for k in ("mse", "mae", "rmse") if k in result})
        progress.print(f"{which} loss {result['loss']:.6g}" + "".join(
            f"  {k.upper()} {result[k]:.6g}" for k in ("mse", "mae", "rmse") if k in result))
        progress.print("fitted parameters:")
        for name, value in trainer.model_params().items():
            progress.print(f"  {name} = {np.array2string(np.asarray(value), precision=4, suppress_small=True)}")
    else:
        metrics["test_accuracy"] = result["accuracy"]
        progress.print(f"{which} loss {result['loss']:.4f}  {which} accuracy {100 * result['accuracy']:.2f}%")
        progress.print(confusion_text(result))
        plot_confusion(folder / "confusion.png", result["confusion"])
    write_text(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    if args.metrics_json:
        write_text(Path(args.metrics_json), json.dumps(metrics, indent=2) + "\n")
    if trainer.history:
        plot_curves(folder / "curves.png", trainer.history, task.kind != "regression")
    progress.print(f"done in {seconds:.1f}s; wrote {folder}/")
    return 0


def confusion_text(result: dict) -> str:
    counts, precision, recall = result["confusion"], result["precision"], result["recall"]
    k = len(counts)
    width = max(5, len(str(counts.max())) + 1)
    lines = ["confusion matrix (rows: true class, columns: predicted):",
             "      " + "".join(f"{j:>{width}}" for j in range(k)) + "   precision  recall"]
    for i in range(k):
        lines.append(f"  {i:>3} " + "".join(f"{counts[i, j]:>{width}}" for j in range(k)) +
                     f"   {100 * precision[i]:8.2f}%  {100 * recall[i]:6.2f}%")
    return "\n".join(lines)
