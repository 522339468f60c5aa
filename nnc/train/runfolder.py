"""The run folder of `nnc run`: everything the run keeps in it, and the checks that let it be resumed.

Every run gets a folder of its own: `runs/<model>-<time>` by default (with a
`-2`, `-3`, ... suffix when a run started in the same second took the name;
folders are created exclusively), or `--out DIR`, which may not hold an
earlier run unless `--overwrite` clears it; a run that fails before its first
checkpoint leaves no folder behind (`new_run`). It holds

- settings.json: every resolved setting of the run (what the train block and
  the flags made of it, the data as a location that does not depend on the
  working directory), the nnc version and the SHA-256 of the model source;
- model.nn: the source the run trained;
- checkpoint.npz: the parameters and optimizer state, with what a resumption
  needs (where in which epoch the run stopped, its running sums there, the
  history and the divergence watch), saved with history.csv (`save_state`);
- metrics.json: the final metrics; curves.png and confusion.png, drawn by
  nnc.viz.plots; grad_stats.csv and .json (grad_stats.py);
- vocab.json: a text's characters in id order (nnc.data.text), for
  `nnc generate`; a resumed run checks that the text still has them;
- standardize.json: the mean and standard deviation its features were
  standardized with (`standardize`), which `nnc predict` and `nnc eval
  --params RUN` apply to raw features and a resumed run keeps,

so `nnc run MODEL --resume DIR` restores the run from the folder alone: the
settings it recorded hold (a contradicting flag is refused, a larger --epochs
extends the run), a model file changed since is refused, and so is a run
that has trained all its epochs.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import shlex
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from ..data.binding import Standardization
from ..data.load import ALIASES, BUILTIN_NAMES, takes_target
from ..data.text import VOCAB_FILE, read_vocabulary, vocabulary_json
from ..errors import NncError
from ..fileio import atomic_write
from ..runtime import checkpoint
from ..runtime.checkpoint import CHECKPOINT
from ..specs import Spec, specs_text
from ..version import __version__
from .trainer import DivergenceWatch, EpochProgress, EpochStats, RunConfig

SETTINGS = "settings.json"
SOURCE_COPY = "model.nn"
METRICS = "metrics.json"
HISTORY = "history.csv"
CURVES = "curves.png"
CONFUSION = "confusion.png"
STANDARDIZATION = "standardize.json"
RUN_MARKS = (SETTINGS, CHECKPOINT, METRICS, HISTORY)  # a folder holding one of these is a run's
DEFAULT_ROOT = Path("runs")
CONFIG_KEYS = ("epochs", "batch", "weight_decay", "clip", "seed", "backend", "threads")
NEWER_CONFIG_KEYS = {"steps": None, "alternate": (), "freeze": (), "early_stop": None, "snapshots": None,
                     "augment": (), "tta": ()}


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_MARKS)


def check_out(path: Path, overwrite: bool, model_file: str = "MODEL") -> None:
    """Refuse `--out DIR` before any work when DIR cannot become this run's folder."""
    if not path.exists():
        return
    if not path.is_dir():
        raise NncError(f"--out {path}: a file of that name exists, expected a folder for the run",
                       hint="choose another --out")
    if not any(path.iterdir()):
        return
    if not is_run_folder(path):
        raise NncError(f"--out {path} is a folder that holds other files, expected a new or empty folder",
                       hint="choose another --out; nnc clears only run folders")
    if not overwrite:
        raise NncError(f"--out {path} holds an earlier run",
                       hint=f"continue it with `nnc run {shlex.quote(model_file)} --resume {shlex.quote(str(path))}`, "
                            f"replace it with --overwrite, "
                            f"or choose another --out")


def create(out: str | None, model_name: str, overwrite: bool, model_file: str = "MODEL") -> Path:
    """The new run's folder, made now: `out` (cleared first with `overwrite`) or a fresh runs/<model>-<time>."""
    if out is not None:
        folder = Path(out)
        check_out(folder, overwrite, model_file)  # again: another run may have taken it since
        if overwrite and is_run_folder(folder):
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    DEFAULT_ROOT.mkdir(parents=True, exist_ok=True)
    base = DEFAULT_ROOT / f"{model_name}-{timestamp()}"
    for n in range(1, 10_000):
        folder = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            folder.mkdir()  # exclusive: two runs never share a folder
            return folder
        except FileExistsError:
            continue
    raise NncError(f"cannot find a free run folder name next to {base}", hint="give one with --out DIR")


@contextlib.contextmanager
def new_run(out: str | None, model, settings: dict, overwrite: bool, model_file: str = "MODEL"):
    """Create the new run's folder (see `create`) with its settings.json and model.nn, and yield it; a run that
    fails before its first checkpoint takes the folder with it (and runs/ when it made that)."""
    made_root = out is None and not DEFAULT_ROOT.exists()
    folder = create(out, model.name, overwrite, model_file)
    try:
        write_settings(folder, settings, model.source.text)
        yield folder
    except BaseException:
        if not (folder / CHECKPOINT).exists():
            shutil.rmtree(folder, ignore_errors=True)
            if made_root:
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()
        raise


def source_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_location(spec: str, base_dir: Path | None) -> str:
    """A data spec as the run folder keeps it: a built-in name as it is, a file or folder as an absolute path
    (relative to `base_dir`, else to the working directory)."""
    name = ALIASES.get(spec.lower(), spec.lower())
    if name in BUILTIN_NAMES:
        return name
    path = Path(spec).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return str(path.resolve())


def spec_json(spec: Spec) -> dict:
    return {"name": spec.name, "args": {k: spec_json(v) if isinstance(v, Spec) else v for k, v in spec.args.items()}}


def spec_from_json(data: dict) -> Spec:
    return Spec(data["name"], {k: spec_from_json(v) if isinstance(v, dict) else v for k, v in data["args"].items()})


def config_settings(config: RunConfig) -> dict:
    return {**{k: getattr(config, k) for k in CONFIG_KEYS}, "optimizer": spec_json(config.optimizer),
            "schedule": spec_json(config.schedule),
            **{k: [spec_json(x) if isinstance(x, Spec) else x for x in v] if isinstance(v, tuple) else v
               for k in NEWER_CONFIG_KEYS for v in [getattr(config, k)]}}


def config_of(settings: dict) -> RunConfig:
    return RunConfig(optimizer=spec_from_json(settings["optimizer"]), schedule=spec_from_json(settings["schedule"]),
                     **{k: settings[k] for k in CONFIG_KEYS},
                     **{k: tuple(spec_from_json(x) if isinstance(x, dict) else x for x in v) if isinstance(v, list)
                        else v for k, default in NEWER_CONFIG_KEYS.items() for v in [settings.get(k, default)]})


def new_settings(model, model_file: str, config: RunConfig, *, data: str | None = None, target: str | None = None,
                 val: float | None = None, check_numerics: bool = False, grad_stats: bool = False,
                 window: int | None = None, classes=None, test=None, train_size: int | None = None,
                 label_noise: float | None = None, shuffle_labels: bool = False, standardize: bool = False) -> dict:
    """Every setting of a new run, as settings.json records them: `config` (the flags over the train block) and
    the data, target, validation share, window and dataset controls given (None, or False for a switch: the
    train block's)."""
    s = model.settings
    spec = data or s["data"]
    if not spec and not model.graph.inputs:   # a model without inputs trains on its parameters alone
        return {"model_file": str(model_file), "model": model.name, "model_sha256": source_sha256(model.source.text),
                "data": None, "target": None, "val": 0.0, "window": None, **config_settings(config),
                "check_numerics": bool(check_numerics), "grad_stats": False}
    if not spec:
        raise NncError(f"no data for model '{model.name}'", hint="give --data mnist (or a .csv / .npz file), "
                       "or `data = ...` in the train block")
    # given data is relative to the working directory, the train block's `data` to the model file
    base = None if data else Path(model_file).parent
    if target is None and takes_target(str(spec), base):
        target = s["target"]
    return {"model_file": str(model_file), "model": model.name, "model_sha256": source_sha256(model.source.text),
            "data": data_location(str(spec), base), "target": target,
            "val": val if val is not None else s["val"], "window": window if window is not None else s["window"],
            "classes": list(classes) if classes else (list(s["classes"]) if s.get("classes") else None),
            "test": test if test is not None else s["test"],
            "train_size": train_size if train_size is not None else s["train_size"],
            "label_noise": label_noise if label_noise is not None else s["label_noise"],
            "shuffle_labels": bool(shuffle_labels or s["shuffle_labels"]),
            "standardize": bool(standardize or s["standardize"]),
            **config_settings(config),
            "check_numerics": bool(check_numerics), "grad_stats": bool(grad_stats)}


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode("utf-8")))


def write_settings(folder: Path, settings: dict, source: str | None = None) -> None:
    """settings.json (with the nnc version) and, when given, model.nn: the source the run trains."""
    if source is not None:
        atomic_write(folder / SOURCE_COPY, lambda f: f.write(source.encode("utf-8")))
    write_json(folder / SETTINGS, {"nnc_version": __version__, **settings})


def read_settings(folder: Path) -> dict:
    """The settings of the run in `folder`, for --resume."""
    if not folder.is_dir():
        raise NncError(f"nothing to resume: {folder} does not exist" if not folder.exists()
                       else f"nothing to resume: {folder} is a file, expected a run folder",
                       hint="--resume takes the folder an earlier `nnc run` printed")
    path = folder / SETTINGS
    if not path.exists():
        raise NncError(f"nothing to resume: {folder} has no {SETTINGS}",
                       hint="it is not a run folder, or an older nnc wrote it without its settings; start a new run")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
        settings.pop("nnc_version", None)  # the version that wrote it; the next write records the current one
        config_of(settings)
        settings["model"], settings["model_sha256"], settings["data"]  # noqa: B018 - present
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise NncError(f"{path} is damaged ({type(err).__name__}: {err})",
                       hint="start a new run; the checkpoint in the folder still works with --params") from None
    return settings


def saved_source(folder: Path) -> str | None:
    path = folder / SOURCE_COPY
    return path.read_text(encoding="utf-8") if path.exists() else None


# ---- resuming ----------------------------------------------------------------------------------------------

# The settings a resumed run restores from its folder, each set by the flag --NAME, with the recorded value a
# value given again must agree with.
RESTORED = {
    "model": lambda s: s["model"],
    "batch": lambda s: s["batch"],
    "lr": lambda s: s["optimizer"]["args"].get("lr"),
    "optimizer": lambda s: s["optimizer"]["name"],
    "schedule": lambda s: s["schedule"]["name"],
    "weight_decay": lambda s: s["weight_decay"],
    "clip": lambda s: s["clip"],
    "seed": lambda s: s["seed"],
    "threads": lambda s: s["threads"],
    "backend": lambda s: s["backend"],
    "data": lambda s: s["data"],
    "target": lambda s: s["target"],
    "val": lambda s: s["val"],
    "window": lambda s: s.get("window"),  # runs recorded before `window` existed had none
    "test": lambda s: s.get("test", 0.0),  # nor these dataset controls
    "train_size": lambda s: s.get("train_size"),
    "label_noise": lambda s: s.get("label_noise", 0.0),
    "shuffle_labels": lambda s: s.get("shuffle_labels", False),
    "standardize": lambda s: s.get("standardize", False),
    "check_numerics": lambda s: s["check_numerics"],
    "grad_stats": lambda s: s["grad_stats"],
    "augment": lambda s: specs_text(spec_from_json(x) for x in s.get("augment", [])),  # --augment flip,crop(pad=4)
    "tta": lambda s: specs_text(spec_from_json(x) for x in s.get("tta", [])),
}


def resumed_settings(saved: dict, folder: Path, given: dict, *, epochs: int | None = None, out: str | None = None,
                     overwrite: bool = False) -> dict:
    """The recorded settings `saved` of the run in `folder`; a value `given` (by RESTORED name; None or False:
    not given) that contradicts them is refused, but a larger `epochs` extends the run."""
    if out is not None and Path(out).resolve() != folder.resolve():
        raise NncError(f"--out {out} and --resume {folder} name two folders",
                       hint="a resumed run stays in its folder: drop --out")
    if overwrite:
        raise NncError("--overwrite clears a run folder, --resume continues it: choose one")
    for name, recorded in RESTORED.items():
        value = given.get(name)
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        shown = "true" if value is True else value
        if isinstance(value, tuple):   # augmentations: Specs, compared as the flag writes them
            value = shown = specs_text(value)
        if name == "data":
            value = data_location(value, None)
        was = recorded(saved)
        same = float(value) == float(was) if _is_number(value) and _is_number(was) else value == was
        if not same:
            raise NncError(f"{flag} {shown} contradicts the run being resumed ({flag.lstrip('-')} "
                           f"{'false' if was is False else was})",
                           hint=f"a resumed run keeps the settings it started with ({folder / SETTINGS}): "
                                f"drop {flag}, or start a new run")
    settings = dict(saved)
    if epochs is not None:
        if epochs < saved["epochs"]:
            raise NncError(f"--epochs {epochs} is fewer than the {saved['epochs']} epochs of the run being "
                           "resumed", hint="--epochs can only extend a resumed run; drop it to finish the run")
        settings["epochs"] = epochs
    return settings


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_source(folder: Path, model, model_file: str) -> None:
    """Refuse to resume with a model file that changed since the run started (see docs: a run is one model)."""
    saved = saved_source(folder)
    if saved is None or saved == model.source.text:
        return
    copy = folder / SOURCE_COPY
    raise NncError(f"{model_file} has changed since the run in {folder} started",
                   hint=f"the run trains the model as it was, kept in {copy}: continue it with "
                        f"`nnc run {shlex.quote(str(copy))} --resume {shlex.quote(str(folder))}`, or start a new run")


def saved_checkpoint(folder: Path) -> tuple[dict, dict] | None:
    """(arrays, meta) of the run's checkpoint; None when the run was killed before its first save."""
    path = folder / CHECKPOINT
    return checkpoint.load(path) if path.exists() else None


def check_unfinished(saved: tuple[dict, dict] | None, settings: dict, model_file: str, folder: Path) -> None:
    """Refuse to resume a run that has trained all its epochs, unless --epochs extends it."""
    if saved is None:
        return
    meta = saved[1]
    epoch = int(meta.get("epoch", 0))
    partial = EpochProgress(**meta["epoch_progress"]).step if meta.get("epoch_progress") else 0
    if epoch >= settings["epochs"] and not partial:
        raise NncError(f"the run in {folder} is finished: it trained all {epoch} of its epochs",
                       hint=f"to train it further, give the epochs it should reach: `nnc run "
                            f"{shlex.quote(str(model_file))} --resume {shlex.quote(str(folder))} --epochs N` "
                            f"with N above {epoch}")


def restore(trainer, folder: Path, saved: tuple[dict, dict]) -> tuple[EpochProgress, DivergenceWatch]:
    """Load the run's checkpoint `saved` into `trainer`: -> (how far the interrupted epoch got, the divergence
    watch)."""
    arrays, meta = saved
    expected = {k: v.shape for k, v in trainer.state().items()}
    checkpoint.check_against(folder / CHECKPOINT, arrays, expected)
    trainer.load_state(arrays)
    trainer.epoch = int(meta.get("epoch", 0))
    trainer.global_step = int(meta.get("global_step", 0))
    trainer.history = [EpochStats(**h) for h in meta.get("history", [])]
    if trainer.plateau is not None and meta.get("plateau"):
        trainer.plateau.load_state(meta["plateau"])
    return EpochProgress(**meta.get("epoch_progress", {})), DivergenceWatch(**meta.get("divergence", {}))


# ---- what the run writes as it goes and at the end -------------------------------------------------------


def save_state(folder: Path, trainer, watch: DivergenceWatch, progress: EpochProgress | None = None) -> Path:
    """The checkpoint (parameters and optimizer state, with where in which epoch the run stopped, its running
    sums there, the history and the divergence watch) and history.csv: -> the checkpoint's path."""
    progress = progress or EpochProgress()
    meta = {"model": trainer.model.name, "epoch": trainer.epoch, "step": progress.step,
            "global_step": trainer.global_step, "seed": trainer.config.seed, "optimizer": str(trainer.config.optimizer),
            "epoch_progress": asdict(progress), "divergence": asdict(watch),
            "history": [asdict(h) for h in trainer.history],
            "plateau": trainer.plateau.state() if trainer.plateau is not None else None}
    path = folder / CHECKPOINT
    checkpoint.save(path, trainer.state(), meta)
    write_history(folder / HISTORY, trainer.history)
    return path


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
    atomic_write(path, lambda f: f.write(buf.getvalue().encode("utf-8")))


def final_metrics(trainer, data, result: dict, settings: dict, seconds: float, samples_per_second: float) -> dict:
    """metrics.json of a finished run: `result` is the trainer's evaluation of the test set (the training set
    when the data has none), detailed for a classifier."""
    last = trainer.history[-1] if trainer.history else None
    metrics = {"model": trainer.model.name, "data": data.describe(), "epochs": trainer.epoch,
               "test_loss": result["loss"], "train_loss": last.train_loss if last else None,
               "seconds": seconds, "samples_per_second": samples_per_second,
               "seed": trainer.config.seed, "nnc_version": __version__, "model_sha256": settings["model_sha256"],
               "settings": settings}
    if data.final_split != "test":  # a text: the final evaluation is on the validation text
        metrics["evaluated_on"] = data.final_split
    if data.baseline is not None:
        metrics["baseline"] = {"name": data.baseline.name, data.baseline.metric: data.baseline.value}
    if "perplexity" in result:
        metrics["perplexity"] = result["perplexity"]
    if "tta" in result:   # test_loss and test_accuracy are of the probabilities averaged over the views
        metrics["tta"] = result["tta"]
    if "accuracy" not in result:
        metrics.update({f"test_{k}": v for k, v in result.items() if k not in ("loss", "perplexity")})  # mse, mae
        return metrics
    metrics["test_accuracy"] = result["accuracy"]
    if "confusion" in result:
        metrics.update({"confusion_matrix": result["confusion"].tolist(), "precision": result["precision"].tolist(),
                        "recall": result["recall"].tolist()})
    if data.class_names:
        metrics["class_names"] = list(data.class_names)
    return metrics


def keep_vocabulary(folder: Path, data, resumed: bool) -> None:
    """vocab.json for a text's run; a resumed run's text must have the characters the run started with."""
    if not data.vocabulary:
        return
    path = folder / VOCAB_FILE
    if resumed and path.exists() and read_vocabulary(path) != data.vocabulary:
        raise NncError(f"the text {data.name} has other characters than when the run in {folder} started "
                       f"(they are in {path})", hint="a run trains on one text: start a new run")
    write_json(path, vocabulary_json(data.vocabulary, data.name))


def run_folder_of(source) -> Path | None:
    """The run folder a --params source is (or holds the checkpoint file of); None for another file."""
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    return folder if is_run_folder(folder) else None


def standardization_for(model, sources) -> Standardization | None:
    """The statistics the runs of the --params `sources` standardized their features with (None: none did);
    parameters from elsewhere for a model whose train block standardizes are refused, as its raw features would
    reach them unscaled."""
    given = [s for s in sources if s is not None]
    stats = standardization_of(*given)
    if stats is None and given and model.settings["standardize"]:
        raise NncError(f"model '{model.name}' standardizes its features (standardize = true), and --params "
                       f"{' '.join(map(str, given))} has no {STANDARDIZATION} with the statistics it was trained with",
                       hint="give the run folder nnc run wrote")
    return stats


def keep_standardization(folder: Path, data) -> None:
    """standardize.json for a run whose features were standardized (`standardize`)."""
    if data.standardization is not None:
        write_json(folder / STANDARDIZATION, data.standardization.to_json())


def standardization_of(*sources) -> Standardization | None:
    """The statistics standardize.json keeps with the run of each --params source (a run folder or a file in
    one; `A+B`: A and B), which must agree; None when none has them."""
    found = {}
    for source in sources:
        if source is None or not isinstance(source, (str, Path)):
            continue
        parts = str(source).split("+") if "+" in str(source) and not Path(source).exists() else [source]
        for part in parts:
            folder = run_folder_of(part)
            if folder is None:
                found[str(part)] = None
                continue
            file = folder / STANDARDIZATION
            try:
                found[str(part)] = Standardization.from_json(json.loads(file.read_text(encoding="utf-8")), str(file)) \
                    if file.exists() else None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise NncError(f"{file} is damaged ({type(err).__name__}: {err})") from None
    first = next(iter(found.values()), None)
    differ = [s for s, stats in found.items() if not (stats is first or (first is not None and first.same_as(stats)))]
    if differ:
        said = ", ".join(f"{s}: {'its own ' + STANDARDIZATION if stats else 'not standardized'}"
                         for s, stats in found.items())
        raise NncError(f"--params: the runs scale their features differently ({said})",
                       hint="give parameters trained on features standardized alike (the same data, split and "
                            "`standardize`)")
    return first


def write_metrics(folder: Path, metrics: dict, also: str | Path | None = None) -> None:
    """metrics.json in the folder and, when asked (--metrics-json FILE), a copy at `also`."""
    write_json(folder / METRICS, metrics)
    if also:
        write_json(Path(also), metrics)
