"""The trainer's entry point: a data spec and a model in, arrays ready to feed out (`BoundData`).

A spec is one of
- a built-in name: `mnist`, `fashion-mnist` (also `fashion_mnist`), `cifar10`,
  `cifar100` (also `cifar-10`, `cifar-100`; `target` `fine` or `coarse` picks
  CIFAR-100's labels), `and`, `or`, `xor`, `spiral`, `sine`, `remember`;
- a `.csv` file (with `target` naming the target column) or an `.npz` file;
- a `.txt` file: a text for a character-level model (nnc.data.text);
- a folder holding the four MNIST-format IDX files, or CIFAR's binary batches.
Sequence data (a text, `sine`, a `.csv` file with `window = N`: one column as
a series) is cut into windows that fit the model (nnc.data.sequences), so it
opens with the model in hand.
A relative path is taken relative to `base_dir`: the .nn file's folder for
`data = "..."` in a train block, the working directory for `--data`.

Splits, as a Keras user would expect them:
- train: the training data, less the validation samples;
- val: `val` samples (a count N, or a fraction in (0, 1)) taken at random
  (seeded) from the training data; none by default;
- test: the source's own test set when it has one (MNIST's t10k files, a
  second draw of the spiral). Otherwise, as Keras's `model.evaluate(x, y)`
  on the training arrays, the test set is the whole table (the gates' truth
  table, a CSV or NPZ file), and the run header says so; `test` (a count or
  fraction) instead holds that many samples out of training, at random
  (seeded), before the validation samples are taken.
Windows of one sequence are held out in contiguous blocks (nnc.data.splits);
a text always keeps a validation part and is finally evaluated on it.

Then the dataset controls of the train block (`with_controls`), on the
training part only unless said: `classes` keeps some classes (every part);
`train_size` a seeded subset of the training examples; `label_noise` and
`shuffle_labels` change training labels (never validation or test ones);
`standardize` scales the features of every part with the training part's
statistics (or the statistics a run kept, for evaluation and prediction).
The same seed gives the same splits; `describe()` is the run header's line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import NncError, nearest
from ..runtime.task import BINARY, CLASSIFICATION, GENERATIVE, task_of
from .binding import Standardization, bind_part, plan_bindings
from .cifar import CIFAR_SETS, cifar_format, load_cifar, load_cifar_folder
from .dataset import Baseline, Dataset, sample_count
from .images import IMAGE_SETS, load_idx_folder, load_image_set
from .sequences import check_width, sequence_layout, series_dataset
from .splits import (
    TEST_STREAM,
    VAL_STREAM,
    contiguous_holdout,
    holdout,
    holdout_count,
    noisy_labels,
    sample_total,
    shuffled_labels,
    subset_indices,
    take,
)
from .tables import read_csv, read_npz
from .text import TEXT_SUFFIXES, check_vocabulary, read_text, text_dataset
from .toy import GATE_OUTPUTS, gate, remember, sine, spiral

BUILTIN_NAMES = ("mnist", "fashion-mnist", "cifar10", "cifar100", "and", "or", "xor", "spiral", "sine", "remember")
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
           "cifar-100": "cifar100"}
TABLE_SUFFIXES = (".csv",)
DATA_HINT = (f"--data takes one of {', '.join(BUILTIN_NAMES)}, a .csv, .npz or .txt file, or a folder of "
             f"IDX or CIFAR files")
WINDOW_HINT = "window applies to sequence data: a .txt text, sine, or a .csv file read as one series"


@dataclass
class BoundData:
    """Arrays keyed by the model's input names for each split, and what the trainer needs to know about them."""

    name: str
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    task: str                        # "classification", "binary" or "regression"
    n_classes: int | None            # None for a regression
    target: str | None               # the input holding labels or targets
    test_source: str
    bindings: list[str] = field(default_factory=list)
    class_names: tuple[str, ...] = ()
    vocabulary: tuple[str, ...] = ()    # a text's characters in id order
    baseline: Baseline | None = None    # a naive predictor's score on the evaluated part
    final_split: str = "test"           # what the final evaluation is on: "test", or "validation" for a text
    note: str = ""                      # how sequence data was cut, for the header
    standardization: Standardization | None = None   # the features' scaling (`standardize`), kept with the run

    @property
    def n_train(self) -> int:
        return sample_total(self.train)

    @property
    def n_val(self) -> int:
        return sample_total(self.val)

    @property
    def n_test(self) -> int:
        return sample_total(self.test)

    def describe(self) -> str:
        """One line for the run header."""
        if self.task == CLASSIFICATION:
            kind = f"{self.n_classes} classes" if self.n_classes else "classification"
        else:
            kind = {BINARY: "binary classification", GENERATIVE: "examples of what to generate"}.get(self.task,
                                                                                                  "regression")
        test = f", {self.n_test:,} test" if self.final_split == "test" else ""
        note = f"; {self.note}" if self.note else ""
        return (f"data {self.name}: {self.n_train:,} train, {self.n_val:,} val{test} "
                f"({self.test_source}); {', '.join(self.bindings)}; {kind}{note}")


def open_dataset(spec: str, *, target: str | None = None, base_dir: str | Path | None = None,
                 mirrors: list[str] | None = None, download: bool = True,
                 log: Callable[[str], None] | None = None, model=None, window: int | None = None) -> Dataset:
    """The dataset a spec names, not yet bound to a model; sequence data is cut into windows for `model`
    (the train block's `window` gives their length when the model's is symbolic)."""
    if not isinstance(spec, str) or not spec.strip():
        raise NncError(f"no data given: got {spec!r}", hint=DATA_HINT)
    name = ALIASES.get(spec.lower(), spec.lower())
    if name in CIFAR_SETS:
        _no_window(window, name)
        return load_cifar(CIFAR_SETS[name], target=target, mirrors=mirrors, download=download, log=log)
    if name in BUILTIN_NAMES:
        if target is not None:
            raise NncError(f"--target applies to CSV data: '{name}' has fixed features and target",
                           hint="drop --target (and `target = ...` in the train block) for this data")
        if name == "sine":
            return sine(_series_layout(model, window, name))
        _no_window(window, name)
        if name in IMAGE_SETS:
            return load_image_set(IMAGE_SETS[name], mirrors=mirrors, download=download, log=log)
        if name == "remember":
            return remember()
        return gate(name) if name in GATE_OUTPUTS else spiral()
    path = Path(spec).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if path.suffix.lower() in TABLE_SUFFIXES:
        if window is not None:
            return _csv_series(path, target, model, window)
        return read_csv(path, target)
    if path.is_dir() and cifar_format(path) is not None:
        _no_window(window, str(path))
        return load_cifar_folder(path, target)
    if target is not None:
        raise NncError(f"--target applies to CSV data, not to {path}")
    if path.suffix.lower() in TEXT_SUFFIXES:
        text = read_text(path)
        layout = sequence_layout(_needed(model, str(path)), window, str(path), ids=True)
        dataset = text_dataset(str(path), text, layout)
        check_vocabulary(model, layout, dataset.vocabulary, str(path))
        return dataset
    if path.suffix.lower() == ".npz":
        _no_window(window, str(path))
        return read_npz(path)
    if path.is_dir():
        _no_window(window, str(path))
        return load_idx_folder(path, str(path))
    if path.exists():
        raise NncError(f"unsupported data file {path}: got '{path.suffix or 'no extension'}', expected .csv, .npz "
                       f"or .txt",
                       hint=DATA_HINT)
    close = nearest(name, [*BUILTIN_NAMES, *ALIASES])
    raise NncError(f"unknown data '{spec}': no such dataset or file" + (f" ({path})" if path != Path(spec) else ""),
                   hint=f"did you mean '{ALIASES.get(close, close)}'?" if close else DATA_HINT)


def takes_target(spec: str, base_dir: str | Path | None = None) -> bool:
    """Whether the train block's `target` applies to the data `spec` names: a CSV file's column to predict, or
    which of CIFAR-100's labels to learn (the set, or a folder of its files)."""
    if Path(spec).suffix.lower() in TABLE_SUFFIXES:
        return True
    name = ALIASES.get(spec.lower(), spec.lower())
    if name in BUILTIN_NAMES:
        return name in CIFAR_SETS and len(CIFAR_SETS[name].format.labels) > 1
    path = Path(spec).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    found = cifar_format(path) if path.is_dir() else None
    return found is not None and len(found[0].labels) > 1


def bind_dataset(dataset: Dataset, model, *, val=0.0, test=None, seed: int = 0) -> BoundData:
    """Bind a dataset to the model's inputs and split it into train, val and test (see the module docstring).

    The split works on the stored arrays (bytes for images) and each part is bound once, so the float data is
    allocated once.
    """
    task = task_of(model.graph)
    plan = plan_bindings(dataset, model, task)
    table = dataset.train
    available = sample_count(table, dataset.name)
    held = holdout_count(test, available, "test")

    def split(arrays: dict, count: int, stream: int, what: str) -> tuple[dict, dict]:
        if dataset.overlap:
            return contiguous_holdout(arrays, count, seed, stream, dataset.overlap, what)
        return holdout(arrays, count, seed, stream)

    how = "in blocks of consecutive windows" if dataset.overlap else "at random"
    if dataset.test is not None:
        if held:
            raise NncError(f"test = {test:g} holds a test split out of the training data, and '{dataset.name}' has "
                           f"its own test set ({dataset.test_source})",
                           hint="drop `test` (--test): the final evaluation is on that test set")
        sample_count(dataset.test, dataset.name)
        train_raw, test_raw, test_source = table, dataset.test, dataset.test_source
    elif held:
        train_raw, test_raw = split(table, held, TEST_STREAM, "test")
        test_source = f"{held:,} samples held out {how}, seed {seed}"
    elif dataset.final_on_val:
        train_raw, test_raw = table, None
        test_source = f"validation held out {how}, seed {seed}; no test part: the final evaluation is on it"
    else:
        train_raw, test_raw = table, None
        test_source = f"{dataset.test_source or 'the whole table'}, no separate test set"
    train_raw, val_raw = split(train_raw, holdout_count(val or dataset.default_val, sample_total(train_raw), "val"),
                               VAL_STREAM, "val")

    def bound(part: dict, part_name: str) -> dict:
        return bind_part(dataset, model, task, plan, part, part_name)

    train = bound(train_raw, "training")
    val_part = bound(val_raw, "validation")
    if test_raw is not None:
        test_part, evaluated = bound(test_raw, "test"), test_raw
    elif dataset.final_on_val:
        test_part, evaluated = val_part, val_raw
    else:  # the whole table: the training part itself unless validation samples were taken from it
        test_part, evaluated = train if train_raw is table else bound(table, "test"), table
    n_classes = task.classes
    if task.kind == CLASSIFICATION and n_classes is None:
        n_classes = dataset.classes or _classes_seen(task.target, train, val_part, test_part)
    return BoundData(dataset.name, train, val_part, test_part, task.kind, n_classes, task.target, test_source,
                     [b.describe(dataset, model) for b in plan], dataset.class_names if n_classes else (),
                     vocabulary=dataset.vocabulary,
                     baseline=dataset.baseline(train_raw, evaluated) if dataset.baseline else None,
                     final_split="validation" if test_raw is None and dataset.final_on_val else "test",
                     note=dataset.note)


def _classes_seen(target: str, *parts) -> int | None:
    labels = [p[target] for p in parts if p[target].size and p[target].dtype.kind in "iu"]
    return int(max(int(a.max()) for a in labels)) + 1 if labels else None


def load_dataset(spec: str, model, *, target: str | None = None, val=0.0, test=None, seed: int = 0,
                 base_dir: str | Path | None = None, mirrors: list[str] | None = None, download: bool = True,
                 log: Callable[[str], None] | None = None, window: int | None = None) -> BoundData:
    """Open the data `spec` names and bind it to `model`: `--data SPEC --target T --val V --seed S --window N`."""
    dataset = open_dataset(spec, target=target, base_dir=base_dir, mirrors=mirrors, download=download, log=log,
                           model=model, window=window)
    return bind_dataset(dataset, model, val=val, test=test, seed=seed)


def load_for_model(model, *, data: str | None = None, target: str | None = None, val=None, test=None,
                   seed: int | None = None, mirrors: list[str] | None = None, download: bool = True,
                   log: Callable[[str], None] | None = None, window: int | None = None,
                   classes=None, train_size: int | None = None, label_noise: float | None = None,
                   shuffle_labels: bool | None = None, standardize: bool | None = None,
                   statistics: Standardization | None = None) -> BoundData:
    """The model's data with command-line values (None: not given) over its train block's; `classes` keeps a
    classification's examples of those classes only (digits 0 to 4 of MNIST), then the other dataset controls
    apply (`with_controls`); `statistics` (a run's) standardize the features instead of the training part's.

    A `data` path from the train block is relative to the .nn file's folder, one given here to the working
    directory. The block's `target` applies to any CSV data and to CIFAR-100 (`takes_target`).
    """
    settings = model.settings
    spec = data if data is not None else settings["data"]
    if spec is None:
        raise NncError(f"model '{model.name}' has no data to train on", hint=f"{DATA_HINT}; or set `data = NAME` "
                                                                           f"in the model file's train block")
    base_dir = _model_folder(model) if data is None else None
    if target is None and takes_target(spec, base_dir):
        target = settings["target"]
    seed = settings["seed"] if seed is None else seed
    dataset = open_dataset(spec, target=target, base_dir=base_dir, mirrors=mirrors, download=download, log=log,
                           model=model, window=settings["window"] if window is None else window)
    bound = bind_dataset(dataset, model, val=settings["val"] if val is None else val,
                         test=settings["test"] if test is None else test, seed=seed)
    classes = classes if classes is not None else settings.get("classes")
    if classes:
        bound = only_classes(bound, tuple(classes))
    return with_controls(bound, dataset, model, seed=seed, classes=classes,
                         train_size=settings["train_size"] if train_size is None else train_size,
                         label_noise=settings["label_noise"] if label_noise is None else label_noise,
                         shuffle_labels=settings["shuffle_labels"] if shuffle_labels is None else shuffle_labels,
                         standardize=settings["standardize"] if standardize is None else standardize,
                         statistics=statistics)


def with_controls(bound: BoundData, dataset: Dataset, model, *, seed: int = 0, classes=None,
                  train_size: int | None = None, label_noise: float = 0.0, shuffle_labels: bool = False,
                  standardize: bool = False, statistics: Standardization | None = None) -> BoundData:
    """`bound` with the dataset controls applied, in this order: a seeded subset of `train_size` training
    examples; the training labels shuffled, then each changed with probability `label_noise` (among `classes`
    when given); every part's features standardized with `statistics`, else (`standardize`) with the training
    part's. When the test part is the training part (a table without a test part), it stays the training
    examples, with their true labels."""
    train, test, notes = bound.train, bound.test, []
    same = test is train
    test_source = bound.test_source
    if train_size is not None:
        n = bound.n_train
        if isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < 1:
            raise NncError(f"train_size must be a positive integer, got {train_size!r}")
        if train_size > n:
            left = f", left after holding out {bound.n_val:,} for validation" if bound.n_val else ""
            raise NncError(f"train_size: got {train_size:,}, expected at most {n:,}, the training examples of "
                           f"{bound.name}{left}", hint=f"train_size = {n} or fewer")
        if train_size < n:
            train = take(train, subset_indices(n, train_size, seed))
            notes.append(f"train_size {train_size:,} of {n:,}")
            if same:
                test, test_source = train, f"the {train_size:,} training examples, no separate test set"
    if label_noise or shuffle_labels:
        clean = train
        train, note = _changed_labels(bound, model, train, label_noise, shuffle_labels, classes, seed)
        notes.append(note)
        if same:
            test = clean   # the true labels
    stats = statistics
    if stats is None and standardize:
        stats = Standardization.of(train, _feature_inputs(bound, dataset, model))
    if stats is not None:
        _check_table(dataset)
        scaled = stats.apply(train, dataset.name)
        test = scaled if test is train else stats.apply(test, dataset.name)
        train, val = scaled, stats.apply(bound.val, dataset.name)
        notes.append(f"{', '.join(stats.mean)} standardized" +
                     (" (the run's statistics)" if statistics is not None else " (training statistics)"))
    else:
        val = bound.val
    if not notes:
        return bound
    return replace(bound, train=train, val=val, test=test, test_source=test_source, standardization=stats,
                   note="; ".join([bound.note, *notes] if bound.note else notes))


def _feature_inputs(bound: BoundData, dataset: Dataset, model) -> list[str]:
    """The inputs `standardize` scales: the model's float inputs other than the target."""
    _check_table(dataset)
    inputs = [n for n, t in model.inputs.items() if t.is_float and n != bound.target and n in bound.train]
    if not inputs:
        raise NncError(f"standardize scales a model's float feature inputs, and model '{model.name}' has none "
                       f"(its target: {bound.target})", hint="drop `standardize`")
    return inputs


def _check_table(dataset: Dataset) -> None:
    if dataset.divisors or dataset.overlap or dataset.vocabulary:
        what = "images whose pixels are already scaled to 0..1" if dataset.divisors else "a sequence"
        raise NncError(f"standardize scales the features of a table (a CSV or NPZ file), and {dataset.name} is "
                       f"{what}", hint="drop `standardize` (--standardize)")


def _changed_labels(bound: BoundData, model, train: dict, label_noise: float, shuffle_labels: bool, classes,
                    seed: int) -> tuple[dict, str]:
    """The training part with its labels shuffled and/or noisy, and the note that says so."""
    what = "label_noise" if label_noise else "shuffle_labels"
    if not 0 <= label_noise <= 1:
        raise NncError(f"label_noise is a probability: got {label_noise}, expected a number from 0 to 1")
    if bound.task not in (CLASSIFICATION, BINARY) or bound.target is None:
        kind = {GENERATIVE: "generative"}.get(bound.task, "a regression")
        raise NncError(f"{what} changes the labels of a classification, and model '{model.name}' is {kind}"
                       + (f" (its target '{bound.target}' holds numbers to predict)" if bound.target else ""),
                       hint=f"drop `{what}`; it applies to models trained with cross_entropy or "
                            f"binary_cross_entropy on class labels")
    y = train[bound.target]
    if bound.task == BINARY:
        if not np.isin(y, (0, 1)).all():
            raise NncError(f"{what}: the targets of '{bound.target}' must be 0 or 1 to change them, and "
                           f"{bound.name} has others (soft targets)", hint=f"drop `{what}`")
        labels, known = y.astype(np.int64), np.array([0, 1])
    else:
        one_hot = y.dtype.kind == "f"
        if one_hot and not (np.isin(y, (0, 1)).all() and (y.sum(axis=-1) == 1).all()):
            raise NncError(f"{what}: the targets of '{bound.target}' must be class labels or one-hot rows to "
                           f"change them, and {bound.name} has others (soft targets)", hint=f"drop `{what}`")
        labels = y.argmax(axis=-1) if one_hot else y
        if classes:
            known = np.unique(np.asarray(classes))
        elif bound.n_classes is not None:
            known = np.arange(bound.n_classes)
        else:
            raise NncError(f"{what}: the number of classes of model '{model.name}' is not known",
                           hint="give the classes, e.g. classes = [0, 1, 2]")
    if len(known) < 2:
        raise NncError(f"{what} needs two classes or more to change a label into another: got {len(known)}")
    changed = labels
    if shuffle_labels:
        changed = shuffled_labels(changed, seed)
    if label_noise:
        changed = noisy_labels(changed, known.astype(labels.dtype), label_noise, seed)
    if bound.task == BINARY:
        new = changed.astype(y.dtype)
    elif y.dtype.kind == "f":
        new = np.eye(y.shape[-1], dtype=y.dtype)[changed]
    else:
        new = changed.astype(y.dtype, copy=False)
    parts = ["training labels shuffled"] if shuffle_labels else []
    if label_noise:
        parts.append(f"label noise {label_noise:g}")
    moved = int(np.count_nonzero(changed != labels))
    return {**train, bound.target: new}, f"{' and '.join(parts)}: {moved:,} of {labels.size:,} labels changed"


def only_classes(bound: BoundData, classes: tuple) -> BoundData:
    """The examples of `classes` only, in every split (labels unchanged: digit 7 stays class 7)."""
    if bound.task != CLASSIFICATION or bound.target is None or bound.train[bound.target].ndim != 1:
        raise NncError(f"classes = {list(classes)} picks examples by their class, and {bound.name} is not labelled "
                       f"with one class per example", hint="drop `classes`")
    outside = [c for c in classes if bound.n_classes is not None and c >= bound.n_classes]
    if outside:
        raise NncError(f"classes: got class {outside[0]}, expected 0 to {bound.n_classes - 1} "
                       f"({bound.n_classes} classes)")

    def keep(part: dict) -> dict:
        if not part:
            return part
        mask = np.isin(part[bound.target], classes)
        return {k: v[mask] for k, v in part.items()}

    shown = f"{classes[0]} to {classes[-1]}" if list(classes) == list(range(classes[0], classes[-1] + 1)) \
        else ", ".join(map(str, classes))
    return replace(bound, train=keep(bound.train), val=keep(bound.val), test=keep(bound.test),
                   note=(bound.note + "; " if bound.note else "") + f"classes {shown} only")


def _model_folder(model) -> Path | None:
    filename = model.source.filename
    return None if filename.startswith("<") else Path(filename).parent


def _needed(model, what: str):
    if model is None:
        raise NncError(f"{what} is sequence data, cut into windows that fit a model: open it with the model",
                       hint="nnc.data.load_dataset(spec, model)")
    return model


def _series_layout(model, window: int | None, what: str):
    layout = sequence_layout(_needed(model, what), window, what, ids=False)
    check_width(model, layout, what)
    return layout


def _no_window(window: int | None, what: str) -> None:
    if window is not None:
        raise NncError(f"window = {window} cuts a sequence into windows, and {what} is not one", hint=WINDOW_HINT)


def _csv_series(path: Path, column: str | None, model, window: int) -> Dataset:
    """The series in one column of a CSV file (the `target` column, or the only one), in windows for `model`."""
    table = read_csv(path, column)
    layout = _series_layout(model, window, str(path))
    if column is None:
        if len(table.train) > 1:
            raise NncError(f"which column is the series? The file has {len(table.train)}: {', '.join(table.train)}",
                           filename=str(path), hint="name it with `target = COLUMN` in the train block "
                                                    "(or --target COLUMN)")
        column = next(iter(table.train))
    dataset = series_dataset(str(path), table.train[column], None, layout, test_source="", unit="rows")
    dataset.note = f"column '{column}', {dataset.note}"
    return dataset
