"""Binding a dataset's arrays to a model's declared inputs: by name, else by role; shaped and typed to fit.

An input whose name matches an array gets that array. The rest go by role
(see nnc.runtime.task): the model's target input gets the dataset's target
array, and the one remaining float input gets the feature arrays,
concatenated per sample. An array is reshaped to the input's declared shape
when the values per sample agree (MNIST's [N, 28, 28] becomes [N, 784] for an
MLP, [N, 1, 28, 28] for LeNet, stays [N, 28, 28] for a recurrent network that
reads a row per time step, and becomes [N, 784, 1] for one that reads a pixel
per step; one symbolic dim takes the size the others leave, so [B, T, 28] and
[B, T, 1] work too), cast to the input's dtype, and labels are
checked against the classes the model has. Anything that does not fit is one
error naming both shapes; so is a channels-last input ([B, 32, 32, 3]) for
channels-first images ([N, 3, 32, 32]), which a reshape would scramble.
`Standardization` scales bound features to zero mean and unit variance with
statistics of the training part (`standardize = true`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import NncError
from ..ir.ops.nn import first_bad_label, first_bad_label_at
from ..ir.types import format_shape, numpy_dtype
from ..runtime.task import BINARY, CLASSIFICATION, Task
from .dataset import Dataset
from .memory import committed_empty


@dataclass(frozen=True)
class Binding:
    input: str
    sources: tuple[str, ...]  # dataset arrays; several are concatenated per sample

    def describe(self, dataset: Dataset, model) -> str:
        source = ", ".join(self.sources)
        sample = dataset.train[self.sources[0]].shape[1:] if len(self.sources) == 1 else None
        declared = model.inputs[self.input].shape[1:]
        # a column [N] as [N, 1] goes without saying, and so does [N, 16] as [B, T]
        shown = sample not in (None, ()) and not (len(sample) == len(declared) and all(
            d == n or not isinstance(d, int) for n, d in zip(sample, declared)))
        reshaped = f" {format_shape(sample)} as {format_shape(declared)}" if shown else ""
        return self.input if self.sources == (self.input,) and not reshaped else f"{self.input} <- {source}{reshaped}"


def plan_bindings(dataset: Dataset, model, task: Task) -> list[Binding]:
    """Which dataset arrays feed each of the model's inputs."""
    inputs = model.inputs
    plan = {name: (name,) for name in inputs if name in dataset.train}
    if not dataset.by_name_only:
        used = {s for sources in plan.values() for s in sources}
        if task.target and task.target not in plan and dataset.target and dataset.target not in used:
            plan[task.target] = (dataset.target,)
            used.add(dataset.target)
        open_inputs = [n for n in inputs if n not in plan and n != task.target]
        features = tuple(a for a in dataset.features if a not in used and a != dataset.target)
        if len(open_inputs) == 1 and inputs[open_inputs[0]].is_float and features:
            plan[open_inputs[0]] = features
    missing = [n for n in inputs if n not in plan]
    if missing:
        raise _unbound(dataset, model, task, missing)
    return [Binding(name, plan[name]) for name in inputs]


def bind_part(dataset: Dataset, model, task: Task, plan: list[Binding], part: dict,
              part_name: str) -> dict[str, np.ndarray]:
    """{input name: array} for one part (train or test) of the dataset."""
    out = {}
    for b in plan:
        arrays = [_scaled(part[s], dataset.divisors.get(s)) for s in b.sources]
        array = arrays[0] if len(arrays) == 1 else _side_by_side(arrays)
        fit = _Fit(dataset, model, task, b, part_name)
        out[b.input] = fit(array)
    return out


def _side_by_side(arrays: list[np.ndarray]) -> np.ndarray:
    """[N, k1 + k2 + ...] from arrays [N, ...]; N may be 0 (an empty validation split)."""
    return np.concatenate([a.reshape(len(a), math.prod(a.shape[1:])) for a in arrays], axis=1)


def _scaled(array: np.ndarray, divisor: float | None) -> np.ndarray:
    """Integer-coded values (pixels) as float32 fractions; other arrays unchanged."""
    if divisor is None:
        return array
    return np.divide(array, np.float32(divisor), out=committed_empty(array.shape, np.float32))


@dataclass
class _Fit:
    """Shapes, casts and checks one array for one input; its errors name the data, the input and both shapes."""

    dataset: Dataset
    model: object
    task: Task
    binding: Binding
    part_name: str

    def __call__(self, array: np.ndarray) -> np.ndarray:
        t = self.model.inputs[self.binding.input]
        if not t.shape:
            raise self.error(f"the model's input '{self.binding.input}' is a single number, expected a shape with "
                             f"a batch dimension first such as [B, ...]", f"got {self.what} of shape "
                             f"{format_shape(array.shape)}")
        is_target = self.binding.input == self.task.target
        if t.is_float and is_target and self._wants_one_hot(array, t):
            classes = t.shape[1]
            labels = self.labels(array, classes)
            return np.eye(classes, dtype=numpy_dtype(t.dtype))[labels]
        shaped = self.reshape(array, t)
        if not t.is_float:
            if is_target:
                return self.labels(shaped, self.task.classes)
            return self.ids(shaped, self.model.graph.label_classes(self.model.graph.inputs[self.binding.input]))
        if is_target and self.task.kind == BINARY:
            self.check_binary(shaped)
        return shaped.astype(numpy_dtype(t.dtype), copy=False)

    @property
    def what(self) -> str:
        names = ", ".join(self.binding.sources)
        return f"{self.dataset.unit}{'s' if len(self.binding.sources) > 1 else ''} {names}"

    def error(self, message: str, hint: str | None = None) -> NncError:
        """An error about this array, at its file when it has one of its own (an IDX file)."""
        own_test_part = self.part_name == "test" and self.dataset.test is not None
        where = self.dataset.file_of(self.binding.sources[0], own_test_part) if len(self.binding.sources) == 1 \
            else self.dataset.name
        return NncError(message, filename=where, hint=hint)

    def _wants_one_hot(self, array: np.ndarray, t) -> bool:
        return (self.task.kind == CLASSIFICATION and array.ndim == 1 and len(t.shape) == 2
                and isinstance(t.shape[1], int) and t.shape[1] > 1)

    def reshape(self, array: np.ndarray, t) -> np.ndarray:
        sample, declared = array.shape[1:], t.shape[1:]
        got, expected = math.prod(sample), None
        if all(isinstance(d, int) for d in declared):
            expected = math.prod(declared)
            if got == expected:
                self.check_channels(sample, declared, t)
                return array.reshape((len(array), *declared))
        elif len(sample) == len(declared) and all(not isinstance(d, int) or d == s
                                                  for s, d in zip(sample, declared)):
            return array
        else:  # one symbolic dim takes the values per sample the others leave: MNIST as [B, T, 1], 784 steps
            free = [i for i, d in enumerate(declared) if not isinstance(d, int)]
            known = math.prod(d for d in declared if isinstance(d, int))
            if len(free) == 1 and got % known == 0 and got:
                return array.reshape((len(array), *(got // known if i == free[0] else d
                                                    for i, d in enumerate(declared))))
        per_sample = f" ({expected} values per sample)" if expected is not None else ""
        raise self.error(f"{self.what} does not fit the model's input '{self.binding.input}': got "
                         f"{format_shape(array.shape)} ({got} values per sample), expected {t}{per_sample}",
                         hint=f"model '{self.model.name}' declares `input {self.binding.input}: {t}`; the data "
                              f"must match it after the first (batch) dimension, up to a reshape")

    def check_channels(self, sample: tuple, declared: tuple, t) -> None:
        """Images [C, H, W] for an input [H, W, C]: a reshape would scramble the pixels, so it is an error."""
        if len(sample) == 3 and tuple(declared) == (*sample[1:], sample[0]) and tuple(sample) != tuple(declared):
            name = self.binding.input
            raise self.error(f"{self.what} does not fit the model's input '{name}': got {format_shape(sample)} per "
                             f"sample, channels first, expected {t}, channels last",
                             hint=f"nnc's images are channels first ([C, H, W], as in PyTorch) and are not "
                                  f"transposed: declare `input {name}: [B, {', '.join(map(str, sample))}]`")

    def labels(self, array: np.ndarray, classes: int | None) -> np.ndarray:
        """Whole-number class indices as int32, within [0, classes)."""
        input_name = self.binding.input
        if array.dtype.kind == "f":
            fractional = np.flatnonzero(array != np.round(array))
            if len(fractional):
                i = int(fractional[0])
                raise self.error(f"{self.what} holds {array.ravel()[i]:g} (sample {i + 1} of the {self.part_name} "
                                 f"data), expected whole numbers: the model's input '{input_name}' is "
                                 f"{self.model.inputs[input_name]}, class indices")
        if first_bad_label(array, classes if classes is not None else np.inf) is not None:
            low, high = array.min(), array.max()
            bad = low if low < 0 else high   # the extreme: the hint says how many outputs it needs
            limit = f"0 to {classes - 1} for the {classes} classes of its {self.task.class_source}" \
                if classes is not None else "0 or more"
            hint = (f"the data has labels up to {high:g}: the model needs {int(high) + 1} outputs, "
                    f"e.g. dense(..., {int(high) + 1})" if classes is not None and high >= classes else None)
            raise self.error(f"label {bad:g} in the {self.part_name} data is out of range for model "
                             f"'{self.model.name}': expected {limit}", hint=hint)
        return array.astype(np.int32, copy=False)

    def ids(self, array: np.ndarray, rows: int | None) -> np.ndarray:
        """Int ids (an embedding's, a one_hot's) as int32, each within [0, rows) where the model says how many
        there may be: the first one outside is named with its sample and position."""
        self.labels(array, None)   # whole numbers, not negative
        found = first_bad_label_at(array, rows) if rows is not None else None
        if found is not None:
            value, (sample, *position) = found
            at = f", position {format_shape(position)}" if position else ""
            raise self.error(f"id {value} in {self.what} (sample {sample + 1}{at} of the {self.part_name} data) is "
                             f"out of range for model '{self.model.name}': expected 0 to {rows - 1}",
                             hint=f"its input '{self.binding.input}' indexes a table of {rows} rows: make the table "
                                  f"larger or the ids smaller")
        return array.astype(np.int32, copy=False)

    def check_binary(self, array: np.ndarray) -> None:
        outside = np.flatnonzero((array < 0) | (array > 1))
        if len(outside):
            value = array.ravel()[outside[0]]
            raise self.error(f"target {value:g} in the {self.part_name} data is out of range for "
                             f"binary_cross_entropy in model '{self.model.name}': expected values from 0 to 1")


def _unbound(dataset: Dataset, model, task: Task, missing: list[str]) -> NncError:
    inputs = model.inputs
    listed = ", ".join(f"{n} ({inputs[n]})" for n in missing)
    has = ", ".join(dataset.train)
    if dataset.by_name_only:
        example = ", ".join(f"{n}=..." for n in inputs)
        return NncError(f"no array for the model's input{'s' if len(missing) > 1 else ''} {listed}: the archive "
                        f"has {has}", filename=dataset.name,
                        hint=f"name each array after the input it feeds: numpy.savez(FILE, {example})")
    if task.target in missing and dataset.target is None and dataset.unit == "column":
        return NncError(f"no target column for the model's input '{task.target}' ({inputs[task.target]})",
                        filename=dataset.name,
                        hint=f"say which column it is with --target COLUMN (or `target = COLUMN` in the train "
                             f"block); the columns: {has}")
    return NncError(f"cannot bind the model's input{'s' if len(missing) > 1 else ''} {listed}: the data has no "
                    f"array of that name and no features or target left to give it (arrays: {has})",
                    filename=dataset.name,
                    hint=f"name the data's arrays after model '{model.name}''s inputs "
                         f"({', '.join(inputs)}), or give the model one feature input and one target input")


@dataclass(frozen=True)
class Standardization:
    """x -> (x - mean) / std for each float feature input, value by value of a sample, with the mean and the
    (population) standard deviation of the training part; a constant feature keeps std 1, as scikit-learn's
    StandardScaler does. The run folder keeps it as JSON (`to_json`), for nnc predict and nnc eval."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    @classmethod
    def of(cls, part: dict[str, np.ndarray], inputs: list[str]) -> Standardization:
        """The statistics of `inputs` in `part` (the training part)."""
        std = {n: part[n].std(axis=0, dtype=np.float64) for n in inputs}
        return cls({n: part[n].mean(axis=0, dtype=np.float64) for n in inputs},
                   {n: np.where(s > 0, s, 1.0) for n, s in std.items()})

    def apply(self, part: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
        """`part` with its standardized inputs scaled (new arrays, of the same dtype); `where` names the data."""
        out = dict(part)
        for name, mean in self.mean.items():
            if name not in part:
                continue
            x = part[name]
            if x.shape[1:] != mean.shape:
                raise NncError(f"{where}: input '{name}' has samples of shape {format_shape(x.shape[1:])}, expected "
                               f"{format_shape(mean.shape)}, the shape its standardization statistics were taken at")
            out[name] = ((x - mean) / self.std[name]).astype(x.dtype)
        return out

    def to_json(self) -> dict:
        return {name: {"mean": mean.tolist(), "std": self.std[name].tolist()} for name, mean in self.mean.items()}

    @classmethod
    def from_json(cls, data, where: str) -> Standardization:
        try:
            mean = {str(n): np.asarray(v["mean"], np.float64) for n, v in data.items()}
            std = {str(n): np.asarray(v["std"], np.float64) for n, v in data.items()}
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise NncError(f"{where} is damaged ({type(err).__name__}: {err})",
                           hint="it holds each input's mean and std, written by nnc run") from None
        if any(mean[n].shape != std[n].shape or not (std[n] > 0).all() for n in mean):
            raise NncError(f"{where} is damaged: a mean and a std of different shapes, or a std that is not positive")
        return cls(mean, std)

    def same_as(self, other: Standardization | None) -> bool:
        return other is not None and self.mean.keys() == other.mean.keys() and all(
            np.array_equal(self.mean[n], other.mean[n]) and np.array_equal(self.std[n], other.std[n])
            for n in self.mean)
