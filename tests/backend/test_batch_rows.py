"""The batch gather the native step runs first (nnc/backend/batch_rows.py, Executable.bind_rows): on 1, 2 and 3
threads it fills the bound inputs with the indexed rows of the data (clipped at either end, as NumPy's
take(mode="clip")), for batches with more shares than rows too; the training engine's steps with it are bit for
bit those of the Python gather; `bind` forgets it; a data array it cannot copy from is one clear error."""

from __future__ import annotations

import numpy as np
import pytest
from test_backend_threads import train_graph

from nnc.backend import compile_graph
from nnc.errors import NncError
from nnc.passes.optim import LR
from nnc.runtime.init import init_params
from nnc.train.engines import NativeEngine


def mlp_executable(batch: int, threads: int):
    _, g = train_graph("mnist_mlp")
    exe = compile_graph(g, {"B": batch}, use_cache=False, threads=threads)
    buffers = {"image": np.zeros((batch, 784), np.float32), "label": np.zeros(batch, np.int32),
               LR: np.asarray(0.01, np.float32)}
    exe.bind(buffers)
    return exe, buffers


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 5, 64])
def test_each_step_copies_the_indexed_rows_into_the_bound_inputs(threads, batch):
    exe, buffers = mlp_executable(batch, threads)
    rng = np.random.default_rng(batch)
    images = rng.normal(size=(100, 784)).astype(np.float32)
    labels = rng.integers(0, 10, 100).astype(np.int32)
    index = exe.bind_rows({"image": images, "label": labels})
    assert index.dtype == np.int64 and index.shape == (batch,)
    for step in range(3):
        picked = rng.integers(-3, 103, batch)    # a few past either end: clipped
        index[...] = picked
        exe.step(step)
        rows = np.clip(picked, 0, 99)
        np.testing.assert_array_equal(buffers["image"], images[rows])
        np.testing.assert_array_equal(buffers["label"], labels[rows])
        assert np.isfinite(exe.view(exe.graph.loss))


def test_bind_forgets_the_rows_and_a_step_then_reads_the_buffers_as_they_are():
    exe, buffers = mlp_executable(4, 2)
    index = exe.bind_rows({"image": np.ones((10, 784), np.float32)})
    index[...] = [0, 1, 2, 3]
    exe.bind(buffers)
    buffers["image"][...] = 7.0
    exe.step()
    assert (buffers["image"] == 7.0).all()


def test_data_it_cannot_copy_rows_from_is_one_clear_error():
    exe, _ = mlp_executable(4, 1)
    with pytest.raises(NncError, match=r"rows for input 'image' must come from a C-contiguous float32 array of "
                                       r"rows \[784\], got ndarray float64 \[10, 784\]"):
        exe.bind_rows({"image": np.ones((10, 784))})
    with pytest.raises(NncError, match="C-contiguous"):
        exe.bind_rows({"image": np.ones((784, 10), np.float32).T})
    with pytest.raises(NncError, match="rows for input 'nothing'"):
        exe.bind_rows({"nothing": np.ones((10, 784), np.float32)})


@pytest.mark.parametrize("threads", [1, 2])
def test_engine_steps_with_the_native_gather_are_those_of_the_python_gather(threads):
    _, g = train_graph("mnist_mlp", "adam")
    rng = np.random.default_rng(0)
    data = {"image": rng.normal(size=(300, 784)).astype(np.float32),
            "label": rng.integers(0, 10, 300).astype(np.int32)}
    params = init_params(g, 0)
    native = NativeEngine(g, 32, [g.loss], threads=threads)
    python = NativeEngine(g, 32, [g.loss], threads=threads, transform=lambda batch, seed: None)
    for engine in (native, python):
        engine.set_params(params)
    lr = {LR: np.asarray(0.01, np.float32)}
    for step in range(4):
        idx = rng.permutation(300)[:32]
        a, batch_a = native.run_batch(data, idx, lr, step)
        b, batch_b = python.run_batch(data, idx, lr, step)
        assert a[g.loss] == b[g.loss]
        for k in data:
            np.testing.assert_array_equal(batch_a[k], data[k][idx])
    assert native._index is not None and python._index is None
    for k, v in native.params.items():
        np.testing.assert_array_equal(v, python.params[k])
    other = {k: v.copy() for k, v in data.items()}     # new arrays: the rows come from them
    native.run_batch(other, np.arange(32), lr, 9)
    np.testing.assert_array_equal(native.run_batch(other, np.arange(32, 64), lr, 10)[1]["image"], other["image"][32:64])
