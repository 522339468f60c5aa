"""The run folder of `nnc run`: its creation, the settings it records and the copy of the model it trained.

Every run gets a folder of its own: `runs/<model>-<time>` by default (with a
`-2`, `-3`, ... suffix when a run started in the same second took the name;
folders are created exclusively), or `--out DIR`, which may not hold an
earlier run unless `--overwrite` clears it. Beside the checkpoint, history,
metrics and figures (nnc/run.py) it holds

- settings.json: every resolved setting of the run (what the train block and
  the flags made of it, the data as a location that does not depend on the
  working directory), the nnc version and the SHA-256 of the model source;
- model.nn: the source the run trained,

so `nnc run MODEL --resume DIR` restores the run from the folder alone and
can tell when MODEL has changed since.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import time
from pathlib import Path

from .. import __version__
from ..data.load import ALIASES, BUILTIN_NAMES
from ..errors import NncError
from ..fileio import atomic_write
from ..front.settings import Spec
from ..runtime.checkpoint import CHECKPOINT
from .trainer import RunConfig

SETTINGS = "settings.json"
SOURCE_COPY = "model.nn"
METRICS = "metrics.json"
HISTORY = "history.csv"
RUN_MARKS = (SETTINGS, CHECKPOINT, METRICS, HISTORY)  # a folder holding one of these is a run's
DEFAULT_ROOT = Path("runs")
CONFIG_KEYS = ("epochs", "batch", "weight_decay", "clip", "seed", "backend", "threads")


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
            "schedule": spec_json(config.schedule)}


def config_of(settings: dict) -> RunConfig:
    return RunConfig(optimizer=spec_from_json(settings["optimizer"]), schedule=spec_from_json(settings["schedule"]),
                     **{k: settings[k] for k in CONFIG_KEYS})


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
