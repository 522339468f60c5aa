"""The round trip: every model of every example file exported to ONNX (nnc.onnx.export.to_onnx, the example's
seeded initial parameters) and imported back (nnc.onnx.importer) evaluates as the original does. The recurrent
layers go out as ONNX's LSTM, GRU and RNN operators and come back as nnc's lstm, gru and rnn with the original's
parameters, names and values; so do the variants the examples do not use (bidirectional, relu, an initial
state, the whole sequence)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLE_FILES

import nnc
from nnc.model import load_all

pytest.importorskip("onnx")
from nnc.onnx.export import to_onnx  # noqa: E402
from nnc.onnx.importer import import_onnx  # noqa: E402

NOISE = {"gan_1d", "mnist_gan"}   # outputs drawn from randn: compared where they do not depend on it
RECURRENT = {"char_lstm", "mnist_gru", "mnist_lstm", "sine_rnn", "vanishing_rnn", "vanishing_lstm"}


def round_trip(model, params, batch: int = 3):
    """The model exported and imported back: (the ONNX proto, the imported model, inputs, nnc's outputs,
    the imported model's outputs)."""
    proto = to_onnx(model, params)
    imported = import_onnx(proto)
    again = nnc.loads(imported.text, f"{model.name}.onnx (imported)")
    again.file_params = imported.params
    assert again.random_param_names() == []
    inputs = model.random_inputs(batch, seed=1, names=[i.name for i in proto.graph.input])
    return proto, again, imported, model.eval(inputs, params), again.eval({k: inputs[k] for k in again.inputs})


def models_of(files) -> list:
    return [pytest.param(path, m.name, id=m.name if m.name == path.stem else f"{path.stem}:{m.name}")
            for path in files for m in load_all(path)]


@pytest.mark.parametrize("path, name", models_of(EXAMPLE_FILES))
def test_export_then_import_evaluates_as_the_original(path, name):
    model = nnc.load(path, model=name)
    params = model.complete_params(seed=0)
    proto, again, imported, want, got = round_trip(model, params)
    for output in model.outputs:
        if path.stem in NOISE and output == "fake":
            assert got[output].shape == want[output].shape
            continue
        np.testing.assert_allclose(got[output], want[output], rtol=1e-5, atol=1e-6, err_msg=output)
    ops = {n.op_type for n in proto.graph.node}
    assert "Scan" not in ops
    if name in RECURRENT:   # one ONNX operator per layer; the parameters come back as they were
        assert ops & {"LSTM", "GRU", "RNN"}
        assert set(imported.params) == set(params)
        for key, value in params.items():
            np.testing.assert_array_equal(imported.params[key], value, err_msg=key)
    else:   # every parameter exported came back as one
        assert len(again.param_types) == len(proto.graph.initializer)


def test_the_recurrent_list_is_the_examples_with_recurrent_layers():
    found = {m.name for path in EXAMPLE_FILES for m in load_all(path)
             if {d.get("layer") for _, d in m.graph.nodes(data=True)} & {"lstm", "gru", "rnn"}}
    assert found == RECURRENT


VARIANTS = {
    "bidirectional_lstm_sequences": ("lstm(x, 6, return_sequences=true, bidirectional=true)", "[B, 7, 12]"),
    "bidirectional_gru_last": ("gru(x, 5, bidirectional=true)", "[B, 10]"),
    "relu_rnn_sequences": ('rnn(x, 4, activation="relu", return_sequences=true)', "[B, 7, 4]"),
    "bidirectional_relu_rnn": ('rnn(x, 4, activation="relu", bidirectional=true)', "[B, 8]"),
    "lstm_initial_state": ("lstm(x, 3, h0=s, c0=2 * s)", "[B, 3]"),
    "gru_initial_state_sequences": ("gru(x, 3, h0=s, return_sequences=true)", "[B, 7, 3]"),
    "rnn_initial_state": ("rnn(x, 3, h0=tanh(s))", "[B, 3]"),
}


def variant(name: str):
    call, shape = VARIANTS[name]
    return nnc.loads(f"""model {name} {{
  input x: [B, 7, 5]
  input s: [B, 3]
  h = {call}   # {shape}
  y = h + 0
  output y
}}""", f"{name}.nn")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_recurrent_variants_round_trip(name):
    model = variant(name)
    params = model.complete_params(seed=0)
    proto, again, imported, want, got = round_trip(model, params)
    assert {n.op_type for n in proto.graph.node} & {"LSTM", "GRU", "RNN"}
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-6)
    assert set(imported.params) == set(params)
    for key, value in params.items():
        np.testing.assert_array_equal(imported.params[key], value, err_msg=key)
