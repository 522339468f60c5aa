"""Native code compiled for several threads: the same results as one thread (bit for bit where the
threads split loops; within rounding where a convolution's weight gradient adds per-thread
partial sums), executables freed right after a step without a worker still inside them, label
errors reported with the pool still usable, and the fast path (bind once, step, read views) that
training uses."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from backend_support import random_values
from conftest import nnc_env

import nnc
from nnc.backend import compile_graph
from nnc.errors import NncError
from nnc.passes.optim import LR
from nnc.specs import OPTIMIZERS, Spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def train_graph(name: str, optimizer: str = "sgd"):
    model = nnc.load(EXAMPLES / f"{name}.nn")
    g = model.training_step(Spec(optimizer, dict(OPTIMIZERS[optimizer])))
    return model, g


def steps(exe, inputs, count):
    losses = [float(exe.run(inputs, seed=i)[exe.graph.loss]) for i in range(count)]
    return losses, {k: np.array(v) for k, v in exe.params.items()}


@functools.cache
def trained(name: str, batch: int, optimizer: str, threads: int):
    """(losses, parameters) after three training steps on `threads` threads, from the same start."""
    model, g = train_graph(name, optimizer)
    inputs, _ = random_values(g, {"B": batch}, np.random.default_rng(0), classes=10)
    inputs[LR] = np.asarray(0.01, dtype=np.float32)
    exe = compile_graph(g, {"B": batch}, use_cache=False, threads=threads)
    exe.set_params({k: v for k, v in model.init_params(0).items() if k in exe.params})
    return steps(exe, inputs, 3)


@pytest.mark.parametrize("threads", [2, 3, 4, 8])
@pytest.mark.parametrize("name, batch, optimizer", [("mnist_mlp", 37, "adam"), ("lenet5", 6, "sgd")])
def test_threads_train_like_one(name, batch, optimizer, threads):
    losses1, params1 = trained(name, batch, optimizer, 1)
    losses, params = trained(name, batch, optimizer, threads)
    exact = name != "lenet5"
    np.testing.assert_allclose(losses, losses1, rtol=0 if exact else 1e-6)
    for k in params1:
        np.testing.assert_allclose(params[k], params1[k], rtol=0 if exact else 1e-5, atol=0 if exact else 1e-7,
                                   err_msg=k)


# Compile (from the disk cache after the first time: fresh code and memory each cycle), run once, free, for
# `seconds` and at least 20 cycles (a busy machine gives fewer per second); exit 1 if a result differs from the
# first. A worker still inside a freed executable's step crashes the process: before the pool counted the
# workers inside a step, 3 threads or more crashed within a second or two (every worker stored the same 1/0
# "inside" flag, so one leaving hid another).
STRESS = textwrap.dedent("""
    import sys, time
    import numpy as np
    import nnc
    from nnc.backend import compile_graph

    threads, seconds = int(sys.argv[1]), float(sys.argv[2])
    lines = ["model m {", "  input x: [B, 64]", "  h0 = softmax(x)"]
    lines += [f"  h{i} = softmax(h{i - 1})" for i in range(1, 12)] + ["  output h11", "}"]
    model = nnc.load("\\n".join(lines))
    x = {"x": np.random.default_rng(0).standard_normal((512, 64)).astype(np.float32)}
    first, cycles, start = None, 0, time.perf_counter()
    while time.perf_counter() - start < seconds or cycles < 20:
        exe = compile_graph(model.graph, {"B": 512}, threads=threads)
        (y,) = exe.run(x).values()
        del exe
        first = y if first is None else first
        if not np.array_equal(y, first):
            sys.exit(f"cycle {cycles}: a different result")
        cycles += 1
    print(cycles)
""")


@pytest.mark.parametrize("threads, seconds", [(1, 1.0), (2, 1.5), (3, 3.0), (4, 3.0), (8, 3.0)])
def test_executables_freed_right_after_a_step_do_not_crash_the_workers(threads, seconds, tmp_path):
    env = dict(nnc_env(), NNC_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", STRESS, str(threads), str(seconds)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-2000:]}"
    assert int(done.stdout) >= 20, done.stdout   # enough cycles to have met the race


def test_bad_label_with_two_threads_then_the_pool_still_works():
    _, g = train_graph("mnist_mlp")
    inputs, params = random_values(g, {"B": 8}, np.random.default_rng(1), classes=10)
    inputs[LR] = np.asarray(0.01, dtype=np.float32)
    exe = compile_graph(g, {"B": 8}, use_cache=False, threads=2)
    exe.set_params(params)
    good = exe.run(inputs)[g.loss]
    bad = dict(inputs, label=inputs["label"].copy())
    bad["label"][3] = 10
    with pytest.raises(NncError, match="label out of range: got class 10, expected 0 to 9"):
        exe.run(bad)
    assert np.isfinite(exe.run(inputs)[g.loss]) and np.isfinite(good)


def test_bind_step_view_reads_results_in_place():
    _, g = train_graph("xor")
    inputs, params = random_values(g, {"B": 4}, np.random.default_rng(2))
    inputs[LR] = np.asarray(0.1, dtype=np.float32)
    exe = compile_graph(g, {"B": 4}, use_cache=False)
    exe.set_params(params)
    want = exe.run({k: v.copy() for k, v in inputs.items()})[g.loss]
    exe.set_params(params)
    buffers = {k: np.empty_like(v) for k, v in inputs.items()}
    exe.bind(buffers)
    for k, v in inputs.items():
        buffers[k][...] = v          # refilled in place after binding: step reads the new values
    exe.step()
    loss = exe.view(g.loss)
    assert loss == want
    assert np.shares_memory(loss, exe.arena)


def test_threads_must_be_positive():
    _, g = train_graph("xor")
    with pytest.raises(NncError, match="threads must be at least 1, got 0"):
        compile_graph(g, {"B": 4}, threads=0)


def test_trainer_epochs_on_two_threads_match_one():
    from nnc.specs import SCHEDULES
    from nnc.train.trainer import RunConfig, Trainer

    model = nnc.load(EXAMPLES / "mnist_mlp.nn")
    rng = np.random.default_rng(3)
    train = {"image": rng.standard_normal((96, 784)).astype(np.float32),
             "label": rng.integers(0, 10, 96).astype(np.int32)}
    history = []
    for threads in (1, 2):
        config = RunConfig(epochs=2, batch=32, optimizer=Spec("sgd", dict(OPTIMIZERS["sgd"])),
                           schedule=Spec("constant", dict(SCHEDULES["constant"])), threads=threads)
        trainer = Trainer(model, config)
        history.append([trainer.train_epoch(train).train_loss for _ in range(2)])
    assert history[0] == history[1]


class PacedSteps:
    """A Pace whose steps take cost[solo] seconds of a fake clock; `ways` records how each step ran."""

    def __init__(self):
        from nnc.backend.threads import Pace

        self.now, self.solo, self.ways = 0.0, False, []
        self.pace = Pace(self, clock=lambda: self.now)

    def run(self, cost: dict, steps: int) -> None:
        def entry():
            self.ways.append(self.solo)
            self.now += cost[self.solo]
            return 0

        for _ in range(steps):
            assert self.pace.call(entry, ()) == 0


def test_pace_keeps_all_threads_while_they_are_faster_and_trials_grow_rare():
    steps = PacedSteps()
    steps.run({False: 1.0, True: 1.6}, 3000)
    pace = steps.pace
    assert not pace.solo and pace.period == pace.MAX_PERIOD
    assert sum(steps.ways) < 0.03 * len(steps.ways)      # the trials' solo steps only
    assert steps.ways[:pace.FIRST_PERIOD] == [False] * pace.FIRST_PERIOD


def test_pace_runs_alone_when_one_thread_is_faster_and_comes_back():
    steps = PacedSteps()
    steps.run({False: 1.5, True: 1.0}, 1000)
    pace = steps.pace
    assert pace.solo and sum(steps.ways) > 0.9 * len(steps.ways)
    steps.run({False: 1.0, True: 1.6}, pace.countdown + 2 * pace.TRIAL)   # the machine is quiet again
    assert not pace.solo and pace.period == pace.FIRST_PERIOD


def test_steps_alone_and_on_all_threads_train_like_one_thread():
    """The pool's solo mode (the workers asleep, the caller claims every share) and the switches
    between it and all threads give the same numbers as one thread."""
    model, g = train_graph("mnist_mlp", "sgd")
    inputs, _ = random_values(g, {"B": 37}, np.random.default_rng(0), classes=10)
    inputs[LR] = np.asarray(0.01, dtype=np.float32)
    losses = {}
    for threads in (1, 2):
        exe = compile_graph(g, {"B": 37}, use_cache=False, threads=threads)
        exe.set_params({k: v for k, v in model.init_params(0).items() if k in exe.params})
        if threads > 1:
            exe._pace.contention = None   # each step the way this test says, even on a busy machine
        run = []
        for i, solo in enumerate([True, True, False, True, False, False, True]):
            if threads > 1:
                exe._pace.solo, exe._pace.countdown = solo, 1   # this way for the next step
            run.append(float(exe.run(inputs, seed=i)[g.loss]))
        losses[threads] = run, {k: np.array(v) for k, v in exe.params.items()}
    assert losses[1][0] == losses[2][0]
    for k, v in losses[1][1].items():
        np.testing.assert_array_equal(v, losses[2][1][k])
