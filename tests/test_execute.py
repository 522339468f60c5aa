"""Which backend runs `Model.eval`, `Model.grad`, `nnc eval`, `nnc grad` and `nnc explain`: native code
by default, the reference interpreter on request or for float64."""

from __future__ import annotations

import numpy as np
import pytest

import nnc
from nnc.cli.main import main
from nnc.errors import NncError
from nnc.runtime import execute

CIRCUIT = "examples/circuit.nn"


def test_native_is_the_default_and_float64_means_the_reference():
    assert execute.choose_backend(None, np.float32) == "llvm"
    assert execute.choose_backend(None, np.float64) == "reference"
    assert execute.choose_backend("reference", np.float32) == "reference"
    with pytest.raises(NncError, match="the native backend computes in float32: got float64"):
        execute.choose_backend("llvm", np.float64)
    with pytest.raises(NncError, match="unknown backend: got 'gpu'"):
        execute.choose_backend("gpu", np.float32)


def test_eval_and_grad_run_native_code(monkeypatch):
    m = nnc.load("examples/mnist_mlp.nn")
    inputs = m.random_inputs(5, seed=3)
    calls = []
    real = execute._executable
    monkeypatch.setattr(execute, "_executable", lambda *a: calls.append(a) or real(*a))
    params = m.init_params(seed=1)
    native = m.eval(inputs, params)
    grads = m.grad(inputs, params)
    assert len(calls) == 2  # one compiled forward, one compiled forward + backward
    reference = m.eval(inputs, params, backend="reference")
    ref_grads = m.grad(inputs, params, backend="reference")
    assert len(calls) == 2
    np.testing.assert_allclose(native["logits"], reference["logits"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(native["loss"], reference["loss"], rtol=1e-5)
    for name in ref_grads.grads:
        np.testing.assert_allclose(grads.grads[name], ref_grads.grads[name], rtol=1e-3, atol=1e-6, err_msg=name)


def test_a_second_eval_reuses_the_compiled_code(monkeypatch):
    m = nnc.load(CIRCUIT)
    m.eval({"x": -2, "y": 5, "z": -4})
    from nnc import backend
    monkeypatch.setattr(backend, "compile_graph", lambda *a, **k: pytest.fail("compiled twice"))
    assert float(m.eval({"x": 1, "y": 2, "z": 3})["f"]) == 9


def test_labels_out_of_range_are_located_on_both_backends():
    text = "model m {\n  input z: [B, 3]\n  input k: int[B]\n  output z\n  loss cross_entropy(z, k)\n}"
    for backend in ("llvm", "reference"):
        with pytest.raises(NncError) as info:
            nnc.loads(text, "m.nn").eval({"z": np.zeros((2, 3)), "k": np.array([0, 3])}, backend=backend)
        assert info.value.format().startswith("m.nn:3:9: error: input 'k' holds a class index out of range: "
                                              "got 3, expected 0 to 2")


def test_commands_take_backend(capsys):
    for command in ("eval", "grad", "explain"):
        assert main([command, CIRCUIT, "--at", "x=-2", "y=5", "z=-4", "--backend", "reference"]) == 0
        reference = capsys.readouterr().out
        assert main([command, CIRCUIT, "--at", "x=-2", "y=5", "z=-4"]) == 0
        assert capsys.readouterr().out == reference
        assert "f = -12" in reference
    assert main(["eval", CIRCUIT, "--at", "x=-2", "y=5", "z=-4", "--dtype", "float64", "--backend", "llvm"]) == 1
    assert "the native backend computes in float32" in capsys.readouterr().err
