"""Native code compiled for two threads: the same results as one thread (bit for bit where the
threads split loops; within rounding where a convolution's weight gradient adds per-thread
partial sums), label errors reported with the pool still usable, and the fast path (bind once,
step, read views) that training uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from backend_support import random_values

import nnc
from nnc.backend import compile_graph
from nnc.errors import NncError
from nnc.optim import LR, training_step
from nnc.settings import OPTIMIZERS, Spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def train_graph(name: str, optimizer: str = "sgd"):
    model = nnc.load(EXAMPLES / f"{name}.nn")
    g = training_step(model, Spec(optimizer, dict(OPTIMIZERS[optimizer])))
    return model, g


def steps(exe, inputs, count):
    losses = [float(exe.run(inputs, seed=i)[exe.graph.graph["loss"]]) for i in range(count)]
    return losses, {k: np.array(v) for k, v in exe.params.items()}


@pytest.mark.parametrize("name, batch, optimizer", [("mnist_mlp", 37, "adam"), ("lenet5", 6, "sgd")])
def test_two_threads_train_like_one(name, batch, optimizer):
    model, g = train_graph(name, optimizer)
    inputs, _ = random_values(g, {"B": batch}, np.random.default_rng(0), classes=10)
    inputs[LR] = np.asarray(0.01, dtype=np.float32)
    start = {k: v for k, v in model.init_params(0).items()}
    results = []
    for threads in (1, 2):
        exe = compile_graph(g, {"B": batch}, use_cache=False, threads=threads)
        exe.set_params({k: v for k, v in start.items() if k in exe.params})
        results.append(steps(exe, inputs, 3))
    (losses1, params1), (losses2, params2) = results
    exact = name != "lenet5"
    np.testing.assert_allclose(losses1, losses2, rtol=0 if exact else 1e-6)
    for k in params1:
        np.testing.assert_allclose(params1[k], params2[k], rtol=0 if exact else 1e-5, atol=0 if exact else 1e-7,
                                   err_msg=k)


def test_bad_label_with_two_threads_then_the_pool_still_works():
    _, g = train_graph("mnist_mlp")
    inputs, params = random_values(g, {"B": 8}, np.random.default_rng(1), classes=10)
    inputs[LR] = np.asarray(0.01, dtype=np.float32)
    exe = compile_graph(g, {"B": 8}, use_cache=False, threads=2)
    exe.set_params(params)
    good = exe.run(inputs)[g.graph["loss"]]
    bad = dict(inputs, label=inputs["label"].copy())
    bad["label"][3] = 10
    with pytest.raises(NncError, match="label out of range: got class 10, expected 0 to 9"):
        exe.run(bad)
    assert np.isfinite(exe.run(inputs)[g.graph["loss"]]) and np.isfinite(good)


def test_bind_step_view_reads_results_in_place():
    _, g = train_graph("xor")
    inputs, params = random_values(g, {"B": 4}, np.random.default_rng(2))
    inputs[LR] = np.asarray(0.1, dtype=np.float32)
    exe = compile_graph(g, {"B": 4}, use_cache=False)
    exe.set_params(params)
    want = exe.run({k: v.copy() for k, v in inputs.items()})[g.graph["loss"]]
    exe.set_params(params)
    buffers = {k: np.empty_like(v) for k, v in inputs.items()}
    exe.bind(buffers)
    for k, v in inputs.items():
        buffers[k][...] = v          # refilled in place after binding: step reads the new values
    exe.step()
    loss = exe.view(g.graph["loss"])
    assert loss == want
    assert np.shares_memory(loss, exe.arena)


def test_threads_must_be_positive():
    _, g = train_graph("xor")
    with pytest.raises(NncError, match="threads must be at least 1, got 0"):
        compile_graph(g, {"B": 4}, threads=0)


def test_trainer_epochs_on_two_threads_match_one():
    from nnc.settings import SCHEDULES
    from nnc.train import RunConfig, Trainer

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
