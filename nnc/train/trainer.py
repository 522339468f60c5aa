"""Training: the loop behind `nnc run`.

A `Trainer` owns one compiled training step (forward + backward + optimizer
update, one native call per batch) and compiled evaluation functions. Each
epoch shuffles the training set with a generator seeded by (seed, epoch), so
a run and its resumption see the same batches; dropout and the augmentation
of each batch's images (`augment`, nnc.train.augment) are seeded by the global
step. An interrupted epoch continues from its step with its running
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
from ..passes.optim import LR
from ..runtime.init import init_params
from ..runtime.task import task_of, training_task
from ..specs import Spec
from .augment import Augmenter, check_tta
from .distributed import CORRECT
from .engines import engine
from .evaluator import Evaluator
from .metrics import correct_count, predicted_classes
from .schedules import learning_rate, plateau_for


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
    steps: int | None = None        # a model without inputs trains for steps, not epochs
    alternate: tuple = ()           # several losses: the cycle of their steps (default: each in turn)
    freeze: tuple = ()              # parameter-name prefixes left unchanged
    early_stop: int | None = None   # patience, in epochs, on the validation loss
    snapshots: int | None = None    # keep the parameters every this many epochs
    augment: tuple = ()             # Specs (nnc.specs.AUGMENTATIONS): random transforms of each training batch's images
    tta: tuple = ()                 # Specs (nnc.specs.TTA): the views the final evaluation averages over

    @property
    def lr(self) -> float:
        return float(self.optimizer.args["lr"])


def _batch_dim(arrays: dict) -> int:
    return len(next(iter(arrays.values())))


# ---- the trainer ------------------------------------------------------------------------------


@dataclass
class EpochProgress:
    """How far an epoch got: the steps done and the running sums its statistics are made of."""

    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0   # examples classified right (with sequence labels, each the fraction of its positions)
    seen: int = 0
    losses: dict = field(default_factory=dict)   # several losses: name -> (sum of loss × examples, examples)


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
    grad_steps: dict = field(default_factory=dict)   # recurrent layer -> its gradient norm at each time step
    losses: dict = field(default_factory=dict)   # a model with several losses: each one's mean over its steps


class Trainer:
    def __init__(self, model, config: RunConfig, sizes: dict | None = None, comm=None):
        """`sizes`: symbolic dims other than the batch, from the data (engines.data_sizes); `comm`: the
        nnc.train.distributed Communicator of a data-parallel run (each step's batch shared by its ranks).

        A model with several losses gets one compiled step per loss (each updating its own parameter group
        with an optimizer of its own), stepped in the cycle `config.alternate` (default: each loss in turn),
        one batch per step; after a step the parameters it changed are copied into the other steps."""
        self.model = model
        self.config = config
        # a model without inputs trains on its parameters alone: it need not have an output to evaluate
        self.task = training_task(model.graph) if model.graph.inputs else task_of(model.graph)
        losses = list(model.training_graph.losses)
        self.loss_names = losses if len(losses) > 1 else [None]
        self.cycle = list(config.alternate) or self.loss_names
        self.augment = Augmenter(model.graph, self.task, config.augment) if config.augment else None
        if config.tta:
            check_tta(model.graph, self.task, config.tta)
        start = time.perf_counter()
        self.comm = comm
        self.graphs, self.engines = {}, {}
        if comm is not None:
            self._data_parallel(model, config, sizes)
        else:
            for name in self.loss_names:
                graph = model.training_step(config.optimizer, weight_decay=config.weight_decay, clip=config.clip,
                                            loss=name, frozen=frozen_names(model.training_graph, config.freeze))
                self.graphs[name] = graph
                self.engines[name] = engine(config.backend, graph, config.batch, self._targets(graph),
                                            threads=config.threads, sizes=sizes, transform=self.augment)
        self.step_graph, self.step = self.graphs[self.loss_names[0]], self.engines[self.loss_names[0]]
        self.compile_seconds = time.perf_counter() - start
        initial = {**init_params(model.training_graph, config.seed), **model.file_params}  # an imported model's
        for name, eng in self.engines.items():
            eng.set_params({**init_params(self.graphs[name], config.seed), **initial})
        if not model.graph.inputs:
            self.evaluator = None
        elif comm is not None:
            from .distributed import ShardedEvaluator

            self.evaluator = ShardedEvaluator(comm, model, config.backend)
        else:
            self.evaluator = Evaluator(model, config.backend)
        self.plateau = plateau_for(config.schedule, config.lr)
        self.epoch = 0          # epochs completed
        self.global_step = 0
        self.check_numerics = False  # also stop on a non-finite output, not only a non-finite loss
        self.history: list[EpochStats] = []

    def _targets(self, graph) -> list:
        """What a step returns: the loss, and the task's output when the step graph has it."""
        return [graph.loss] + ([graph.outputs[self.task.output]] if self.task.output in graph.outputs else [])

    def _data_parallel(self, model, config: RunConfig, sizes: dict | None) -> None:
        """The one training step as nnc.train.distributed's engine: gradients on this rank's shard, averaged."""
        from . import distributed

        if len(self.loss_names) > 1 or not model.graph.inputs:
            raise NncError(f"workers train a model with one loss and inputs; model '{model.name}' has "
                           + ("several losses" if model.graph.inputs else "no inputs"), hint="train it in one process")
        graph = model.training_graph
        targets = self._targets(graph)
        count = None
        if self.task.classifies and self.task.output in graph.outputs:
            out_node = graph.outputs[self.task.output]

            def count(values, batch):
                truth = self.task.labels(batch[self.task.target])
                return correct_count(predicted_classes(values[out_node]), truth)
        self.graphs[None], self.engines[None] = distributed.engine(
            self.comm, model, config, targets, sizes=sizes, transform=self.augment, count=count,
            frozen=frozen_names(graph, config.freeze))

    # ---- parameters -----------------------------------------------------------------

    def state(self) -> dict:
        """Every parameter and optimizer state, keyed by name, as arrays (copies)."""
        return {k: np.array(v) for eng in self.engines.values() for k, v in eng.params.items()}

    def load_state(self, state: dict) -> None:
        for eng in self.engines.values():
            eng.set_params({k: v for k, v in state.items() if k in eng.params})

    def _share(self, name) -> None:
        """After a step on loss `name`: the parameters it updated, into every other loss's step."""
        if len(self.engines) == 1:
            return
        source = self.engines[name].params
        for other, eng in self.engines.items():
            if other != name:
                for param in self.graphs[name].updates:
                    if param in eng.params and not param.startswith("optimizer"):
                        eng.params[param][...] = source[param]

    def model_params(self) -> dict:
        return {k: v for k, v in self.state().items() if k in self.model.graph.params}

    # ---- training -------------------------------------------------------------------

    def batches_per_epoch(self, n: int) -> int:
        return n // self.config.batch

    def epoch_order(self, n: int, epoch: int) -> np.ndarray:
        """The order the training examples are visited in `epoch` (nnc.data.splits decides it)."""
        return splits.epoch_order(n, seed=self.config.seed, epoch=epoch)

    def lr_at(self, epoch: float) -> float:
        return learning_rate(self.config.schedule, self.config.lr, epoch, self.config.epochs, self.plateau)

    def observe_validation(self, val_loss: float) -> None:
        """After an epoch's validation: a plateau schedule may lower the rate of the next epochs."""
        if self.plateau is not None:
            self.plateau.observe(val_loss)

    # ---- a model without inputs ---------------------------------------------------------

    def step_once(self, extra: dict) -> float:
        """One step of a model without inputs on its parameters (the first loss of the cycle): -> the loss
        before the step."""
        name = self.cycle[self.global_step % len(self.cycle)]
        values, _ = self.engines[name].run_batch({}, np.empty(0, np.int64), extra,
                                                 self.config.seed * 1_000_003 + self.global_step)
        self._share(name)
        self.global_step += 1
        return float(values[self.graphs[name].loss])

    def loss_now(self) -> float:
        """The loss at the current parameters of a model without inputs (evaluation form)."""
        from ..runtime.execute import run_graph

        g = self.model.graph
        return float(run_graph(g, {}, self.model_params(), [g.loss], backend=self.config.backend,
                               seed=self.global_step)[g.loss])

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
        done = replace(resume, losses=dict(resume.losses)) if resume is not None else EpochProgress()
        order = self.epoch_order(n, self.epoch)
        self.epoch_start = (self.state(), self.global_step, replace(done, losses=dict(done.losses)))  # for replays
        classifies = self.task.classifies and len(self.engines) == 1
        start, seen_here = time.perf_counter(), 0
        lr_array = np.zeros((), dtype=np.float32)
        if self.comm is not None:   # Ctrl-C on any rank stops every rank after the same step
            self.step.local_stop, should_stop = should_stop, (lambda: self.step.stop_requested)
        for i in range(done.step, steps):
            idx = order[i * cfg.batch:(i + 1) * cfg.batch]
            lr_array[...] = self.lr_at(self.epoch + i / steps)
            name = self.cycle[self.global_step % len(self.cycle)]
            graph = self.graphs[name]
            values, batch = self.engines[name].run_batch(train, idx, {LR: lr_array},
                                                         cfg.seed * 1_000_003 + self.global_step)
            self._share(name)
            self.global_step += 1
            loss = float(values[graph.loss])
            if not np.isfinite(loss) or (self.check_numerics and not _finite(values)):
                raise NonFiniteLoss(self.epoch, i, loss)
            done.step = i + 1
            done.loss_sum += loss * len(idx)
            done.seen += len(idx)
            if name is not None:
                total, count = done.losses.get(name, (0.0, 0))
                done.losses[name] = (total + loss * len(idx), count + len(idx))
            seen_here += len(idx)
            if classifies and CORRECT in values:   # a data-parallel step counted the whole batch
                done.correct += values[CORRECT]
            elif classifies:
                out_node = graph.outputs[self.task.output]
                truth = self.task.labels(batch[self.task.target])
                done.correct += correct_count(predicted_classes(values[out_node]), truth)
            if on_step:
                on_step(i + 1, steps, done.loss_sum / done.seen, done.correct / done.seen if classifies else None)
            if should_stop and should_stop():
                raise Interrupted(self.epoch, replace(done, losses=dict(done.losses)))
        seconds = time.perf_counter() - start
        self.epoch += 1
        return EpochStats(self.epoch, done.loss_sum / max(done.seen, 1),
                          done.correct / done.seen if classifies and done.seen else None,
                          lr=self.lr_at(self.epoch - 1 + (steps - 1) / steps), seconds=seconds,
                          samples_per_second=seen_here / max(seconds, 1e-9),
                          losses={k: done.losses[k][0] / max(done.losses[k][1], 1) for k in self.loss_names
                                  if k in done.losses})

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
            if self.augment is not None:
                self.augment(batch, seed)
            if i < failure.step:
                self.step.run(batch, seed=seed)
        found = first_nonfinite(self.step_graph, batch, self.state(), seed=seed)
        self.load_state(state)
        if found is None:
            return None
        return describe(self.step_graph, found, f"epoch {failure.epoch + 1}, step {failure.step + 1}")

    def gradient_norms(self, train: dict) -> tuple[dict, dict]:
        """Each layer's ‖d loss / d parameters‖ now, on a fixed training batch, and each recurrent layer's
        gradient norm at each time step (nnc run --grad-stats)."""
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


def frozen_names(g, prefixes) -> tuple:
    """The trainable parameters under the `freeze` prefixes (nnc.front.settings checked each matches one)."""
    from ..ir.graph import under_prefix

    trainable = [n for n, node in g.params.items() if g.nodes[node]["attrs"]["trainable"]]
    for p in prefixes:
        if not any(under_prefix(n, p) for n in trainable):
            raise NncError(f"--freeze: no trainable parameter under this prefix: got {p}, expected the name of a "
                           f"layer or parameter of model '{g.model}'",
                           hint=f"the trainable parameters: {', '.join(trainable)}")
    return tuple(n for n in trainable if any(under_prefix(n, p) for p in prefixes))
