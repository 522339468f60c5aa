"""ONNX export (nnc/onnx/export.py, `nnc export`): every example model, the classic networks at batch 1, models
of the fuzz generator and small models for the ops the examples do not use are exported, pass onnx's checker
(full check) and strict shape inference, and onnxruntime's outputs equal `nnc eval`'s (native code) within
1e-5 of each output's largest value (1e-6 absolute floor). Outputs drawn from random numbers (dropout, randn)
cannot equal nnc's draws: they are checked for shape, dtype and what the draw must satisfy. The training form
is compared the same way with nnc's training graph; what does not export is one located error."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from conftest import EXAMPLE_FILES, EXAMPLES, run_main

from nnc.errors import NncError
from nnc.fileio import save_npz
from nnc.ir import ops
from nnc.model import load, load_all, loads
from nnc.onnx import export as onnx_export
from nnc.passes import pipeline
from nnc.runtime.execute import run_graph

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fuzz import generate, harness  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


# ---- helpers ---------------------------------------------------------------------------------------------------


def checked(proto):
    """The proto after onnx's full check and strict shape inference (both raise on a problem)."""
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    return proto


def run_onnx(proto, inputs: dict) -> dict:
    """onnxruntime's outputs, fed the inputs the graph declares (nnc's int tensors as int64)."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {}
    for i in session.get_inputs():
        value = np.asarray(inputs[i.name])
        feed[i.name] = value.astype(np.int64) if value.dtype.kind in "iu" else value
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def assert_close(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, nnc {want.shape}"
    if not want.size:
        return
    finite = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), finite), f"{what}: non-finite at other places than nnc's"
    if finite.any():
        scale = float(np.abs(want[finite]).max())
        worst = float(np.abs(got[finite].astype(np.float64) - want[finite]).max())
        assert worst <= RTOL * scale + ATOL, f"{what}: differs from nnc by {worst:.3g} (largest value {scale:.3g})"


def random_dependent(g) -> set:
    """The nodes of `g` whose value depends on a random draw (dropout masks, randn)."""
    drawn = set()
    for n in g.nodes:
        if g.op(n).is_a(ops.RANDOM):
            drawn |= {n} | nx.descendants(g, n)
    return drawn


def compare_eval(model, params, inputs, proto, backend=None) -> dict:
    """onnxruntime's outputs against Model.eval's; outputs drawn from random numbers checked for shape only."""
    want = model.eval(inputs, params, backend=backend)
    got = run_onnx(proto, inputs)
    g = pipeline.forward(model.graph)
    drawn = random_dependent(g)
    targets = dict(g.outputs) or dict(g.losses)
    assert list(got) == list(targets)
    for name, node in targets.items():
        if node in drawn:
            assert got[name].shape == np.shape(want[name]) and np.isfinite(got[name]).all(), name
        else:
            assert_close(got[name], want[name], f"output {name}")
    return got


def models_of(files) -> list:
    return [pytest.param(path, m.name, id=f"{path.stem}:{m.name}") for path in files for m in load_all(path)]


# ---- every example ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, name", models_of(EXAMPLE_FILES))
def test_every_example_exports_and_matches_nnc_eval(path, name):
    model = load(path, model=name)
    params = model.init_params(seed=0)
    proto = checked(onnx_export.to_onnx(model, params))
    compare_eval(model, params, model.random_inputs(batch=2, seed=1), proto)


CLASSIC = sorted((EXAMPLES / "classic").glob("*.nn"))
SKIPPED_CLASSIC = {"vgg16": "138 million parameters: about 40 s here; its ops (conv2d, maxpool, dense, softmax) are "
                            "the other classic networks'"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.skip(reason=SKIPPED_CLASSIC[p.stem]))
                                  if p.stem in SKIPPED_CLASSIC else p for p in CLASSIC], ids=lambda p: p.stem)
def test_classic_networks_export_at_batch_1(path):
    model = load(path)   # the file's first model; the others vary a stride or a pooling rule
    params = model.init_params(seed=0)
    proto = checked(onnx_export.to_onnx(model, params))
    compare_eval(model, params, model.random_inputs(batch=1, seed=1), proto)


def test_the_classic_list_is_what_the_folder_holds():
    assert set(SKIPPED_CLASSIC) <= {p.stem for p in CLASSIC}


# ---- ops the examples do not use --------------------------------------------------------------------------------

SNIPPETS = {
    "upsample_and_transposed_conv": """model m {
  input x: [B, 3, 6, 5]
  up = upsample(x, 2)
  bi = upsample(x, 3, mode="bilinear")
  ct = conv_transpose2d(x, 4, 3, stride=2, pad=1, output_pad=1)
  cg = conv_transpose2d(x, 6, 2, stride=3, groups=3, dilation=2)
  output up, bi, ct, cg
}""",
    "pooling": """model m {
  input x: [B, 2, 7, 9]
  a = avgpool(x, 3, stride=2, pad=1, ceil_mode=true)
  b = avgpool(x, 3, stride=2, pad=1, ceil_mode=true, count_include_pad=false)
  c = maxpool(x, 3, stride=2, pad=1, ceil_mode=true)
  d = avgpool(x, 2)
  e = global_avgpool(x)
  f = avgpool(x, 2, stride=3, pad=1, ceil_mode=true, count_include_pad=false)
  g = maxpool(x, 2, stride=3, pad=1, ceil_mode=true)
  h = avgpool(x, 2, stride=3, pad=1, ceil_mode=true)
  i = avgpool(x, 2, stride=3, ceil_mode=true)
  output a, b, c, d, e, f, g, h, i
}""",
    "indexing": """model m {
  input x: [B, 10, 8]
  last = x[:, -1]
  back = x[:, ::-1]
  odd  = x[:, 1::3, 7:0:-2]
  a, b = split(x, [3, 7], axis=1)
  c    = concat([b, a], axis=1)
  output last, back, odd, c
}""",
    "elementwise": """model m {
  input x: [B, 6]
  input y: [B, 6]
  a = softplus(x, beta=2, threshold=3) + elu(x, 0.7) + leaky_relu(x, 0.2)
  b = xlogy(abs(x), abs(y)) + maximum(x, y) - minimum(x, y) + sign(x) * step(y)
  c = log_softmax(x) + softmax(y, axis=0) + exp(x) / (1 + sqrt(abs(y))) + x ** 2
  d = sum(x, axis=1) + max(y, axis=1) + mean(x * y, axis=1)
  output a, b, c, d
}""",
    "special_functions_and_comparisons": """model m {
  input x: [B, 6]
  input y: [B, 6]
  r = floor(3 * x) + ceil(3 * y) + round(4 * x) + erf(x)
  t = sin(x) + cos(y) + tan(0.5 * x) + atan(y) + sinh(x) + cosh(y) + asinh(x)
  i = asin(0.5 * tanh(x)) + acos(0.5 * tanh(y)) + atanh(0.5 * tanh(x)) + acosh(1 + abs(y))
  c = greater(x, y) + greater_equal(x, 0) + equal(round(x), round(y)) + less(x, y) + less_equal(y, 0.5)
  w = where(greater(x, y), x, 2 * y) + prod(x, axis=1, keepdims=true)
  output r, t, i, c, w
}""",
    "embedding_attention_norms": """model m {
  input tokens: int[B, 12]
  param pos: [12, 32]
  x = embedding(tokens, 40, 32) + pos
  h = x + attention(layernorm(x), 4, 32, causal=true, name="att")
  g = groupnorm(transpose(h, [0, 2, 1]), 4)
  output h, g
}""",
    "losses_as_outputs": """model m {
  input x: [B, 5]
  input label: int[B]
  input t: [B, 5]
  ce   = cross_entropy(x, label)
  soft = cross_entropy(x, softmax(t))
  bce  = binary_cross_entropy(x, sigmoid(t))
  output ce, soft, bce
}""",
}


@pytest.mark.parametrize("name", list(SNIPPETS))
@pytest.mark.parametrize("opset", [17, 18])   # 18 moves the axes of ReduceMean and ReduceMax to an input
def test_ops_beyond_the_examples(name, opset):
    model = loads(SNIPPETS[name], f"{name}.nn")
    params = model.init_params(seed=0)
    proto = checked(onnx_export.to_onnx(model, params, opset=opset))
    assert proto.opset_import[0].version == opset
    compare_eval(model, params, model.random_inputs(batch=3, seed=2), proto)


# ---- recurrent layers: ONNX's LSTM, GRU and RNN ------------------------------------------------------------------

RECURRENT = {   # the layer call -> the ONNX operators it becomes (one node per layer, both directions)
    "lstm(x, 4)": ["LSTM"],
    "lstm(x, 4, return_sequences=true, bidirectional=true)": ["LSTM"],
    "lstm(x, 3, h0=s, c0=2 * s, bidirectional=true, return_sequences=true)": ["LSTM"],
    "lstm(x, 3, c0=s)": ["LSTM"],
    "gru(x, 3, h0=s, return_sequences=true)": ["GRU"],
    "gru(x, 4, bidirectional=true)": ["GRU"],
    'rnn(x, 4, activation="relu", bidirectional=true, return_sequences=true)': ["RNN"],
    "rnn(lstm(x, 4, return_sequences=true, forget_bias=1.0), 3, h0=tanh(s))": ["LSTM", "RNN"],
}


def recurrent_model(call: str, dtype: str = ""):
    return loads(f"""model m {{
  input x: {dtype}[B, 6, 5]
  input s: {dtype}[B, 3]
  y = {call}
  output y
}}""", "m.nn")


@pytest.mark.parametrize("call", list(RECURRENT))
def test_recurrent_layers_export_as_onnx_operators(call):
    """No Scan and no product for the input projection (the operator's W holds it); onnxruntime's outputs are
    nnc's."""
    model = recurrent_model(call)
    params = model.init_params(seed=0)
    proto = checked(onnx_export.to_onnx(model, params))
    op_types = [n.op_type for n in proto.graph.node]
    assert "Scan" not in op_types and "MatMul" not in op_types
    assert [t for t in op_types if t in ("LSTM", "GRU", "RNN")] == RECURRENT[call]
    compare_eval(model, params, model.random_inputs(batch=3, seed=2), proto)


def test_two_bidirectional_layers_on_one_input_keep_their_directions_apart():
    model = recurrent_model("concat([gru(x, 3, bidirectional=true), gru(x, 2, bidirectional=true, name=\"g\")])")
    params = model.init_params(seed=0)
    proto = checked(onnx_export.to_onnx(model, params))
    layers = [n for n in proto.graph.node if n.op_type == "GRU"]
    assert [onnx.helper.get_attribute_value(a) for n in layers for a in n.attribute if a.name == "direction"] == \
        [b"bidirectional", b"bidirectional"]
    compare_eval(model, params, model.random_inputs(batch=2, seed=0), proto)


def test_lstm_weights_in_onnx_layout_and_gate_order():
    """mnist_lstm: W [1, 4H, F], R [1, 4H, H], B [1, 8H] = [W_b, R_b] with ONNX's gates i, o, f, c (nnc's are
    i, f, g, o, PyTorch's); the logits read the last state, Y_h, not the sequence Y."""
    model = load(EXAMPLES / "mnist_lstm.nn")
    params = model.init_params(seed=0)
    proto = checked(onnx_export.to_onnx(model, params))
    init = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert set(init) == {"h.W", "h.R", "h.B", "logits.weight", "logits.bias"}
    hidden = 128
    block = [slice(k * hidden, (k + 1) * hidden) for k in range(4)]
    i, f, g, o = block   # nnc's gate blocks
    for k, gate in enumerate((i, o, f, g)):   # ONNX's block k
        np.testing.assert_array_equal(init["h.W"][0][block[k]], params["h.weight_ih"].T[gate])
        np.testing.assert_array_equal(init["h.R"][0][block[k]], params["h.weight_hh"].T[gate])
        np.testing.assert_array_equal(init["h.B"][0][block[k]], params["h.bias_ih"][gate])
        np.testing.assert_array_equal(init["h.B"][0][4 * hidden:][block[k]], params["h.bias_hh"][gate])
    assert init["h.W"].shape == (1, 512, 28) and init["h.R"].shape == (1, 512, 128) and init["h.B"].shape == (1, 1024)
    (node,) = [n for n in proto.graph.node if n.op_type == "LSTM"]
    read = {x for n in proto.graph.node for x in n.input}
    assert node.output[0] not in read and node.output[1] in read


def test_a_float64_recurrent_layer_stays_a_scan():
    """onnxruntime has float32 kernels only for LSTM, GRU and RNN: a float64 layer is an ONNX Scan."""
    model = recurrent_model("lstm(x, 3, h0=s, bidirectional=true)", "f64")
    params = model.init_params(seed=0)
    proto = checked(onnx_export.to_onnx(model, params))
    op_types = [n.op_type for n in proto.graph.node]
    assert op_types.count("Scan") == 2 and "LSTM" not in op_types
    compare_eval(model, params, model.random_inputs(batch=2, seed=0), proto, backend="reference")


# ---- models of the fuzz generator ---------------------------------------------------------------------------------


def fuzz_models(count: int) -> list:
    """The first `count` generated programs (no wild arguments) that build and are small enough to evaluate."""
    found, seed = [], 0
    while len(found) < count:
        text = generate.program(random.Random(seed), wild=0.0)
        try:
            model = loads(text, f"fuzz{seed}.nn")
        except NncError:
            model = None
        if model is not None and harness._small(model.graph):
            found.append((seed, text))
        seed += 1
    return found


@pytest.mark.parametrize("seed, text", fuzz_models(30), ids=lambda v: str(v) if isinstance(v, int) else "")
def test_generated_models_export_and_match(seed, text):
    model = loads(text, f"fuzz{seed}.nn")
    params = model.complete_params({}, seed)
    proto = checked(onnx_export.to_onnx(model, params))
    float64 = any(t.dtype == "float64" for t in (*model.inputs.values(), *model.param_types.values()))
    try:
        compare_eval(model, params, model.random_inputs(batch=2, seed=seed), proto,
                     backend="reference" if float64 else None)   # native code computes in float32 only
    except ort.capi.onnxruntime_pybind11_state.NotImplemented as err:
        if not float64:
            raise
        pytest.skip(f"onnxruntime has no float64 kernel for an op of this model: {err}")


# ---- names, the dynamic batch, the training form ------------------------------------------------------------------


def test_names_and_the_dynamic_batch_are_kept():
    model = load(EXAMPLES / "mnist_mlp_dropout_bn.nn")
    params = model.init_params(seed=0)
    proto = checked(onnx_export.to_onnx(model, params))
    graph = proto.graph
    assert [i.name for i in graph.input] == ["image"]   # the label is not needed by the logits
    assert [o.name for o in graph.output] == ["logits"]
    assert {t.name for t in graph.initializer} == set(model.param_types)
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["B", 784]
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == ["B", 10]
    for batch in (1, 5):
        inputs = model.random_inputs(batch=batch, seed=batch)
        assert_close(run_onnx(proto, inputs)["logits"], model.eval(inputs, params)["logits"], f"batch {batch}")


TRAINING = ["mnist_mlp_dropout_bn", "resnet_mini", "cifar_cnn", "mnist_lstm", "transformer", "gan_1d", "lenet5"]


@pytest.mark.parametrize("stem", TRAINING)
def test_the_training_form_matches_the_training_graph(stem):
    """Outputs, losses and updated running statistics as nnc's training graph computes them (batch statistics);
    the values downstream of a dropout mask or randn are nnc's own draws, checked for shape only."""
    model = load(EXAMPLES / f"{stem}.nn")
    params = model.init_params(seed=0)
    proto = checked(onnx_export.to_onnx(model, params, training=True))
    g = pipeline.forward(model.training_graph)
    targets = {**g.outputs, **g.losses, **{f"updated/{k}": n for k, n in g.updates.items()}}
    assert [o.name for o in proto.graph.output] == list(targets)
    inputs = model.random_inputs(batch=3, seed=1)
    values = run_graph(g, inputs, params, list(targets.values()))
    got = run_onnx(proto, inputs)
    drawn = random_dependent(g)
    for name, node in targets.items():
        if node in drawn:
            assert got[name].shape == values[node].shape and np.isfinite(got[name]).all(), name
        else:
            assert_close(got[name], values[node], name)


def test_training_form_dropout_keeps_or_scales_each_value():
    model = loads("model m {\n input x: [B, 1000]\n y = dropout(x, 0.25)\n output y\n}", "drop.nn")
    x = np.random.default_rng(0).uniform(1, 2, (4, 1000)).astype(np.float32)
    y = run_onnx(checked(onnx_export.to_onnx(model, {}, training=True)), {"x": x})["y"]
    kept = y != 0
    assert np.allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    assert 0.2 < 1 - kept.mean() < 0.3
    assert_close(run_onnx(checked(onnx_export.to_onnx(model, {})), {"x": x})["y"], x, "evaluation form")


def test_a_model_without_outputs_exports_its_loss():
    model = load(EXAMPLES / "bowl.nn")
    proto = checked(onnx_export.to_onnx(model, model.init_params(0)))
    assert [o.name for o in proto.graph.output] == ["loss"] and not proto.graph.input


# ---- what does not export ------------------------------------------------------------------------------------------


def test_every_op_exports_or_says_why_not():
    leaves = {ops.input, ops.param}   # the graph's inputs and initializers
    missing = [op.name for op in ops.REGISTRY.values()
               if op not in onnx_export.EMIT and op not in onnx_export.UNSUPPORTED and op not in leaves]
    assert not missing, f"ops with neither an ONNX rule nor a reason: {missing}"
    assert not set(onnx_export.EMIT) & set(onnx_export.UNSUPPORTED), "an op with a rule and a reason not to export"


POOL = """model m {
  input x: [B, 2, 7, 9]
  y = maxpool(x, 2)
  output y
}
"""


def test_the_command_says_what_does_not_export_in_one_located_error(tmp_path, monkeypatch):
    monkeypatch.delitem(onnx_export.EMIT, ops.maxpool)   # no model of the language reaches an op without a rule
    (tmp_path / "pool.nn").write_text(POOL)
    result = run_main("export", "pool.nn", "-o", "pool.onnx", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "pool.nn:3:7: error: cannot export 'maxpool' (statement 'y') to ONNX: nnc has no ONNX " \
                       "translation for it"
    assert lines[1:] == ["    y = maxpool(x, 2)", "        ^~~~~~~~~~~~~",
                         "hint: docs/onnx.md lists the ops that export"]
    assert not (tmp_path / "pool.onnx").exists()


def test_an_op_without_a_rule_is_named_with_its_statement(monkeypatch):
    monkeypatch.delitem(onnx_export.EMIT, ops.conv2d)
    model = load(EXAMPLES / "lenet5.nn")
    with pytest.raises(NncError) as info:
        onnx_export.to_onnx(model, model.init_params(0))
    text = info.value.format()
    assert text.startswith(f"{EXAMPLES / 'lenet5.nn'}:5:21: error: cannot export 'conv2d' (statement 'c1') to ONNX: ")
    assert "conv2d(image, 6, 5, pad=2)" in text and "hint: docs/onnx.md" in text


def test_without_the_onnx_package_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)   # `import onnx` raises ImportError
    model = load(EXAMPLES / "mnist_mlp.nn")
    with pytest.raises(NncError) as info:
        onnx_export.to_onnx(model, model.init_params(0))
    assert "pip install -e '.[onnx]'" in info.value.format()


def test_a_model_over_protobufs_limit_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PROTOBUF_LIMIT", 1000)   # mnist_mlp: about 1 MB
    model = load(EXAMPLES / "mnist_mlp.nn")
    with pytest.raises(NncError, match="model 'mnist_mlp' takes 0.0 GB as ONNX, over the 2 GB protobuf allows"):
        onnx_export.export(model, model.init_params(0), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_an_opset_onnx_does_not_have_is_refused():
    model = load(EXAMPLES / "mnist_mlp.nn")
    for opset in (16, onnx.defs.onnx_opset_version() + 1):
        with pytest.raises(NncError, match=f"ONNX opset: got {opset}, expected 17 to"):
            onnx_export.to_onnx(model, model.init_params(0), opset=opset)


# ---- the command and the facade -------------------------------------------------------------------------------------


def test_the_command_exports_trained_parameters(tmp_path):
    model = load(EXAMPLES / "lenet5.nn")
    params = model.init_params(seed=7)
    save_npz(tmp_path / "p.npz", params)
    result = run_main("export", str(EXAMPLES / "lenet5.nn"), "--params", "p.npz", "-o", "lenet5.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote lenet5.onnx: model 'lenet5' (evaluation form), ONNX opset 17, ")
    assert "inputs   image [B, 1, 28, 28]" in result.stdout and "outputs  logits [B, 10]" in result.stdout
    proto = checked(onnx.load(tmp_path / "lenet5.onnx"))
    inputs = model.random_inputs(batch=2, seed=3)
    assert_close(run_onnx(proto, inputs)["logits"], model.eval(inputs, params)["logits"], "logits")


def test_the_command_needs_parameters_or_random_params(tmp_path):
    result = run_main("export", str(EXAMPLES / "mnist_mlp.nn"), "-o", "m.onnx", cwd=tmp_path)
    assert result.returncode == 1
    assert "no values for the randomly initialized parameters" in result.stderr and "--params" in result.stderr
    result = run_main("export", str(EXAMPLES / "mnist_mlp_dropout_bn.nn"), "--random-params", "--training",
                      "--opset", "18", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(training form), ONNX opset 18" in result.stdout
    proto = checked(onnx.load(tmp_path / "mnist_mlp_dropout_bn.onnx"))   # named after the model by default
    assert [i.name for i in proto.graph.input] == ["image", "label"]
    assert proto.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_model_export_onnx(tmp_path):
    model = load(EXAMPLES / "xor.nn")
    proto = model.export_onnx(tmp_path / "xor.onnx", random_params=True, seed=3)
    assert checked(onnx.load(tmp_path / "xor.onnx")) == proto
    params = model.complete_params(None, seed=3)
    inputs = model.random_inputs(batch=4, seed=0)
    assert_close(run_onnx(proto, inputs)["y"], model.eval(inputs, params)["y"], "y")
