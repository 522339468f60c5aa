"""`nnc run`: configure, train, evaluate and record a run in its folder.

Settings come from the model's `train { }` block, overridden by flags; the
run folder (nnc/runfolder.py) records them with a copy of the model. It holds
the checkpoint (after an epoch, atomically), history.csv, metrics.json,
curves.png and, for classifiers, confusion.png. Ctrl-C finishes the current
step, saves a checkpoint and prints the command that resumes the run;
`--resume DIR` restores every setting from the folder and continues exactly
where the run stopped (a flag that contradicts them is refused, except a
larger --epochs, which extends the run). A start that fails leaves no folder
behind. A loss that grows by orders of magnitude is reported once.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import __version__, specs
from ..errors import NncError
from ..fileio import atomic_write
from ..runtime import checkpoint
from ..runtime.checkpoint import CHECKPOINT
from ..specs import Spec
from ..train import runfolder
from ..train.trainer import (
    DIVERGENCE_FACTOR,
    DivergenceWatch,
    EpochProgress,
    Interrupted,
    NonFiniteLoss,
    RunConfig,
    Trainer,
)
from .progress import Progress

SAVE_EVERY_SECONDS = 5.0   # checkpoints after an epoch at most this often (and always at the end)
MAX_EPOCH_LINES = 25       # longer runs print every k-th epoch; history.csv has them all


def config_from(model, args) -> RunConfig:
    s = model.settings
    optimizer = s["optimizer"]
    if args.optimizer:
        block_lr = {"lr": s["lr"]} if s["lr"] is not None else {}  # the train block's `lr = ...` still holds
        optimizer = specs.optimizer_spec(args.optimizer, **block_lr)
    if args.lr is not None:
        optimizer = Spec(optimizer.name, {**optimizer.args, "lr": args.lr})
    schedule = s["schedule"]
    if args.schedule:
        schedule = specs.schedule_spec(args.schedule)
    return RunConfig(
        epochs=args.epochs if args.epochs is not None else s["epochs"],
        batch=args.batch if args.batch is not None else s["batch"],
        optimizer=optimizer, schedule=schedule,
        weight_decay=args.weight_decay if args.weight_decay is not None else s["weight_decay"],
        clip=args.clip if args.clip is not None else s["clip"],
        seed=args.seed if args.seed is not None else s["seed"],
        backend=args.backend or "llvm",
        threads=next(t for t in (args.threads, s["threads"], default_threads()) if t is not None))


MAX_DEFAULT_THREADS = 8  # the kernels of a small model split into more shares than this only add overhead


def default_threads() -> int:
    """Threads when neither --threads nor the train block says: the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_THREADS))


def new_settings(model, args) -> dict:
    """Every setting of a new run: the flags over the train block, as settings.json records them."""
    from ..data.load import TABLE_SUFFIXES

    config = config_from(model, args)
    s = model.settings
    spec = args.data or s["data"]
    if not spec:
        raise NncError(f"no data for model '{model.name}'", hint="give --data mnist (or a .csv / .npz file), "
                       "or `data = ...` in the train block")
    # --data is relative to the working directory, the train block's `data` to the model file
    base = None if args.data else Path(args.model).parent
    target = args.target if args.target is not None else (
        s["target"] if Path(str(spec)).suffix.lower() in TABLE_SUFFIXES else None)
    return {"model_file": str(args.model), "model": model.name,
            "model_sha256": runfolder.source_sha256(model.source.text),
            "data": runfolder.data_location(str(spec), base), "target": target,
            "val": args.val if args.val is not None else s["val"], **runfolder.config_settings(config),
            "check_numerics": bool(args.check_numerics), "grad_stats": bool(args.grad_stats)}


# Flags a resumed run restores from its folder: (attribute, flag, the recorded value it must agree with).
RESTORED_FLAGS = (
    ("model_name", "--model", lambda s: s["model"]),
    ("batch", "--batch", lambda s: s["batch"]),
    ("lr", "--lr", lambda s: s["optimizer"]["args"].get("lr")),
    ("optimizer", "--optimizer", lambda s: s["optimizer"]["name"]),
    ("schedule", "--schedule", lambda s: s["schedule"]["name"]),
    ("weight_decay", "--weight-decay", lambda s: s["weight_decay"]),
    ("clip", "--clip", lambda s: s["clip"]),
    ("seed", "--seed", lambda s: s["seed"]),
    ("threads", "--threads", lambda s: s["threads"]),
    ("backend", "--backend", lambda s: s["backend"]),
    ("data", "--data", lambda s: s["data"]),
    ("target", "--target", lambda s: s["target"]),
    ("val", "--val", lambda s: s["val"]),
    ("check_numerics", "--check-numerics", lambda s: s["check_numerics"]),
    ("grad_stats", "--grad-stats", lambda s: s["grad_stats"]),
)


def resumed_settings(saved: dict, args, folder: Path) -> dict:
    """The recorded settings of the run in `folder`; a flag that contradicts them is refused, but a larger
    --epochs extends the run."""
    if args.out is not None and Path(args.out).resolve() != folder.resolve():
        raise NncError(f"--out {args.out} and --resume {folder} name two folders",
                       hint="a resumed run stays in its folder: drop --out")
    if args.overwrite:
        raise NncError("--overwrite clears a run folder, --resume continues it: choose one")
    for attr, flag, recorded in RESTORED_FLAGS:
        given = getattr(args, attr, None)
        if given is None or given is False:
            continue
        if attr == "data":
            given = runfolder.data_location(given, None)
        was = recorded(saved)
        same = float(given) == float(was) if _is_number(given) and _is_number(was) else given == was
        if not same:
            shown = "true" if given is True else args.data if attr == "data" else given
            raise NncError(f"{flag} {shown} contradicts the run being resumed ({flag.lstrip('-')} "
                           f"{'false' if was is False else was})",
                           hint=f"a resumed run keeps the settings it started with ({folder / runfolder.SETTINGS}): "
                                f"drop {flag}, or start a new run")
    settings = dict(saved)
    if args.epochs is not None:
        if args.epochs < saved["epochs"]:
            raise NncError(f"--epochs {args.epochs} is fewer than the {saved['epochs']} epochs of the run being "
                           "resumed", hint="--epochs can only extend a resumed run; drop it to finish the run")
        settings["epochs"] = args.epochs
    return settings


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_source(folder: Path, model, args) -> None:
    """Refuse to resume with a model file that changed since the run started (see docs: a run is one model)."""
    saved = runfolder.saved_source(folder)
    if saved is None or saved == model.source.text:
        return
    copy = folder / runfolder.SOURCE_COPY
    raise NncError(f"{args.model} has changed since the run in {folder} started",
                   hint=f"the run trains the model as it was, kept in {copy}: continue it with "
                        f"`nnc run {shlex.quote(str(copy))} --resume {shlex.quote(str(folder))}`, or start a new run")


def check_unfinished(saved, settings: dict, args, folder: Path) -> None:
    """Refuse to resume a run that has trained all its epochs, unless --epochs extends it."""
    if saved is None:
        return
    meta = saved[1]
    epoch = int(meta.get("epoch", 0))
    partial = EpochProgress(**meta["epoch_progress"]).step if meta.get("epoch_progress") else 0
    if epoch >= settings["epochs"] and not partial:
        raise NncError(f"the run in {folder} is finished: it trained all {epoch} of its epochs",
                       hint=f"to train it further, give the epochs it should reach: `nnc run "
                            f"{shlex.quote(str(args.model))} --resume {shlex.quote(str(folder))} --epochs N` "
                            f"with N above {epoch}")


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
    from ..data import load_for_model
    from ..model import load

    started = time.perf_counter()
    saved = None
    if args.resume:
        folder = Path(args.resume)
        recorded = runfolder.read_settings(folder)
        model = load(Path(args.model), model=args.model_name or recorded["model"])
        check_source(folder, model, args)
        settings = resumed_settings(recorded, args, folder)
        if (folder / CHECKPOINT).exists():  # none when the run was killed before its first save: start over
            saved = checkpoint.load(folder / CHECKPOINT)
        check_unfinished(saved, settings, args, folder)
        data_spec = settings["data"]
    else:
        if args.out is not None:
            runfolder.check_out(Path(args.out), args.overwrite, str(args.model))  # before any work
        model = load(Path(args.model), model=args.model_name)
        settings = new_settings(model, args)
        data_spec = args.data  # as given, for its messages; settings.json keeps where it was found
    config = runfolder.config_of(settings)
    data = load_for_model(model, data=data_spec, target=settings["target"], val=settings["val"], seed=config.seed)
    trainer = Trainer(model, config)
    trainer.check_numerics = settings["check_numerics"]
    watch, resume_at = DivergenceWatch(), None
    if saved is not None:
        resume_at, watch = restore(trainer, folder / CHECKPOINT, *saved)
    if args.resume:
        runfolder.write_settings(folder, settings)  # --epochs may have extended the run
    else:
        made_root = args.out is None and not runfolder.DEFAULT_ROOT.exists()
        folder = runfolder.create(args.out, model.name, args.overwrite, str(args.model))
        runfolder.write_settings(folder, settings, model.source.text)
    try:
        return _train(args, model, trainer, data, folder, settings, watch, resume_at, started)
    except BaseException:
        if not args.resume and not (folder / CHECKPOINT).exists():  # a start that failed leaves nothing behind
            shutil.rmtree(folder, ignore_errors=True)
            if made_root:
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()
        raise


def _train(args, model, trainer, data, folder: Path, settings: dict, watch: DivergenceWatch,
           resume_at: EpochProgress | None, started: float) -> int:
    config = trainer.config
    progress = Progress(config.epochs, quiet=args.quiet)
    progress.print(f"nnc run: {model.name} on {data.describe()}")
    progress.print(f"  {config.optimizer}, schedule {config.schedule.name}, batch {config.batch}, "
                   f"{config.epochs} epochs, seed {config.seed}, backend {config.backend}"
                   f"{f', {config.threads} threads' if config.backend == 'llvm' else ''} "
                   f"(compiled in {trainer.compile_seconds:.2f}s)")
    if args.resume:
        progress.print(f"  resuming {folder} after epoch {trainer.epoch}" +
                       (f", step {resume_at.step}" if resume_at and resume_at.step else ""))
    progress.print(f"  run folder: {folder}")
    _import_matplotlib_meanwhile()
    n_train = len(next(iter(data.train.values())))
    samples = 0
    train_seconds = 0.0
    every = max(1, -(-config.epochs // MAX_EPOCH_LINES))
    last_save = time.perf_counter()

    def on_step(done: int, total: int, loss: float, accuracy: float | None) -> None:
        progress.step(done, total, loss, accuracy)
        if watch.diverged(loss):
            progress.warn(divergence_warning(watch, loss, trainer.epoch + 1, done, config))

    try:
        with _StopFlag() as stop:
            while trainer.epoch < config.epochs:
                progress.start_epoch(trainer.epoch + 1, config.batch)
                try:
                    h = trainer.train_epoch(data.train, on_step, lambda: stop.set, resume=resume_at)
                except Interrupted as it:
                    save_checkpoint(trainer, folder, watch, it.progress)
                    write_history(folder / runfolder.HISTORY, trainer.history)
                    progress.end_epoch(f"interrupted: checkpoint saved in {folder / CHECKPOINT}")
                    print(f"resume with: nnc run {shlex.quote(str(args.model))} --resume {shlex.quote(str(folder))}")
                    return 130
                resume_at = None
                samples += n_train - n_train % config.batch
                train_seconds += h.seconds
                if data.val is not None and data.n_val:
                    ev = trainer.evaluate(data.val)
                    h.val_loss, h.val_accuracy = ev["loss"], ev.get("accuracy")
                if settings["grad_stats"]:
                    record_grad_stats(trainer, h, data.train, folder)
                trainer.history.append(h)
                final = trainer.epoch == config.epochs
                if final or time.perf_counter() - last_save >= SAVE_EVERY_SECONDS:
                    save_checkpoint(trainer, folder, watch)
                    write_history(folder / runfolder.HISTORY, trainer.history)
                    last_save = time.perf_counter()
                if final or h.epoch % every == 0 or h.epoch == 1 or progress.live:
                    progress.end_epoch(_epoch_line(h, config.epochs))
    except NonFiniteLoss as bad:
        progress.end_epoch("")
        print(f"nnc: training stopped: {bad}", file=sys.stderr)
        located = trainer.locate_nonfinite(data.train, bad)
        if located is not None:
            print(located.format(), file=sys.stderr)
        state, global_step, begun = trainer.epoch_start  # the state before the failing epoch: all finite
        trainer.load_state(state)
        trainer.global_step = global_step
        save_checkpoint(trainer, folder, watch, begun)
        write_history(folder / runfolder.HISTORY, trainer.history)
        print(f"nnc: kept the last good checkpoint (after epoch {trainer.epoch}"
              f"{f', step {begun.step}' if begun.step else ''}) in {folder / CHECKPOINT}", file=sys.stderr)
        return 1
    return finish(args, model, trainer, data, folder, settings, progress, started, samples, train_seconds)


def divergence_warning(watch: DivergenceWatch, loss: float, epoch: int, step: int, config: RunConfig) -> str:
    clip = f"a smaller --clip than {config.clip:g}" if config.clip else "--clip 1"
    return (f"warning: the training loss grew from {watch.first:.4g} at the first step to {loss:.4g} in epoch "
            f"{epoch} (step {step}), more than {DIVERGENCE_FACTOR:g} times: the run is diverging\n"
            f"hint: lower the learning rate (--lr, now {config.lr:g}) or clip the gradients ({clip})")


def record_grad_stats(trainer, h, train: dict, folder: Path) -> None:
    """--grad-stats: this epoch's per-layer gradient norms into the history and grad_stats.csv."""
    from ..train.grad_stats import write_grad_stats

    h.grad_norms = trainer.gradient_norms(train)
    write_grad_stats(folder, trainer.model, [*trainer.history, h])


def save_checkpoint(trainer, folder: Path, watch: DivergenceWatch, progress: EpochProgress | None = None) -> None:
    """The parameters and optimizer state, with what a resumption needs: where in which epoch the run
    stopped, its running sums there, the history and the divergence watch."""
    progress = progress or EpochProgress()
    meta = {"model": trainer.model.name, "epoch": trainer.epoch, "step": progress.step,
            "global_step": trainer.global_step, "seed": trainer.config.seed, "optimizer": str(trainer.config.optimizer),
            "epoch_progress": asdict(progress), "divergence": asdict(watch),
            "history": [asdict(h) for h in trainer.history]}
    checkpoint.save(folder / CHECKPOINT, trainer.state(), meta)


def restore(trainer, path: Path, arrays: dict, meta: dict) -> tuple[EpochProgress, DivergenceWatch]:
    """Load a run's checkpoint into `trainer`: -> (how far the interrupted epoch got, the divergence watch)."""
    from ..train.trainer import EpochStats

    expected = {k: v.shape for k, v in trainer.state().items()}
    checkpoint.check_against(path, arrays, expected)
    trainer.load_state(arrays)
    trainer.epoch = int(meta.get("epoch", 0))
    trainer.global_step = int(meta.get("global_step", 0))
    trainer.history = [EpochStats(**h) for h in meta.get("history", [])]
    return EpochProgress(**meta.get("epoch_progress", {})), DivergenceWatch(**meta.get("divergence", {}))


def finish(args, model, trainer, data, folder, settings, progress, started, samples, train_seconds) -> int:
    task = trainer.task
    has_test = data.test is not None and data.n_test
    test = data.test if has_test else data.train
    which = "test" if has_test else "training"
    result = trainer.evaluate(test, detailed=task.classifies)
    seconds = time.perf_counter() - started
    last = trainer.history[-1] if trainer.history else None
    metrics = {"model": model.name, "data": data.describe(), "epochs": trainer.epoch,
               "test_loss": result["loss"], "train_loss": last.train_loss if last else None,
               "seconds": seconds, "samples_per_second": samples / train_seconds if train_seconds else 0.0,
               "seed": trainer.config.seed, "nnc_version": __version__, "model_sha256": settings["model_sha256"],
               "settings": settings}
    progress.print()
    if not task.classifies:
        metrics.update({f"test_{k}": result[k] for k in ("mse", "mae", "rmse") if k in result})
        progress.print(f"{which} loss {result['loss']:.6g}" + "".join(
            f"  {k.upper()} {result[k]:.6g}" for k in ("mse", "mae", "rmse") if k in result))
        progress.print("fitted parameters:")
        for name, value in trainer.model_params().items():
            progress.print(f"  {name} = {np.array2string(np.asarray(value), precision=4, suppress_small=True)}")
    else:
        metrics.update({"test_accuracy": result["accuracy"], "confusion_matrix": result["confusion"].tolist(),
                        "precision": result["precision"].tolist(), "recall": result["recall"].tolist()})
        if data.class_names:
            metrics["class_names"] = list(data.class_names)
        progress.print(f"{which} loss {result['loss']:.4f}  {which} accuracy {100 * result['accuracy']:.2f}%")
        progress.print(confusion_text(result))
        plot_confusion(folder / "confusion.png", result["confusion"])
    runfolder.write_json(folder / runfolder.METRICS, metrics)
    if args.metrics_json:
        runfolder.write_json(Path(args.metrics_json), metrics)
    if trainer.history:
        plot_curves(folder / "curves.png", trainer.history, task.classifies)
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
