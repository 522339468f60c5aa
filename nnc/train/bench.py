"""How fast one model's compiled training step runs, on synthetic data: what `nnc bench MODEL.nn` measures.

The step is the one `nnc run` uses (forward, backward and the optimizer
update in one native call, batches gathered from a shuffled dataset into
bound buffers). The data are random arrays of the model's input shapes:
standard-normal floats, class labels drawn uniformly below the number of
classes. Compile time is measured twice, cold (an empty disk cache) and warm
(the entry the cold compile wrote). Speed is the median of several timed
rounds after a warm-up, in samples per second. bench/train_bench.py compiles
in an empty cache the same way (`empty_compile_cache`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import tempfile
import time

import numpy as np

from .. import specs
from ..passes.optim import LR
from ..runtime.init import init_params
from ..runtime.task import training_task
from ..specs import Spec

ROUNDS = 7            # timed rounds; the median is reported
ROUND_SECONDS = 0.25  # each round runs whole steps for about this long
DATASET_BATCHES = 8   # the synthetic dataset holds this many batches, reshuffled each pass


@contextlib.contextmanager
def empty_compile_cache():
    """Point the compile cache at a fresh directory for the duration (removed afterwards)."""
    before = os.environ.get("NNC_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="nnc-bench-cache-") as directory:
        os.environ["NNC_CACHE_DIR"] = directory
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("NNC_CACHE_DIR", None)
            else:
                os.environ["NNC_CACHE_DIR"] = before


def synthetic_data(graph, rows: int, classes: int | None, seed: int = 0) -> dict:
    """Random arrays for every data input of `graph` (not the learning rate), `rows` examples each."""
    rng = np.random.default_rng(seed)
    data = {}
    for name, n in graph.inputs.items():
        if name == LR:
            continue
        t = graph.type_of(n)
        shape = tuple(rows if isinstance(d, str) else d for d in t.shape)
        if t.dtype == "int32":
            high = graph.label_classes(n) or classes or 2   # an embedding's ids below its table's rows
            data[name] = rng.integers(0, high, size=shape).astype(np.int32)
        else:
            data[name] = rng.standard_normal(shape).astype(np.dtype(t.dtype))
    return data


def optimizer_spec(model, name: str | None) -> Spec:
    return model.settings["optimizer"] if name is None else specs.optimizer_spec(name)


def measure(model, batch: int, threads: int = 1, optimizer: str | None = None,
            rounds: int = ROUNDS, round_seconds: float = ROUND_SECONDS) -> dict:
    """Compile the training step cold and warm, then time it: -> the numbers `nnc bench --json` prints."""
    from .engines import NativeEngine  # here: nnc's parser, built on every call, reads ROUNDS from this module

    task = training_task(model.graph)
    spec = optimizer_spec(model, optimizer)
    step_graph = model.training_step(spec)
    targets = [step_graph.loss, step_graph.outputs[task.output]]
    with empty_compile_cache():
        start = time.perf_counter()
        NativeEngine(step_graph, batch, targets, threads=threads)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        engine = NativeEngine(step_graph, batch, targets, threads=threads)
        warm = time.perf_counter() - start
    engine.set_params(init_params(step_graph, 0))

    rows = batch * DATASET_BATCHES
    data = synthetic_data(step_graph, rows, task.classes)
    lr = {LR: np.asarray(spec.args.get("lr", 0.01), dtype=np.float32)}
    rng = np.random.default_rng(1)
    order = rng.permutation(rows)
    step = 0

    def run_steps(count: int) -> None:
        nonlocal step, order
        for _ in range(count):
            i = step % DATASET_BATCHES
            if i == 0:
                order = rng.permutation(rows)
            engine.run_batch(data, order[i * batch:(i + 1) * batch], lr, step)
            step += 1

    gc.collect()   # the compiler's garbage, collected now rather than inside a timed round
    start = time.perf_counter()
    run_steps(3)
    per_step = (time.perf_counter() - start) / 3
    steps = max(3, int(round_seconds / max(per_step, 1e-6)))
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        run_steps(steps)
        rates.append(steps * batch / (time.perf_counter() - start))
    median = statistics.median(rates)
    return {
        "model": model.name,
        "batch": batch,
        "threads": threads,
        "optimizer": spec.name,
        "samples_per_second": median,
        "step_seconds": batch / median,
        "rounds": [round(r, 1) for r in rates],
        "steps_per_round": steps,
        "compile_seconds": cold,
        "warm_compile_seconds": warm,
        "kernels": engine.exe.stats["kernels"],
    }
