"""`nnc run`: train a model on a dataset, evaluate it and record the run in its folder.

Settings come from the model's `train { }` block, overridden by flags
(nnc.train.config); the run folder (nnc.train.runfolder) records them with a
copy of the model, the checkpoint (after an epoch, at most every
SAVE_EVERY_SECONDS, and at the end), history.csv and metrics.json, and gets
the figures (nnc.viz.plots). Ctrl-C finishes the current step, saves a
checkpoint and prints the command that resumes the run; `--resume DIR`
restores every setting from the folder and continues exactly where the run
stopped. A loss that grows by orders of magnitude is reported once; a loss
that is not finite stops the run at the last good checkpoint. A text's run
keeps its vocabulary (vocab.json, for `nnc generate`) and ends with the
validation perplexity; sequence data's result is followed by its naive
baseline (nnc.data). What the run prints is nnc.cli.report's. The trainer and
the native backend are imported when the command runs, not when nnc builds its
parser.
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
from pathlib import Path

from .options import (
    backend_option,
    load_model,
    model_options,
    nonnegative_int,
    positive_float,
    positive_int,
    val_amount,
    window_option,
)
from .progress import Progress
from .report import epoch_line, evaluation_text, fitted_params_text

SAVE_EVERY_SECONDS = 5.0   # checkpoints after an epoch at most this often (and always at the end)
MAX_EPOCH_LINES = 25       # longer runs print every k-th epoch; history.csv has them all


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="train a model on a dataset, evaluate it and record the run")
    model_options(p)
    p.add_argument("--data", metavar="DATA", help="mnist, fashion-mnist, and, or, xor, spiral, sine, FILE.csv, "
                   "FILE.npz or FILE.txt (default: the train block's data)")
    p.add_argument("--target", metavar="COLUMN", help="the CSV column to predict (with --window: the series)")
    window_option(p)
    p.add_argument("--epochs", type=positive_int, help="passes over the training set")
    p.add_argument("--batch", type=positive_int, help="examples per training step")
    p.add_argument("--lr", type=positive_float, help="learning rate")
    p.add_argument("--optimizer", metavar="NAME", help="sgd, momentum, rmsprop, adam or adamw")
    p.add_argument("--schedule", metavar="NAME", help="constant, step, exponential, cosine, warmup or cyclic")
    p.add_argument("--weight-decay", type=float, metavar="L", help="L2 weight decay (decoupled for adamw)")
    p.add_argument("--clip", type=positive_float, metavar="NORM", help="clip gradients to this global norm")
    p.add_argument("--val", type=val_amount, metavar="N", help="validation examples taken from the training "
                   "set: a count or a fraction")
    p.add_argument("--seed", type=nonnegative_int, help="makes the run reproducible")
    p.add_argument("--threads", type=positive_int, help="threads for the native code (default: the train "
                   "block's, else every core this process may use, at most 8)")
    backend_option(p, "native code (default) or the NumPy reference interpreter")
    p.add_argument("--out", metavar="DIR", help="the run folder, new or empty (default runs/<model>-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="with --out: clear the earlier run in DIR first")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR with the settings it recorded "
                   "(a larger --epochs extends it)")
    p.add_argument("--metrics-json", metavar="FILE", help="also write the final metrics here")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")
    p.add_argument("--check-numerics", action="store_true", help="stop at the first NaN or infinity in any output "
                   "(the loss is always checked) and name the node that produced it")
    p.add_argument("--grad-stats", action="store_true", help="record each layer's gradient norm every epoch in "
                   "grad_stats.csv (see nnc viz --heat)")
    p.set_defaults(func=cmd_run)


def config_from(model, args):
    """The RunConfig of `model`'s train block with the flags over it."""
    from ..train.config import run_config

    return run_config(model.settings, epochs=args.epochs, batch=args.batch, lr=args.lr, optimizer=args.optimizer,
                      schedule=args.schedule, weight_decay=args.weight_decay, clip=args.clip, seed=args.seed,
                      backend=args.backend, threads=args.threads)


def cmd_run(args) -> int:
    from ..data import load_for_model
    from ..model import load
    from ..train import runfolder
    from ..train.engines import data_sizes
    from ..train.trainer import DivergenceWatch, Trainer

    started = time.perf_counter()
    saved = None
    if args.resume:
        folder = Path(args.resume)
        recorded = runfolder.read_settings(folder)
        model = load(Path(args.model), model=args.model_name or recorded["model"])
        runfolder.check_source(folder, model, args.model)
        given = {name: args.model_name if name == "model" else getattr(args, name) for name in runfolder.RESTORED}
        settings = runfolder.resumed_settings(recorded, folder, given, epochs=args.epochs, out=args.out,
                                              overwrite=args.overwrite)
        saved = runfolder.saved_checkpoint(folder)  # none when the run was killed before its first save: start over
        runfolder.check_unfinished(saved, settings, args.model, folder)
        data_spec = settings["data"]
    else:
        if args.out is not None:
            runfolder.check_out(Path(args.out), args.overwrite, args.model)  # before any work
        model = load_model(args)
        settings = runfolder.new_settings(model, args.model, config_from(model, args), data=args.data,
                                          target=args.target, val=args.val, check_numerics=args.check_numerics,
                                          grad_stats=args.grad_stats, window=args.window)
        data_spec = args.data  # as given, for its messages; settings.json keeps where it was found
    config = runfolder.config_of(settings)
    data = load_for_model(model, data=data_spec, target=settings["target"], val=settings["val"], seed=config.seed,
                          window=settings.get("window"))
    trainer = Trainer(model, config, sizes=data_sizes(model.graph, data.train))
    trainer.check_numerics = settings["check_numerics"]
    watch, resume_at = DivergenceWatch(), None
    if saved is not None:
        resume_at, watch = runfolder.restore(trainer, folder, saved)
    if args.resume:
        runfolder.write_settings(folder, settings)  # --epochs may have extended the run
        return _train(args, trainer, data, folder, settings, watch, resume_at, started)
    with runfolder.new_run(args.out, model, settings, args.overwrite, args.model) as folder:
        return _train(args, trainer, data, folder, settings, watch, resume_at, started)


def _train(args, trainer, data, folder: Path, settings: dict, watch, resume_at, started: float) -> int:
    """The epochs still to train, with the progress display, Ctrl-C and checkpoints, then the evaluation."""
    from ..train import runfolder
    from ..train.trainer import Interrupted, NonFiniteLoss
    from ..viz.plots import import_matplotlib_meanwhile

    config = trainer.config
    progress = Progress(config.epochs, quiet=args.quiet)
    progress.print(f"nnc run: {trainer.model.name} on {data.describe()}")
    progress.print(f"  {config.optimizer}, schedule {config.schedule.name}, batch {config.batch}, "
                   f"{config.epochs} epochs, seed {config.seed}, backend {config.backend}"
                   f"{f', {config.threads} threads' if config.backend == 'llvm' else ''} "
                   f"(compiled in {trainer.compile_seconds:.2f}s)")
    if args.resume:
        progress.print(f"  resuming {folder} after epoch {trainer.epoch}" +
                       (f", step {resume_at.step}" if resume_at and resume_at.step else ""))
    progress.print(f"  run folder: {folder}")
    runfolder.keep_vocabulary(folder, data, resumed=bool(args.resume))
    import_matplotlib_meanwhile()
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
                    saved = runfolder.save_state(folder, trainer, watch, it.progress)
                    progress.end_epoch(f"interrupted: checkpoint saved in {saved}")
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
                    runfolder.save_state(folder, trainer, watch)
                    last_save = time.perf_counter()
                if final or h.epoch % every == 0 or h.epoch == 1 or progress.live:
                    progress.end_epoch(epoch_line(h, config.epochs))
    except NonFiniteLoss as bad:
        progress.end_epoch("")
        print(f"nnc: training stopped: {bad}", file=sys.stderr)
        located = trainer.locate_nonfinite(data.train, bad)
        if located is not None:
            print(located.format(), file=sys.stderr)
        state, global_step, begun = trainer.epoch_start  # the state before the failing epoch: all finite
        trainer.load_state(state)
        trainer.global_step = global_step
        saved = runfolder.save_state(folder, trainer, watch, begun)
        print(f"nnc: kept the last good checkpoint (after epoch {trainer.epoch}"
              f"{f', step {begun.step}' if begun.step else ''}) in {saved}", file=sys.stderr)
        return 1
    samples_per_second = samples / train_seconds if train_seconds else 0.0
    return _finish(args, trainer, data, folder, settings, progress, started, samples_per_second)


def _finish(args, trainer, data, folder: Path, settings: dict, progress: Progress, started: float,
            samples_per_second: float) -> int:
    """The trained model on the test set (the training set when the data has none): printed, metrics.json
    (and --metrics-json), the figures."""
    from ..train import runfolder
    from ..train.evaluator import final_evaluation
    from ..viz.plots import plot_confusion, plot_curves

    classifies = trainer.task.classifies
    trainer.evaluator.params = trainer.model_params()
    which, result = final_evaluation(trainer.evaluator, data)
    seconds = time.perf_counter() - started
    metrics = runfolder.final_metrics(trainer, data, result, settings, seconds, samples_per_second)
    progress.print()
    progress.print(evaluation_text(which, result, baseline=data.baseline))
    if "confusion" in result:
        plot_confusion(folder / runfolder.CONFUSION, result["confusion"])
    elif not classifies and data.baseline is None:  # a sequence model's parameters are too many to show
        progress.print(fitted_params_text(trainer.model_params()))
    runfolder.write_metrics(folder, metrics, args.metrics_json)
    if trainer.history:
        plot_curves(folder / runfolder.CURVES, trainer.history, classifies)
    progress.print(f"done in {seconds:.1f}s; wrote {folder}/")
    return 0


def divergence_warning(watch, loss: float, epoch: int, step: int, config) -> str:
    from ..train.trainer import DIVERGENCE_FACTOR

    clip = f"a smaller --clip than {config.clip:g}" if config.clip else "--clip 1"
    return (f"warning: the training loss grew from {watch.first:.4g} at the first step to {loss:.4g} in epoch "
            f"{epoch} (step {step}), more than {DIVERGENCE_FACTOR:g} times: the run is diverging\n"
            f"hint: lower the learning rate (--lr, now {config.lr:g}) or clip the gradients ({clip})")


def record_grad_stats(trainer, h, train: dict, folder: Path) -> None:
    """--grad-stats: this epoch's per-layer (and per-step) gradient norms into the history and the CSV files."""
    from ..train.grad_stats import write_grad_stats

    h.grad_norms, h.grad_steps = trainer.gradient_norms(train)
    write_grad_stats(folder, trainer.model, [*trainer.history, h])


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
