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

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ..text import value_text
from .options import (
    backend_option,
    classes_option,
    load_model,
    loss_option,
    model_options,
    nonnegative_int,
    optimizer_option,
    positive_float,
    positive_int,
    schedule_option,
    threads_options,
    val_amount,
    window_option,
)
from .progress import Progress
from .report import evaluation_text, fitted_params_text

DEFAULT_STEPS = 100        # a model without inputs, when neither --steps nor the train block says
GRID = 41                  # the contour plot of two parameters evaluates the loss on GRID × GRID points
MAX_EPOCH_LINES = 25       # longer runs print every k-th epoch; history.csv has them all


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="train a model on a dataset, evaluate it and record the run")
    model_options(p)
    p.add_argument("--data", metavar="DATA", help="mnist, fashion-mnist, and, or, xor, spiral, sine, FILE.csv, "
                   "FILE.npz or FILE.txt (default: the train block's data)")
    p.add_argument("--target", metavar="COLUMN", help="the CSV column to predict (with --window: the series)")
    loss_option(p)
    window_option(p)
    p.add_argument("--epochs", type=positive_int, help="passes over the training set")
    p.add_argument("--batch", type=positive_int, help="examples per training step")
    p.add_argument("--lr", type=positive_float, help="learning rate")
    optimizer_option(p)
    schedule_option(p)
    p.add_argument("--weight-decay", type=float, metavar="L", help="L2 weight decay (decoupled for adamw)")
    p.add_argument("--clip", type=positive_float, metavar="NORM", help="clip gradients to this global norm")
    p.add_argument("--val", type=val_amount, metavar="N", help="validation examples taken from the training "
                   "set: a count or a fraction")
    p.add_argument("--steps", type=positive_int, help="a model without inputs: steps of gradient descent on its "
                   f"parameters (default: the train block's, else {DEFAULT_STEPS})")
    p.add_argument("--init-from", metavar="RUN", help="start from the parameters of this run folder or checkpoint "
                   "that have the same names (transfer learning); the others start as declared")
    p.add_argument("--freeze", metavar="PREFIXES", help="comma-separated parameter-name prefixes training leaves "
                   "unchanged (e.g. h1,h2)")
    p.add_argument("--early-stop", type=positive_int, metavar="N", help="stop after N epochs without a better "
                   "validation loss and keep the best epoch's parameters (needs --val)")
    p.add_argument("--snapshots", type=positive_int, metavar="N", help="keep the parameters every N epochs "
                   "(snapshot_epoch_N.npz: members of an ensemble)")
    p.add_argument("--augment", type=augmentations, metavar="LIST", help="random transforms of each training "
                   "batch's images, in order: flip, crop(pad=4), shift(max=2), scale(min=0.9,max=1.1), "
                   "noise(std=0.05), e.g. flip,crop(pad=2); none for none (default: the train block's)")
    tta_option(p)
    classes_option(p)
    p.add_argument("--test", type=val_amount, metavar="N", help="data without a test part (a table): test examples "
                   "held out of it at random, a count or a fraction")
    p.add_argument("--train-size", type=positive_int, metavar="N", help="train on a seeded subset of N training "
                   "examples (taken after the validation and test examples are held out)")
    p.add_argument("--label-noise", type=probability, metavar="P", help="replace each training label, with "
                   "probability P, by another class drawn at random (seeded); validation and test labels stay")
    p.add_argument("--shuffle-labels", action="store_true", help="permute the training labels (random labels: "
                   "what a network can memorize)")
    p.add_argument("--standardize", action="store_true", help="scale the features to zero mean and unit variance "
                   "with the training part's statistics (kept with the run for nnc predict and nnc eval)")
    p.add_argument("--folds", type=positive_int, metavar="K", help="K-fold cross-validation: train K models, "
                   "each scored on the fold it did not see; report each and the mean ± std")
    p.add_argument("--seed", type=nonnegative_int, help="makes the run reproducible")
    threads_options(p)
    backend_option(p, "native code (default) or the NumPy reference interpreter")
    p.add_argument("--out", metavar="DIR", help="the run folder, new or empty (default runs/<model>-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="with --out: clear the earlier run in DIR first")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR with the settings it recorded "
                   "(a larger --epochs extends it)")
    p.add_argument("--metrics-json", metavar="FILE", help="also write the final metrics here")
    p.add_argument("--workers", type=positive_int, metavar="N", help="data-parallel training on N processes of this "
                   "machine under MPI's mpirun, each on its share of every batch (mpirun -n N nnc run ... and srun "
                   "do the same across machines; needs pip install -e '.[mpi]')")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")
    p.add_argument("--check-numerics", action="store_true", help="stop at the first NaN or infinity in any output "
                   "(the loss is always checked) and name the node that produced it")
    p.add_argument("--grad-stats", action="store_true", help="record each layer's gradient norm every epoch in "
                   "grad_stats.csv (see nnc viz --heat)")
    p.set_defaults(func=cmd_run)


def tta_option(p) -> None:
    """--tta (nnc run, nnc eval --data): test-time augmentation of the final evaluation."""
    p.add_argument("--tta", type=test_time_augmentations, metavar="LIST", help="test-time augmentation of the final "
                   "evaluation: a classifier's probabilities averaged over views of each image: flip (and its "
                   "mirror), crops(pad=4) (the centre and four corner crops), or flip,crops; none for none "
                   "(default: the train block's)")


def augmentations(text: str) -> tuple:
    """--augment: Specs of nnc.specs.AUGMENTATIONS (nnc.specs.parse_specs); a mistake is argparse's (exit 2)."""
    from ..specs import AUGMENTATIONS

    return _specs(text, AUGMENTATIONS, "augmentation")


def test_time_augmentations(text: str) -> tuple:
    """--tta: Specs of nnc.specs.TTA."""
    from ..specs import TTA

    return _specs(text, TTA, "test-time augmentation")


def _specs(text: str, table: dict, noun: str) -> tuple:
    from ..errors import NncError
    from ..specs import parse_specs

    try:
        return parse_specs(text, table, noun)
    except NncError as err:
        raise argparse.ArgumentTypeError(err.message + (f"\nhint: {err.hint}" if err.hint else "")) from None


def probability(text: str) -> float:
    """--label-noise: a probability, 0 to 1."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability such as 0.2, got {text!r}") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability from 0 to 1, got {text}")
    return v


def config_from(model, args):
    """The RunConfig of `model`'s train block with the flags over it (a Namespace made without --augment and
    --tta, as a script may make one, keeps the train block's)."""
    from ..train.config import run_config

    return run_config(model.settings, epochs=args.epochs, batch=args.batch, lr=args.lr, optimizer=args.optimizer,
                      schedule=args.schedule, weight_decay=args.weight_decay, clip=args.clip, seed=args.seed,
                      backend=args.backend, threads=args.threads, steps=args.steps,
                      freeze=args.freeze.split(",") if args.freeze else None, early_stop=args.early_stop,
                      snapshots=args.snapshots, augment=getattr(args, "augment", None), tta=getattr(args, "tta", None))


def cmd_run(args) -> int:
    """One process, or one rank of a data-parallel run (nnc.train.distributed): only rank 0 prints and writes the
    run folder; a rank that fails names itself and the cause and stops every rank."""
    from ..train import distributed

    if (getattr(args, "workers", None) or 1) > 1 and distributed.launched_size() == 1:
        return distributed.launch(args.workers, distributed.without_workers(sys.argv[1:]))
    comm = distributed.world()
    if comm is None:
        return _run(args, None)
    if args.threads is None:
        from ..train.config import usable_cores

        args.threads = distributed.threads_per_rank(comm.size, usable_cores())
    try:
        return _run(args, comm)
    except BaseException as err:   # noqa: BLE001 - any failure of one rank must stop them all, named
        comm.fail(err)
        raise


def _run(args, comm) -> int:
    from contextlib import nullcontext

    from ..data import load_for_model
    from ..errors import NncError
    from ..model import load
    from ..train import runfolder
    from ..train.engines import data_sizes
    from ..train.fit import check_validation
    from ..train.trainer import DivergenceWatch, Trainer
    from ..train.transfer import init_from

    started = time.perf_counter()
    saved = None
    if args.resume:
        folder = Path(args.resume)
        recorded = runfolder.read_settings(folder)
        args.loss = _resumed_loss(args, recorded, folder)
        model = load_model(args) if args.loss else load(Path(args.model), model=args.model_name or recorded["model"])
        runfolder.check_source(folder, model, args.model)
        given = {name: args.model_name if name == "model" else getattr(args, name) for name in runfolder.RESTORED}
        settings = runfolder.resumed_settings(recorded, folder, given, epochs=args.epochs, out=args.out,
                                              overwrite=args.overwrite)
        saved = runfolder.saved_checkpoint(folder)  # none when the run was killed before its first save: start over
        runfolder.check_unfinished(saved, settings, args.model, folder)
        data_spec = settings["data"]
    else:
        if args.out is not None and not (comm and comm.rank):
            runfolder.check_out(Path(args.out), args.overwrite, args.model)  # before any work
        model = load_model(args)
        settings = runfolder.new_settings(model, args.model, config_from(model, args), data=args.data,
                                          target=args.target, val=args.val, check_numerics=args.check_numerics,
                                          grad_stats=args.grad_stats, window=args.window,
                                          classes=args.classes, test=args.test, train_size=args.train_size,
                                          label_noise=args.label_noise, shuffle_labels=args.shuffle_labels,
                                          standardize=args.standardize)
        settings["folds"] = args.folds or model.settings.get("folds")
        if args.loss:   # an imported .onnx model's: --resume loads the model with it again
            settings["loss"] = args.loss
        data_spec = args.data  # as given, for its messages; settings.json keeps where it was found
    config = runfolder.config_of(settings)
    writes = not (comm and comm.rank)   # one process, or rank 0 of several
    progress = Progress(config.epochs, quiet=args.quiet or not writes)
    progress.print(f"nnc run: {model.name} ({args.model})")   # before the data loads and the code compiles
    if not model.graph.inputs:   # gradient descent on a function of the parameters: no data
        progress.status("  compiling the training step ...")
        trainer = Trainer(model, config, comm=comm)
        with runfolder.new_run(args.out, model, settings, args.overwrite, args.model) as folder:
            return _optimize(args, trainer, folder, settings, started, progress)
    progress.status(f"  loading {data_spec or settings['data']} ...")
    data = load_for_model(model, data=data_spec, target=settings["target"], val=settings["val"], seed=config.seed,
                          window=settings.get("window"), classes=settings.get("classes"), test=settings.get("test"),
                          train_size=settings.get("train_size"), label_noise=settings.get("label_noise"),
                          shuffle_labels=settings.get("shuffle_labels"), standardize=settings.get("standardize"),
                          statistics=runfolder.standardization_of(folder) if args.resume else None)
    progress.print(f"  data {data.describe().removeprefix('data ')}")
    if settings.get("folds"):
        if comm is not None:
            raise NncError("--folds trains its models in one process, not on workers", hint="leave out --workers")
        with runfolder.new_run(args.out, model, settings, args.overwrite, args.model) as folder:
            return _cross_validate(args, model, config, data, settings, folder, progress, started)
    check_validation(config, data)
    progress.status(f"  compiling the training step{'s' if len(model.graph.losses) > 1 else ''} ...")
    trainer = Trainer(model, config, sizes=data_sizes(model.graph, data.train), comm=comm)
    trainer.check_numerics = settings["check_numerics"]
    transfer = init_from(trainer, args.init_from) if getattr(args, "init_from", None) and not args.resume else None
    watch, resume_at = DivergenceWatch(), None
    if saved is not None:
        resume_at, watch = runfolder.restore(trainer, folder, saved)
    if args.resume:
        if writes:
            runfolder.write_settings(folder, settings)  # --epochs may have extended the run
        return _train(args, trainer, data, folder if writes else None, settings, watch, resume_at, started, progress)
    with (runfolder.new_run(args.out, model, settings, args.overwrite, args.model) if writes
          else nullcontext(None)) as folder:
        return _train(args, trainer, data, folder, settings, watch, resume_at, started, progress,
                      transfer.describe(args.init_from) if transfer else None)


def _resumed_loss(args, recorded: dict, folder: Path) -> str | None:
    """The --loss of the run being resumed (an imported .onnx model's); a different one given again is refused."""
    from ..errors import NncError
    from ..train.runfolder import SETTINGS

    was = recorded.get("loss")
    if args.loss and was and args.loss != was:
        raise NncError(f"--loss {args.loss} contradicts the run being resumed (loss {was})",
                       hint=f"a resumed run keeps the settings it started with ({folder / SETTINGS}): "
                            "drop --loss, or start a new run")
    return args.loss or was


def _train(args, trainer, data, folder: Path | None, settings: dict, watch, resume_at, started: float, progress,
           transferred: str | None = None) -> int:
    """The epochs still to train (nnc.train.fit.Loop) with the progress display and Ctrl-C, then the
    evaluation; without a folder (a data-parallel run's ranks but 0) nothing is written or printed."""
    from ..train import runfolder
    from ..train.fit import Loop

    config = trainer.config
    _header(progress, trainer, f"batch {config.batch}, {config.epochs} epochs")
    if args.resume:
        progress.print(f"  resuming {folder} after epoch {trainer.epoch}" +
                       (f", step {resume_at.step}" if resume_at and resume_at.step else ""))
    progress.print(f"  run folder: {folder}")
    if transferred:
        progress.print(transferred)
    if folder is not None and getattr(trainer, "comm", None) is not None:
        trainer.comm.report("resume", f"nnc run {shlex.quote(str(args.model))} --resume {shlex.quote(str(folder))} "
                                      f"--workers {trainer.comm.size}")
    if folder is not None:
        runfolder.keep_vocabulary(folder, data, resumed=bool(args.resume))
        runfolder.keep_standardization(folder, data)
    loop = Loop(trainer, data, folder, _ProgressReporter(progress), watch=watch, resume_at=resume_at,
                grad_stats=settings["grad_stats"], lines=MAX_EPOCH_LINES,
                callbacks=[_SampleGrids(trainer, data, folder)] if samples_shape(trainer) and folder else [])
    with _StopFlag() as stop:
        outcome = loop.run(lambda: stop.set)
    if folder is None and outcome.status in ("interrupted", "diverged"):
        return 130 if outcome.status == "interrupted" else 1
    if outcome.status == "interrupted":
        progress.end_epoch(f"interrupted: checkpoint saved in {outcome.saved}")
        print(f"resume with: nnc run {shlex.quote(str(args.model))} --resume {shlex.quote(str(folder))}")
        return 130
    if outcome.status == "diverged":
        progress.end_epoch("")
        print(f"nnc: training stopped: {outcome.message}", file=sys.stderr)
        if outcome.located is not None:
            print(outcome.located.format(), file=sys.stderr)
        begun = outcome.saved and trainer.epoch
        print(f"nnc: kept the last good checkpoint (after epoch {begun or 0}) in {outcome.saved}", file=sys.stderr)
        return 1
    if outcome.message:
        progress.print(outcome.message)
    return _finish(args, trainer, data, folder, settings, progress, started, outcome.samples_per_second)


def _cross_validate(args, model, config, data, settings: dict, folder: Path, progress, started: float) -> int:
    """--folds K: K models trained from the same initialization, each on all folds but one and scored on that
    one; each fold's result, then the mean ± standard deviation; metrics.json holds them all."""
    from ..train import runfolder
    from ..train.engines import data_sizes
    from ..train.evaluator import final_evaluation
    from ..train.fit import Loop
    from ..train.folds import FoldResult, check_folds, fold_data, fold_indices, summary
    from ..train.trainer import Trainer

    k = settings["folds"]
    check_folds(k, data)
    results = []
    for i, held in enumerate(fold_indices(data.n_train, k, config.seed), 1):
        part = fold_data(data, held)
        trainer = Trainer(model, config, sizes=data_sizes(model.graph, part.train))
        if i == 1:
            _header(progress, trainer, f"batch {config.batch}, {config.epochs} epochs, {k} folds")
            progress.print(f"  run folder: {folder}")
        (folder / f"fold_{i}").mkdir()
        with _StopFlag() as stop:
            outcome = Loop(trainer, part, folder / f"fold_{i}", _QuietReporter(progress)).run(lambda: stop.set)
        if outcome.status in ("interrupted", "diverged"):
            progress.print(f"fold {i}: {outcome.status} {outcome.message}".rstrip())
            return 130 if outcome.status == "interrupted" else 1
        trainer.evaluator.params = trainer.model_params()
        _, result = final_evaluation(trainer.evaluator, part)
        results.append(FoldResult(i, part.n_train, len(held), result))
        progress.print(f"fold {i}/{k}: trained on {part.n_train:,}, scored on {len(held):,}: {_scores(result)}")
    totals = summary(results)
    shown = "  ".join(f"{name} {_pm(name, s)}" for name, s in totals.items() if name in ("accuracy", "loss", "mse"))
    progress.print()
    progress.print(f"cross-validation, {k} folds: {shown} (mean ± std over the folds)")
    seconds = time.perf_counter() - started
    runfolder.write_metrics(folder, {"model": model.name, "folds": k, "cross_validation": totals,
                                     "settings": settings, "seconds": seconds}, args.metrics_json)
    progress.print(f"done in {seconds:.1f}s; wrote {folder}/")
    return 0


def _scores(result: dict) -> str:
    parts = [f"accuracy {100 * result['accuracy']:.2f}%"] if "accuracy" in result else []
    parts += [f"{name} {result[name]:.4g}" for name in ("loss", "mse", "mae") if name in result]
    return ", ".join(parts)


def _pm(name: str, s: dict) -> str:
    if name == "accuracy":
        return f"{100 * s['mean']:.2f}% ± {100 * s['std']:.2f}%"
    return f"{s['mean']:.4g} ± {s['std']:.2g}"


def _header(progress, trainer, length: str) -> None:
    from ..specs import specs_text

    config = trainer.config
    losses = f", losses {' → '.join(n for n in trainer.cycle)}" if len(trainer.engines) > 1 else ""
    frozen = f", frozen {', '.join(config.freeze)}" if config.freeze else ""
    augment = f", augment {specs_text(config.augment)}" if config.augment else ""
    if getattr(trainer, "comm", None) is not None:
        augment += f", {trainer.comm.size} workers"
    progress.print(f"  {config.optimizer}, schedule {config.schedule.name}, {length}, seed {config.seed}, "
                   f"backend {config.backend}{f', {config.threads} threads' if config.backend == 'llvm' else ''}"
                   f"{losses}{frozen}{augment} (compiled in {trainer.compile_seconds:.2f}s)")


SAMPLES = 64   # generated images per grid


def samples_shape(trainer) -> tuple | None:
    """A generative model's (a GAN's) output as images, [H, W] or [1, H, W], or None."""
    from ..runtime.task import GENERATIVE

    if trainer.task.kind != GENERATIVE or trainer.task.output is None:
        return None
    shape = trainer.model.graph.type_of(trainer.model.graph.outputs[trainer.task.output]).shape[1:]
    images = len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)
    return shape if images and all(isinstance(d, int) and d >= 8 for d in shape[-2:]) else None


class _SampleGrids:
    """After each epoch: samples_epoch_N.png, SAMPLES generated images from the same noise every epoch (the
    step seed is fixed), so the grids show the generator learning."""

    def __init__(self, trainer, data, folder: Path):
        self.trainer, self.folder = trainer, folder
        # the inputs only size the batch: the samples are drawn from noise
        self.inputs = {k: np.zeros((SAMPLES, *v.shape[1:]), v.dtype) for k, v in data.train.items()}

    def __call__(self, stats) -> None:
        from ..runtime.execute import run_graph
        from ..viz.plots import save_image_grid

        g = self.trainer.model.graph
        node = g.outputs[self.trainer.task.output]
        images = run_graph(g, self.inputs, self.trainer.model_params(), [node], backend=self.trainer.config.backend,
                           seed=0)[node]
        save_image_grid(self.folder / f"samples_epoch_{stats.epoch}.png", images)


class _ProgressReporter:
    """nnc.train.fit's Reporter on the terminal's Progress."""

    def __init__(self, progress):
        self.progress = progress

    def start_epoch(self, epoch: int, batch: int) -> None:
        self.progress.start_epoch(epoch, batch)

    def step(self, done, total, loss, accuracy) -> None:
        self.progress.step(done, total, loss, accuracy)

    def epoch_end(self, stats, shown: bool) -> None:
        from ..train.fit import epoch_line

        if shown or self.progress.live:
            self.progress.end_epoch(epoch_line(stats, self.progress.epochs))

    def warn(self, text: str) -> None:
        self.progress.warn(text)

    def say(self, text: str) -> None:
        self.progress.print(text)


class _QuietReporter(_ProgressReporter):
    """A fold's epochs: the live bar only; the fold's result line says the rest."""

    def epoch_end(self, stats, shown: bool) -> None:
        if self.progress.live:
            self.progress.end_epoch("")


def _optimize(args, trainer, folder: Path, settings: dict, started: float, progress) -> int:
    """A model without inputs: steps of gradient descent on its parameters, each printed (the parameters
    too when they are few), the trajectory in the run folder (and its path on the loss's contours when there
    are two scalar parameters); then the parameters and outputs reached."""
    from ..runtime.execute import run_graph
    from ..train import runfolder
    from ..train.fit import TRAJECTORY, optimize
    from ..train.trainer import DivergenceWatch

    steps = trainer.config.steps or DEFAULT_STEPS
    progress.print("  no inputs: gradient descent on its parameters, no data")
    _header(progress, trainer, f"{steps} steps")
    progress.print(f"  run folder: {folder}")
    rows = optimize(trainer, steps, folder, _ProgressReporter(progress))
    params = trainer.model_params()
    g = trainer.model.graph
    outputs = run_graph(g, {}, params, list(g.outputs.values()), backend=trainer.config.backend,
                        seed=trainer.global_step) if g.outputs else {}
    progress.print()
    for name, node in g.outputs.items():
        value = np.asarray(outputs[node])
        progress.print(f"{name}: mean {value.mean():.4g}, std {value.std():.4g} over {value.size:,} values"
                       if value.size > 6 else f"{name} = {value_text(value)}")
    scalars = [n for n in g.params if params[n].size == 1]
    if len(g.params) == 2 and len(scalars) == 2:
        _plot_path(folder / TRAJECTORY.replace(".csv", ".png"), trainer, rows, scalars)
    runfolder.save_state(folder, trainer, DivergenceWatch())
    metrics = {"steps": len(rows) - 1, "loss": rows[-1]["loss"], "settings": settings,
               "seconds": time.perf_counter() - started}
    runfolder.write_metrics(folder, metrics, args.metrics_json)
    progress.print(f"done in {metrics['seconds']:.1f}s; wrote {folder}/")
    return 0 if np.isfinite(rows[-1]["loss"]) else 1


def _plot_path(path: Path, trainer, rows: list, names: list) -> None:
    """The loss on a grid around the path of two scalar parameters, and the path over its contours."""
    from ..runtime.execute import run_graph
    from ..viz.plots import plot_trajectory

    points = np.array([[float(row[n].reshape(())) for n in names] for row in rows])
    finite = points[np.isfinite(points).all(axis=1)]
    lo, hi = finite.min(axis=0), finite.max(axis=0)
    pad = np.maximum((hi - lo) * 0.25, 0.5)
    xs, ys = (np.linspace(lo[i] - pad[i], hi[i] + pad[i], GRID) for i in range(2))
    g = trainer.model.graph
    losses = np.array([[float(run_graph(g, {}, {names[0]: np.float32(x), names[1]: np.float32(y)}, [g.loss],
                                        backend=trainer.config.backend)[g.loss]) for x in xs] for y in ys])
    plot_trajectory(path, names, finite, xs, ys, losses)


def _finish(args, trainer, data, folder: Path, settings: dict, progress: Progress, started: float,
            samples_per_second: float) -> int:
    """The trained model on the test set (the training set when the data has none): printed, metrics.json
    (and --metrics-json), the figures."""
    from ..train import runfolder
    from ..train.augment import tta_evaluation, tta_text
    from ..train.evaluator import final_evaluation
    from ..viz.plots import plot_confusion, plot_curves

    classifies = trainer.task.classifies
    trainer.evaluator.params = trainer.model_params()
    tta = trainer.config.tta
    which, result = tta_evaluation(trainer.evaluator, data, tta) if tta else final_evaluation(trainer.evaluator, data)
    if folder is None:   # a data-parallel run's other ranks: rank 0 reports
        return 0
    seconds = time.perf_counter() - started
    metrics = runfolder.final_metrics(trainer, data, result, settings, seconds, samples_per_second)
    if getattr(trainer, "comm", None) is not None:
        metrics["workers"] = trainer.comm.size
    progress.print()
    if len(trainer.engines) > 1:   # a GAN: its first loss on the examples it was not trained on
        progress.print(f"{which} {trainer.loss_names[0]} {result['loss']:.6g}")
    else:
        if "tta" in result:
            progress.print(tta_text(which, result["tta"]))
        progress.print(evaluation_text(which, result, baseline=data.baseline, class_names=data.class_names))
    if "confusion" in result:
        plot_confusion(folder / runfolder.CONFUSION, result["confusion"])
    elif not classifies and data.baseline is None and trainer.task.target is not None:  # a regression's
        # parameters (not a sequence model's, nor a GAN's: too many to show)
        progress.print(fitted_params_text(trainer.model_params()))
    runfolder.write_metrics(folder, metrics, args.metrics_json)
    if trainer.history:
        plot_curves(folder / runfolder.CURVES, trainer.history, classifies)
    progress.print(f"done in {seconds:.1f}s; wrote {folder}/")
    return 0


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
