"""The cross_rank_sum op's native kernel (nnc/backend/kernels/collective.py) without MPI: the identity of the
NumPy reference when no collective is connected, a connected Python function called on the value in place
(from whichever thread of the pool runs the kernel), a fused epilogue applied after it, a non-zero status
stopping the step, the compile cache keeping it connectable, and the data-parallel engine's collective weighting
the adjoint by the ranks' shares. Two ranks: tests/test_distributed.py."""

from __future__ import annotations

import ctypes
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from nnc.backend import compile_graph
from nnc.backend.kernels.collective import connect
from nnc.errors import NncError
from nnc.ir import ops
from nnc.ir.graph import Graph
from nnc.ir.interp import run
from nnc.ir.types import TensorType
from nnc.train.distributed import COLLECTIVE_FAILED, DataParallelEngine


def graph():
    """w = cross_rank_sum(relu(cross_rank_sum(x)) · 2, adjoint): relu and the product fuse after the first."""
    g = Graph()
    t = TensorType((64, 300), "float32")
    x = g.add_op(ops.input, (), {"name": "x", "type": t}, type=t)
    g.inputs["x"] = x
    y = g.add_op(ops.cross_rank_sum, (x,), {"adjoint": False})
    two = g.add_op(ops.const, (), {"value": 2.0, "type": TensorType((), "float32")}, type=TensorType((), "float32"))
    z = g.add_op(ops.mul, (g.add_op(ops.relu, (y,), {}), two), {})
    w = g.add_op(ops.cross_rank_sum, (z,), {"adjoint": True})
    g.outputs["w"] = w
    return g, w


X = np.random.default_rng(0).normal(size=(64, 300)).astype(np.float32)


@pytest.mark.parametrize("threads", [1, 2])
def test_unconnected_is_the_identity_of_the_reference(threads):
    g, w = graph()
    exe = compile_graph(g, {}, [w], threads=threads, use_cache=False)
    expected = run(g, {"x": X}, {}, targets=[w])[w]
    np.testing.assert_array_equal(exe.run({"x": X})[w], expected)
    np.testing.assert_array_equal(expected, np.maximum(X, 0) * 2)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_connected_collective_runs_in_place_before_the_epilogue(threads):
    g, w = graph()
    exe = compile_graph(g, {}, [w], threads=threads, use_cache=False)
    plan = exe.plan
    assert any(k.kind == "cross_rank_sum" and k.epilogue for k in plan.kernels)   # relu · 2 fused after it
    calls = []

    def collective(address, count, adjoint):
        values = np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctypes.c_float)), shape=(count,))
        calls.append((count, adjoint, threading.get_ident()))
        values *= np.float32(10 if adjoint else -3)   # a stand-in for the sum over ranks
        return 0

    connect(exe, collective)
    for _ in range(20):
        out = exe.run({"x": X})[w]
        np.testing.assert_array_equal(out, np.maximum(X * np.float32(-3), 0) * 2 * np.float32(10))
    assert [c[:2] for c in calls] == [(X.size, 0), (X.size, 1)] * 20


def test_a_failed_collective_stops_the_step():
    g, w = graph()
    exe = compile_graph(g, {}, [w], use_cache=False)
    connect(exe, lambda address, count, adjoint: 3)
    with pytest.raises(NncError, match="status 3"):
        exe.run({"x": X})


def test_a_cached_executable_connects_too(tmp_path, monkeypatch):
    monkeypatch.setenv("NNC_CACHE_DIR", str(tmp_path))
    g, w = graph()
    first = compile_graph(g, {}, [w])
    second = compile_graph(g, {}, [w])
    assert second.stats["cached"] and not first.stats["cached"]
    connect(second, lambda address, count, adjoint: 5)
    np.testing.assert_array_equal(first.run({"x": X})[w], np.maximum(X, 0) * 2)   # its own pointer: unset
    with pytest.raises(NncError, match="status 5"):
        second.run({"x": X})


class FakeComm:
    """Two ranks whose other rank holds `other` (already weighted as that rank would send it)."""

    def __init__(self, other):
        self.other = other

    def allreduce(self, values):
        if self.other is None:
            raise MemoryError("no room")
        values += self.other


def test_the_data_parallel_collective_weights_the_adjoint_by_the_shares():
    """Rank 0 of 2 with 14 of a batch of 29 rows: the sum adds the other rank's values; the adjoint sends its
    values times 14/29 and divides the sum by 14/29. An exception is kept for the step to raise."""
    engine = SimpleNamespace(rows=slice(0, 14), batch=29, _collective_error=None)
    mine = np.array([1.0, -2.0, 4.0], np.float32)
    for adjoint, other, expected in ((0, [3.0, 3.0, 3.0], [4.0, 1.0, 7.0]),
                                     (1, [15 / 29] * 3, (mine * np.float32(14 / 29) + np.float32(15 / 29))
                                      / np.float32(14 / 29))):
        engine.comm = FakeComm(np.array(other, np.float32))
        values = mine.copy()
        assert DataParallelEngine._cross_rank_sum(engine, values.ctypes.data, 3, adjoint) == 0
        np.testing.assert_allclose(values, expected, rtol=1e-6)
    engine.comm = FakeComm(None)
    assert DataParallelEngine._cross_rank_sum(engine, mine.ctypes.data, 3, 0) == COLLECTIVE_FAILED
    assert isinstance(engine._collective_error, MemoryError)
