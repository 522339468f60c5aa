"""The time loop (`scan`, nnc/ir/ops/control.py): the interpreter, backpropagation through time, native code.

A hand-built RNN cell h' = tanh(x·Wx + h·Wh + b) scanned over T steps is checked against
NumPy, its gradients (the reverse scan) against central differences in float64, native code
against the interpreter forward and backward at 1 and 2 threads, and the compile time and
code size against the number of steps.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from nnc.backend import compile_graph, lower_to_ir
from nnc.ir import interp, ops
from nnc.ir.graph import Emitter, Graph, verify
from nnc.ir.types import TensorType, TupleType
from nnc.passes import pipeline

B, D, H = 3, 2, 5


def cell(with_output: bool = False) -> Graph:
    body = Graph(model="cell")
    e = Emitter(body)
    h, x = e.input("h", TensorType(("B", H))), e.input("x", TensorType(("B", D)))
    wx, wh, b = e.input("wx", TensorType((D, H))), e.input("wh", TensorType((H, H))), e.input("b", TensorType((H,)))
    new = e.tanh(e.add(e.add(e.matmul(x, wx), e.matmul(h, wh)), b))
    body.outputs["h_new"] = new
    if with_output:
        body.outputs["y"] = e.square(new)      # a per-step output besides the carry
        body.outputs["s"] = e.sum(new, axis=0)  # a sum over the steps
    return body


def rnn_graph(T: int, reverse: bool = False, with_output: bool = False):
    g = Graph(model="rnn")
    e = Emitter(g)
    xs, h0 = e.input("xs", TensorType((T, "B", D))), e.input("h0", TensorType(("B", H)))
    weights = [e.input("wx", TensorType((D, H))), e.input("wh", TensorType((H, H))), e.input("b", TensorType((H,)))]
    extra = {"ys": ("y",), "accs": ("s",)} if with_output else {"ys": (), "accs": ()}
    s = e.scan(h0, xs, *weights, body=cell(with_output), carry_in=("h",), carry_out=("h_new",), seq_in=("x",),
               const_in=("wx", "wh", "b"), length=T, reverse=reverse, **extra)
    hist = e.item(s, index=0)
    loss = e.sum(e.square(hist), axis=None)
    if with_output:
        loss = e.add(loss, e.add(e.sum(e.item(s, index=1), axis=None), e.sum(e.square(e.item(s, index=2)), axis=None)))
    g.outputs["history"] = hist
    g.loss = loss
    return g


def values(T: int, dtype=np.float64, batch: int = B) -> dict:
    rng = np.random.default_rng(0)
    v = {"xs": rng.normal(size=(T, batch, D)), "h0": rng.normal(size=(batch, H)), "wx": rng.normal(size=(D, H)),
         "wh": 0.5 * rng.normal(size=(H, H)), "b": rng.normal(size=(H,))}
    return {k: a.astype(dtype) for k, a in v.items()}


def numpy_rnn(v: dict, reverse: bool = False) -> np.ndarray:
    T = len(v["xs"])
    hist, h = np.empty((T, B, H)), v["h0"]
    for t in (reversed(range(T)) if reverse else range(T)):
        h = np.tanh(v["xs"][t] @ v["wx"] + h @ v["wh"] + v["b"])
        hist[t] = h
    return hist


@pytest.mark.parametrize("reverse", [False, True])
def test_the_interpreter_runs_the_loop(reverse):
    g = rnn_graph(4, reverse)
    verify(g)
    assert isinstance(g.type_of(g.operands(g.outputs["history"])[0]), TupleType)
    v = values(4)
    got = interp.run(g, v, {}, targets=[g.outputs["history"]], float_dtype=np.float64)[g.outputs["history"]]
    np.testing.assert_allclose(got, numpy_rnn(v, reverse), rtol=1e-12)


@pytest.mark.parametrize("reverse, with_output", [(False, False), (True, False), (False, True)])
def test_backpropagation_through_time_matches_finite_differences(reverse, with_output):
    g = rnn_graph(4, reverse, with_output)
    names = ["xs", "h0", "wx", "wh", "b"]
    gg = pipeline.gradient(g, wrt=names)
    v = values(4)
    got = interp.run(gg, v, {}, targets=list(gg.grads.values()), float_dtype=np.float64)

    def loss(w):
        return float(interp.run(g, w, {}, targets=[g.loss], float_dtype=np.float64)[g.loss])

    for name in names:
        numeric = np.zeros_like(v[name])
        for idx in np.ndindex(*v[name].shape):
            up, down = dict(v), dict(v)
            up[name], down[name] = v[name].copy(), v[name].copy()
            up[name][idx] += 1e-6
            down[name][idx] -= 1e-6
            numeric[idx] = (loss(up) - loss(down)) / 2e-6
        np.testing.assert_allclose(got[gg.grads[name]], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_the_backward_pass_is_a_reverse_scan_with_provenance():
    g = rnn_graph(4)
    gg = pipeline.gradient(g, wrt=["wx"])
    scans = [n for n in gg.nodes if gg.op(n) is ops.scan]
    assert len(scans) == 2
    back = next(n for n in scans if gg.nodes[n].get("grad_of") is not None)
    assert gg.nodes[back]["attrs"]["reverse"] is True
    assert "backpropagation through time" in gg.nodes[back]["rule"]


@pytest.mark.parametrize("threads, batch", [(1, 3), (2, 3), (2, 4), (3, 6)])   # 4, 6: each thread has rows
@pytest.mark.parametrize("reverse, with_output", [(False, False), (True, True)])
def test_native_code_matches_the_interpreter_forward_and_backward(threads, batch, reverse, with_output):
    g = rnn_graph(6, reverse, with_output)
    gg = pipeline.gradient(g, wrt=["xs", "h0", "wx", "wh", "b"])
    targets = [gg.loss, gg.outputs["history"], *gg.grads.values()]
    v = values(6, np.float32, batch)
    want = interp.run(gg, v, {}, targets=targets)
    got = compile_graph(gg, {"B": batch}, targets, use_cache=False, threads=threads).run(v)
    for n in targets:  # float32 rounding, relative to the tensor's largest entry
        np.testing.assert_allclose(got[n], want[n], rtol=2e-5, atol=2e-5 * np.abs(want[n]).max())


def test_compile_time_and_code_size_do_not_grow_with_the_number_of_steps():
    def cost(T):
        gg = pipeline.gradient(rnn_graph(T), wrt=["wx", "wh", "b"])
        start = time.perf_counter()
        _, module, _ = lower_to_ir(gg, {"B": B})
        text = str(module)
        compile_graph(gg, {"B": B}, use_cache=False)
        return time.perf_counter() - start, len(text)

    cost(10)  # warm up LLVM
    (t10, size10), (t1000, size1000) = (min(cost(T) for _ in range(3)) for T in (10, 1000))  # least noisy of 3
    assert size1000 <= 1.001 * size10, (size10, size1000)  # only the step counts in the code change
    assert t1000 < 1.5 * t10 + 0.05, (t10, t1000)


def test_the_body_is_part_of_the_compile_cache_key():
    from nnc.backend.cache import cache_key
    from nnc.backend.jit import host

    a, b = rnn_graph(4), rnn_graph(4)
    assert cache_key(a, [a.loss], {"B": B}, host()) == cache_key(b, [b.loss], {"B": B}, host())
    c = rnn_graph(5)
    assert cache_key(a, [a.loss], {"B": B}, host()) != cache_key(c, [c.loss], {"B": B}, host())


def test_the_reverse_loop_reads_residuals_and_leaves_weight_gradients_to_after_the_loop():
    """keep_forward_values and sink_out_of_loops (nnc/passes/loops.py): the reverse body recomputes no
    product, sums nothing over the steps, and splits over the batch; the gradients stay exact."""
    from nnc.backend.kernels.scan import rows_independent

    g = rnn_graph(5)
    gg = pipeline.gradient(g, wrt=["xs", "h0", "wx", "wh", "b"])
    scans = {gg.nodes[n]["attrs"]["reverse"]: gg.nodes[n]["attrs"] for n in gg.nodes if gg.op(n) is ops.scan}
    forward, backward = scans[False], scans[True]
    assert any(name.startswith("residual/") for name in forward["ys"])
    assert any(name.startswith("residual/") for name in backward["seq_in"])
    assert backward["accs"] == ()
    assert not any(backward["body"].op(n) is ops.matmul and backward["body"].nodes[n]["attrs"].get("ta")
                   for n in backward["body"].nodes)
    assert rows_independent(backward["body"], "B") and rows_independent(forward["body"], "B")
    products = [n for n in gg.nodes if gg.op(n) is ops.matmul_sum]
    assert products, "dW = Σ_t h_tᵀ·dz_t as one product after the loop"
