"""Training: the loop behind `nnc run`.

A `Trainer` owns one compiled training step (forward + backward + optimizer
update, one native call per batch) and compiled evaluation functions. Each
epoch shuffles the training set with a generator seeded by (seed, epoch), so
a run and its resumption see the same batches; dropout is seeded by the
global step. An interrupted epoch continues from its step with its running
sums (`EpochProgress`), so a resumed run ends exactly where an uninterrupted
one does; `DivergenceWatch` notices a loss grown by orders of magnitude. The
reference interpreter can stand in for the native code (`backend="reference"`):
same graph, same results within float32 rounding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..data import splits
from ..errors import NncError
from ..runtime.task import training_task
from ..front.settings import Spec
from ..ir import interp
from ..passes.optim import LR
from ..runtime.init import init_params
from .metrics import confusion_matrix, precision_recall, predicted_classes, regression
from .schedules import learning_rate

EVAL_BATCH = 1000


@dataclass
class RunConfig:
    epochs: int
    batch: int
    optimizer: Spec
    schedule: Spec
    weight_decay: float = 0.0
    clip: float | None = None
    seed: int = 0
    backend: str = "llvm"
    threads: int | None = None

    @property
    def lr(self) -> float:
        return float(self.optimizer.args["lr"])


# ---- engines: the same graphs, natively or on the interpreter ---------------------------------


class NativeEngine:
    def __init__(self, graph, batch: int, targets, threads: int | None = None):
        from ..backend import compile_graph

        self.exe = compile_graph(graph, {s: batch for s in _symbols(graph)}, targets, threads=threads)
        self.compile_seconds = self.exe.stats["compile_seconds"]
        self._buffers: dict = {}
        self._views: dict | None = None
        self._rows = 0

    @property
    def params(self) -> dict:
        return self.exe.params

    def set_params(self, params: dict) -> None:
        self.exe.set_params({k: v for k, v in params.items() if k in self.exe.params})

    def run(self, inputs: dict, seed: int) -> dict:
        return self.exe.run(inputs, seed=seed)

    def run_batch(self, data: dict, idx: np.ndarray, extra: dict, seed: int) -> tuple[dict, dict]:
        """One step on rows `idx` of every array in `data` plus the arrays `extra`, gathered into
        buffers bound once: -> (views of the targets, the batch), both valid until the next call."""
        buffers = self._buffers
        if buffers.keys() != data.keys() | extra.keys() or len(idx) != self._rows:
            buffers = {k: np.empty((len(idx),) + v.shape[1:], v.dtype) for k, v in data.items()}
            buffers.update({k: np.array(v) for k, v in extra.items()})
            self.exe.bind(buffers)
            self._buffers, self._rows, self._views = buffers, len(idx), None
        for k, v in data.items():
            np.take(v, idx, axis=0, out=buffers[k], mode="clip")
        for k, v in extra.items():
            buffers[k][...] = v
        try:
            self.exe.step(seed)
        except NncError as err:
            if err.loc is not None:
                raise
            # Native code knows that a computed class index was out of range, not where: the
            # interpreter, run on the same batch, names the node and the value at its source line.
            interp.run(self.exe.graph, buffers, dict(self.exe.params), targets=list(self.exe.targets), seed=seed)
            raise
        if self._views is None:   # the targets stay where they are from one step to the next
            self._views = {n: self.exe.view(n) for n in self.exe.targets}
        return self._views, buffers


class ReferenceEngine:
    def __init__(self, graph, batch: int, targets, threads: int | None = None):
        self.graph = graph
        self.targets = list(targets) + list(graph.updates.values())
        self.params = init_params(graph)
        self.compile_seconds = 0.0

    def set_params(self, params: dict) -> None:
        for k, v in params.items():
            if k in self.params:
                self.params[k] = np.array(v, dtype=self.params[k].dtype)

    def run(self, inputs: dict, seed: int) -> dict:
        values = interp.run(self.graph, inputs, self.params, targets=self.targets, seed=seed)
        for name, n in self.graph.updates.items():
            self.params[name] = values[n]
        return values

    def run_batch(self, data: dict, idx: np.ndarray, extra: dict, seed: int) -> tuple[dict, dict]:
        batch = {k: v[idx] for k, v in data.items()} | extra
        return self.run(batch, seed), batch


ENGINES = {"llvm": NativeEngine, "reference": ReferenceEngine}


def _symbols(graph) -> set:
    return {d for n in graph.inputs.values() for d in graph.type_of(n).shape if isinstance(d, str)}


def _batch_dim(arrays: dict) -> int:
    return len(next(iter(arrays.values())))


# ---- the trainer ------------------------------------------------------------------------------


@dataclass
class EpochProgress:
    """How far an epoch got: the steps done and the running sums its statistics are made of."""

    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


DIVERGENCE_FACTOR = 1000.0


@dataclass
class DivergenceWatch:
    """Notices, once per run, a training loss grown by orders of magnitude: an epoch's running loss above
    DIVERGENCE_FACTOR times the loss of the run's first step (the untrained model's level; a loss that
    merely stops falling, or wobbles near zero late in training, stays far below it)."""

    first: float | None = None
    warned: bool = False

    def diverged(self, running: float) -> bool:
        """Feed each step's running loss; True once, the first time it passes the bound."""
        if self.first is None or self.first <= 0:
            self.first = running
            return False
        if self.warned or running <= DIVERGENCE_FACTOR * self.first:
            return False
        self.warned = True
        return True


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float | None
    val_loss: float | None = None
    val_accuracy: float | None = None
    lr: float = 0.0
    seconds: float = 0.0
    samples_per_second: float = 0.0
    grad_norms: dict = field(default_factory=dict)


class Trainer:
    def __init__(self, model, config: RunConfig):
        if config.backend not in ENGINES:
            raise NncError(f"unknown backend '{config.backend}'", hint="choose llvm or reference")
        self.model = model
        self.config = config
        self.task = training_task(model.graph)
        self.step_graph = model.training_step(config.optimizer, weight_decay=config.weight_decay, clip=config.clip)
        self.engine_type = ENGINES[config.backend]
        start = time.perf_counter()
        loss = self.step_graph.loss
        out = self.step_graph.outputs[self.task.output]
        self.step = self.engine_type(self.step_graph, config.batch, [loss, out], threads=config.threads)
        self.compile_seconds = time.perf_counter() - start
        self.step.set_params(init_params(self.step_graph, config.seed))
        self.evaluator = Evaluator(model, config.backend)
        self.epoch = 0          # epochs completed
        self.global_step = 0
        self.check_numerics = False  # also stop on a non-finite output, not only a non-finite loss
        self.history: list[EpochStats] = []

    # ---- parameters -----------------------------------------------------------------

    def state(self) -> dict:
        """Every parameter and optimizer state, keyed by name, as arrays (copies)."""
        return {k: np.array(v) for k, v in self.step.params.items()}

    def load_state(self, state: dict) -> None:
        self.step.set_params(state)

    def model_params(self) -> dict:
        return {k: v for k, v in self.state().items() if k in self.model.graph.params}

    # ---- training -------------------------------------------------------------------

    def batches_per_epoch(self, n: int) -> int:
        return n // self.config.batch

    def epoch_order(self, n: int, epoch: int) -> np.ndarray:
        """The order the training examples are visited in `epoch` (nnc.data.splits decides it)."""
        return splits.epoch_order(n, seed=self.config.seed, epoch=epoch)

    def lr_at(self, epoch: float) -> float:
        return learning_rate(self.config.schedule, self.config.lr, epoch, self.config.epochs)

    def train_epoch(self, train: dict, on_step=None, should_stop=None,
                    resume: EpochProgress | None = None) -> EpochStats:
        """One pass over the training set in shuffled batches; the last partial batch is left out
        (it is in a different place next epoch). `resume` continues an epoch that was interrupted:
        its remaining steps, with its running sums, give what the whole epoch would have."""
        cfg = self.config
        n = _batch_dim(train)
        steps = self.batches_per_epoch(n)
        if steps == 0:
            raise NncError(f"the training set has {n} examples, fewer than one batch of {cfg.batch}",
                           hint=f"use --batch {n} or less")
        done = replace(resume) if resume is not None else EpochProgress()
        order = self.epoch_order(n, self.epoch)
        self.epoch_start = (self.state(), self.global_step, replace(done))  # to replay up to a failing step
        loss_node = self.step_graph.loss
        out_node = self.step_graph.outputs[self.task.output]
        classifies = self.task.classifies
        start, seen_here = time.perf_counter(), 0
        lr_array = np.zeros((), dtype=np.float32)
        for i in range(done.step, steps):
            idx = order[i * cfg.batch:(i + 1) * cfg.batch]
            lr_array[...] = self.lr_at(self.epoch + i / steps)
            values, batch = self.step.run_batch(train, idx, {LR: lr_array}, cfg.seed * 1_000_003 + self.global_step)
            self.global_step += 1
            loss = float(values[loss_node])
            if not np.isfinite(loss) or (self.check_numerics and not _finite(values)):
                raise NonFiniteLoss(self.epoch, i, loss)
            done.step = i + 1
            done.loss_sum += loss * len(idx)
            done.seen += len(idx)
            seen_here += len(idx)
            if classifies:
                done.correct += int((predicted_classes(values[out_node]) == self.task.labels(batch[self.task.target])).sum())
            if on_step:
                on_step(i + 1, steps, done.loss_sum / done.seen, done.correct / done.seen if classifies else None)
            if should_stop and should_stop():
                raise Interrupted(self.epoch, replace(done))
        seconds = time.perf_counter() - start
        self.epoch += 1
        return EpochStats(self.epoch, done.loss_sum / max(done.seen, 1),
                          done.correct / done.seen if classifies and done.seen else None,
                          lr=self.lr_at(self.epoch - 1 + (steps - 1) / steps), seconds=seconds,
                          samples_per_second=seen_here / max(seconds, 1e-9))

    def locate_nonfinite(self, train: dict, failure: NonFiniteLoss) -> NncError | None:
        """Replay the epoch natively up to the failing step, then run that step on the interpreter
        and name the first node whose value is not finite."""
        from ..runtime.numerics import describe, first_nonfinite

        state, step0, begun = self.epoch_start
        self.load_state(state)
        order = self.epoch_order(_batch_dim(train), failure.epoch)
        cfg = self.config
        steps = self.batches_per_epoch(_batch_dim(train))
        batch = None
        for i in range(begun.step, failure.step + 1):
            idx = order[i * cfg.batch:(i + 1) * cfg.batch]
            batch = {k: v[idx] for k, v in train.items()}
            batch[LR] = np.asarray(self.lr_at(failure.epoch + i / steps), dtype=np.float32)
            seed = cfg.seed * 1_000_003 + step0 + i - begun.step
            if i < failure.step:
                self.step.run(batch, seed=seed)
        found = first_nonfinite(self.step_graph, batch, self.state(), seed=seed)
        self.load_state(state)
        if found is None:
            return None
        return describe(self.step_graph, found, f"epoch {failure.epoch + 1}, step {failure.step + 1}")

    def gradient_norms(self, train: dict) -> dict:
        """Each layer's ‖d loss / d parameters‖ now, on a fixed training batch (nnc run --grad-stats)."""
        from .grad_stats import GradNormProbe

        if getattr(self, "_grad_probe", None) is None:
            self._grad_probe = GradNormProbe(self.model, self.config.backend, self.config.batch, self.config.seed)
        return self._grad_probe.norms(self.model_params(), train)

    # ---- evaluation -------------------------------------------------------------------

    def predict(self, data: dict) -> tuple[float, np.ndarray]:
        self.evaluator.params = self.model_params()
        return self.evaluator.predict(data)

    def evaluate(self, data: dict, detailed: bool = False) -> dict:
        self.evaluator.params = self.model_params()
        return self.evaluator.evaluate(data, detailed)


class Evaluator:
    """The model in evaluation mode, compiled per batch size, with the task's metrics."""

    def __init__(self, model, backend: str = "llvm", params: dict | None = None):
        if backend not in ENGINES:
            raise NncError(f"unknown backend '{backend}'", hint="choose llvm or reference")
        self.model = model
        self.task = training_task(model.graph)
        self.engine_type = ENGINES[backend]
        self.params = params if params is not None else model.init_params()
        self._engines: dict[int, object] = {}

    def _engine(self, batch: int):
        if batch not in self._engines:
            g = self.model.graph
            targets = [g.loss, g.outputs[self.task.output]]
            self._engines[batch] = self.engine_type(g, batch, targets)
        engine = self._engines[batch]
        engine.set_params(self.params)
        return engine

    def predict(self, data: dict) -> tuple[float, np.ndarray]:
        """(mean loss, stacked outputs) over a whole split."""
        n = _batch_dim(data)
        if n == 0:
            raise NncError("nothing to evaluate: the split has no examples")
        g = self.model.graph
        loss_node, out_node = g.loss, g.outputs[self.task.output]
        size = min(EVAL_BATCH, n)
        total, outputs = 0.0, []
        for start in range(0, n, size):
            chunk = {k: v[start:start + size] for k, v in data.items() if k in g.inputs}
            m = _batch_dim(chunk)
            values = self._engine(m).run(chunk, seed=0)
            total += float(values[loss_node]) * m
            outputs.append(np.array(values[out_node]))
        return total / n, np.concatenate(outputs)

    def evaluate(self, data: dict, detailed: bool = False) -> dict:
        loss, out = self.predict(data)
        result = {"loss": loss}
        if not self.task.classifies:
            if self.task.target and self.task.target in data:
                target = data[self.task.target]
                if target.shape == out.shape:
                    result.update(regression(out, target))
            return result
        truth = self.task.labels(data[self.task.target])
        predicted = predicted_classes(out)
        result["accuracy"] = float((predicted == truth).mean())
        if detailed:
            counts = confusion_matrix(truth, predicted, self.task.classes)
            precision, recall = precision_recall(counts)
            result.update(confusion=counts, precision=precision, recall=recall)
        return result


class Interrupted(Exception):
    """Ctrl-C was pressed; the step finished and training stopped in `epoch` (0-based) with `progress` done."""

    def __init__(self, epoch: int, progress: EpochProgress):
        super().__init__(f"interrupted in epoch {epoch + 1} after step {progress.step}")
        self.epoch, self.progress = epoch, progress


class NonFiniteLoss(Exception):
    def __init__(self, epoch: int, step: int, loss: float):
        super().__init__(f"the loss became {loss} in epoch {epoch + 1}, step {step + 1}")
        self.epoch, self.step, self.loss = epoch, step, loss


def _finite(values: dict) -> bool:
    return all(np.all(np.isfinite(v)) for v in values.values() if np.asarray(v).dtype.kind == "f")
