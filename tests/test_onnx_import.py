"""ONNX import: hand-built graphs (onnx.helper), one or a few per translator of nnc/onnx/ops_nn.py, imported and
evaluated by nnc and compared with onnxruntime; the shape arithmetic a PyTorch export emits folded; one error for
every unsupported operator; `nnc import` and every command on an .onnx file; fine-tuning from the imported
values."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_main

import nnc
from nnc.errors import NncError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from nnc.onnx.importer import import_onnx  # noqa: E402

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def randn(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def make(nodes, inputs: dict, inits: dict | None = None, outputs=("y",), opset: int = 17, types=None, check=True):
    """A model: `inputs` name -> shape (the first dim the symbolic batch), float unless `types` says otherwise."""
    types = types or {}
    ins = [helper.make_tensor_value_info(k, types.get(k, F), ["batch", *shape[1:]]) for k, shape in inputs.items()]
    outs = [helper.make_tensor_value_info(k, F, None) for k in outputs]
    graph = helper.make_graph(nodes, "g", ins, outs, [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if check:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)   # the outputs' shapes, and checks
        del model.graph.output[:]
        model.graph.output.extend(inferred.graph.output)
        onnx.checker.check_model(model)
    return model


def compare(tmp_path, model, feeds: dict, rtol=1e-5, atol=1e-6):
    """nnc's outputs (the .onnx file loaded directly) against onnxruntime's; the imported text for a look."""
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    m = nnc.load(str(path))
    got = m.eval(feeds)
    names = [o.name for o in model.graph.output]
    for name, want in zip(names, expected):
        np.testing.assert_allclose(got[m.outputs[names.index(name)]], want, rtol=rtol, atol=atol, err_msg=name)
    return import_onnx(model).text


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, **attrs)


# ---- linear layers ------------------------------------------------------------------------------------------


def test_gemm_transposed_weight_becomes_dense_with_the_weight_converted(tmp_path):
    model = make([node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], transB=1, alpha=0.5, beta=2.0)],
                 {"x": [2, 6]}, {"fc.weight": randn(4, 6), "fc.bias": randn(4)})
    text = compare(tmp_path, model, {"x": randn(3, 6)})
    assert 'dense(x, 4, name="fc")' in text
    params = import_onnx(model).params
    np.testing.assert_allclose(params["fc.weight"], 0.5 * numpy_helper.to_array(model.graph.initializer[0]).T)


def test_gemm_without_bias_and_of_two_inputs(tmp_path):
    model = make([node("Gemm", ["x", "w"], ["y"]), node("Gemm", ["x", "v", "c"], ["z"], transB=1)],
                 {"x": [2, 3], "v": [2, 3]}, {"w": randn(3, 5), "c": randn(1)}, outputs=("y", "z"))
    compare(tmp_path, model, {"x": randn(2, 3), "v": randn(2, 3)})


def test_matmul_and_add_fuse_into_one_dense_on_a_sequence(tmp_path):
    model = make([node("MatMul", ["x", "W"], ["m"], name="/proj/MatMul"), node("Add", ["m", "b"], ["y"])],
                 {"x": [2, 5, 3]}, {"W": randn(3, 4), "b": randn(4)})
    text = compare(tmp_path, model, {"x": randn(2, 5, 3)})
    assert text.count("dense(") == 1 and " + " not in text


def test_matmul_of_two_values(tmp_path):
    model = make([node("MatMul", ["a", "b"], ["y"])], {"a": [2, 3, 4], "b": [2, 4, 5]})
    compare(tmp_path, model, {"a": randn(2, 3, 4), "b": randn(2, 4, 5)})


# ---- convolutions and pooling -------------------------------------------------------------------------------


@pytest.mark.parametrize("attrs,bias", [({"pads": [1, 1, 1, 1]}, True), ({"strides": [2, 2], "group": 2}, False),
                                        ({"dilations": [2, 2], "pads": [2, 2, 2, 2]}, True),
                                        ({"auto_pad": "SAME_UPPER"}, True)])
def test_conv(tmp_path, attrs, bias):
    inits = {"c.weight": randn(6, 4 // attrs.get("group", 1), 3, 3)}
    if bias:
        inits["c.bias"] = randn(6)
    model = make([node("Conv", ["x", *inits], ["y"], kernel_shape=[3, 3], **attrs)], {"x": [2, 4, 9, 9]}, inits)
    text = compare(tmp_path, model, {"x": randn(2, 4, 9, 9)})
    assert 'conv2d(x, 6, 3' in text and 'name="c"' in text


def test_conv_transpose(tmp_path):
    inits = {"up.weight": randn(4, 3, 3, 3), "up.bias": randn(3)}
    model = make([node("ConvTranspose", ["x", "up.weight", "up.bias"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                       output_padding=[1, 1])], {"x": [2, 4, 5, 5]}, inits)
    text = compare(tmp_path, model, {"x": randn(2, 4, 5, 5)})
    assert "conv_transpose2d(x, 3, 3, stride=2, pad=1, output_pad=1" in text


@pytest.mark.parametrize("op,attrs", [("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
                                      ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
                                      ("MaxPool", {"kernel_shape": [3, 3]}),
                                      ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2],
                                                       "pads": [1, 1, 1, 1]}),
                                      ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                                       "count_include_pad": 1})])
def test_pooling(tmp_path, op, attrs):
    model = make([node(op, ["x"], ["y"], **attrs)], {"x": [2, 3, 7, 7]})
    compare(tmp_path, model, {"x": randn(2, 3, 7, 7)})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pooling(tmp_path, op):
    compare(tmp_path, make([node(op, ["x"], ["y"])], {"x": [2, 3, 5, 4]}), {"x": randn(2, 3, 5, 4)})


# ---- normalization and softmax ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [[2, 4, 5, 5], [2, 4]])
def test_batchnorm_uses_the_running_statistics_and_converts_momentum(tmp_path, shape):
    inits = {"bn.weight": randn(4), "bn.bias": randn(4), "bn.running_mean": randn(4),
             "bn.running_var": RNG.uniform(0.5, 2, 4).astype(np.float32)}
    model = make([node("BatchNormalization", ["x", *inits], ["y"], epsilon=1e-3, momentum=0.8)], {"x": shape}, inits)
    text = compare(tmp_path, model, {"x": randn(3, *shape[1:])})
    assert 'batchnorm(x, momentum=0.2, eps=0.001, name="bn")' in text
    assert sorted(import_onnx(model).params) == ["bn.beta", "bn.gamma", "bn.running_mean", "bn.running_var"]


def test_layernorm(tmp_path):
    inits = {"ln.weight": randn(6), "ln.bias": randn(6)}
    model = make([node("LayerNormalization", ["x", "ln.weight", "ln.bias"], ["y"], axis=-1, epsilon=1e-5)],
                 {"x": [2, 3, 6]}, inits)
    compare(tmp_path, model, {"x": randn(2, 3, 6)})


@pytest.mark.parametrize("op,axis", [("Softmax", 1), ("Softmax", -1), ("LogSoftmax", 2)])
def test_softmax(tmp_path, op, axis):
    compare(tmp_path, make([node(op, ["x"], ["y"], axis=axis)], {"x": [2, 3, 4]}), {"x": randn(2, 3, 4)})


def test_softmax_of_opset_11_flattens_from_its_axis(tmp_path):
    model = make([node("Softmax", ["x"], ["y"])], {"x": [2, 5]}, opset=11)
    compare(tmp_path, model, {"x": randn(3, 5)})


# ---- activations and arithmetic -----------------------------------------------------------------------------


@pytest.mark.parametrize("op,attrs", [("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("LeakyRelu", {"alpha": 0.2}),
                                      ("Elu", {"alpha": 0.7}), ("Softplus", {}), ("Identity", {})])
def test_activations(tmp_path, op, attrs):
    compare(tmp_path, make([node(op, ["x"], ["y"], **attrs)], {"x": [2, 7]}), {"x": randn(3, 7, scale=3)})


def test_arithmetic_broadcasts_with_initializers_and_constants(tmp_path):
    c = helper.make_tensor("c", F, [], [2.5])
    nodes = [node("Constant", [], ["two"], value=c), node("Add", ["x", "b"], ["s"]), node("Sub", ["s", "two"], ["d"]),
             node("Mul", ["d", "x"], ["p"]), node("Div", ["p", "q"], ["y"])]
    model = make(nodes, {"x": [2, 3, 4]}, {"b": randn(4), "q": RNG.uniform(1, 2, (3, 1)).astype(np.float32)})
    text = compare(tmp_path, model, {"x": randn(2, 3, 4)})
    assert "2.5" in text


def test_dropout_is_the_identity_in_evaluation(tmp_path):
    model = make([node("Dropout", ["x", "r"], ["y"])], {"x": [2, 5]}, {"r": np.array(0.3, dtype=np.float32)})
    text = compare(tmp_path, model, {"x": randn(2, 5)})
    assert "dropout(x, 0.3)" in text


# ---- shapes -------------------------------------------------------------------------------------------------


def test_the_shape_arithmetic_of_a_pytorch_view_folds_to_a_reshape_keeping_the_batch(tmp_path):
    """x.view(x.size(0), -1): Shape, Gather, Unsqueeze, Concat, Reshape."""
    i64 = TensorProto.INT64
    nodes = [node("Shape", ["x"], ["s"]),
             node("Constant", [], ["zero"], value=helper.make_tensor("z", i64, [], [0])),
             node("Gather", ["s", "zero"], ["b"], axis=0),
             node("Constant", [], ["ax"], value=helper.make_tensor("a", i64, [1], [0])),
             node("Unsqueeze", ["b", "ax"], ["b1"]),
             node("Constant", [], ["minus"], value=helper.make_tensor("m", i64, [1], [-1])),
             node("Concat", ["b1", "minus"], ["shape"], axis=0),
             node("Reshape", ["x", "shape"], ["y"])]
    text = compare(tmp_path, make(nodes, {"x": [2, 3, 4, 5]}), {"x": randn(6, 3, 4, 5)})
    assert "reshape(x, [B, 60])" in text and "Shape" not in text


@pytest.mark.parametrize("target", [[0, -1], [-1, 20, 3], [0, 3, 2, 10]])
def test_reshape_with_a_constant_shape(tmp_path, target):
    model = make([node("Reshape", ["x", "t"], ["y"])], {"x": [2, 3, 4, 5]}, {"t": np.array(target, np.int64)})
    compare(tmp_path, model, {"x": randn(2, 3, 4, 5)})


@pytest.mark.parametrize("axis", [1, -3])
def test_flatten(tmp_path, axis):
    compare(tmp_path, make([node("Flatten", ["x"], ["y"], axis=axis)], {"x": [2, 3, 4, 5]}), {"x": randn(2, 3, 4, 5)})


def test_flatten_into_the_batch_dim_is_an_error():
    with pytest.raises(NncError, match=r"ONNX node 'y' \(Flatten\): flatten of \[B, 3, 4, 5\] at axis 2 merges"):
        import_onnx(make([node("Flatten", ["x"], ["y"], axis=2)], {"x": [2, 3, 4, 5]}))


def test_transpose_concat_squeeze_unsqueeze(tmp_path):
    nodes = [node("Transpose", ["x"], ["t"], perm=[0, 2, 1]), node("Concat", ["t", "t"], ["c"], axis=-1),
             node("Unsqueeze", ["c", "ax"], ["u"]), node("Squeeze", ["u", "ax"], ["y"])]
    model = make(nodes, {"x": [2, 3, 4]}, {"ax": np.array([2], np.int64)})
    compare(tmp_path, model, {"x": randn(2, 3, 4)})


@pytest.mark.parametrize("starts,ends,axes,steps", [([1], [3], [1], [1]), ([0, -1], [10, -5], [1, 2], [2, -1]),
                                                   ([-2], [2 ** 62], [2], [1]), ([3], [-100], [1], [-2])])
def test_slice(tmp_path, starts, ends, axes, steps):
    arr = {"s": starts, "e": ends, "a": axes, "p": steps}
    model = make([node("Slice", ["x", "s", "e", "a", "p"], ["y"])], {"x": [2, 5, 6]},
                 {k: np.array(v, np.int64) for k, v in arr.items()})
    compare(tmp_path, model, {"x": randn(2, 5, 6)})


def test_gather_of_one_position_and_an_embedding_table(tmp_path):
    nodes = [node("Gather", ["x", "i"], ["y"], axis=1), node("Gather", ["emb.weight", "ids"], ["z"])]
    model = make(nodes, {"x": [2, 5, 6], "ids": [2, 3]}, {"i": np.array(-2, np.int64), "emb.weight": randn(7, 4)},
                 outputs=("y", "z"), types={"ids": TensorProto.INT64})
    text = compare(tmp_path, model, {"x": randn(2, 5, 6), "ids": RNG.integers(0, 7, (2, 3)).astype(np.int64)})
    assert "x[:, 3]" in text and 'embedding(ids, 7, 4, name="emb")' in text


def test_names_are_readable_and_never_hide_a_function(tmp_path):
    nodes = [node("Relu", ["x"], ["r1"], name="/relu/Relu"), node("Relu", ["r1"], ["r2"], name="/Relu_1"),
             node("Conv", ["r2", "layer1.0.conv1.weight"], ["y"], name="/layer1/layer1.0/conv1/Conv",
                  kernel_shape=[1, 1])]
    model = make(nodes, {"x": [2, 3, 4, 4]}, {"layer1.0.conv1.weight": randn(2, 3, 1, 1)})
    text = compare(tmp_path, model, {"x": randn(2, 3, 4, 4)})
    assert "relu1 = relu(x)" in text and "relu2 = relu(relu1)" in text
    assert 'y = conv2d(relu2, 2, 1, bias=false, name="layer1_0.conv1")' in text
    assert list(import_onnx(model).params) == ["layer1_0.conv1.weight"]


# ---- errors -------------------------------------------------------------------------------------------------


def unsupported_model():
    nodes = [node("DeformConv", ["x", "w", "o"], ["a"]), node("DeformConv", ["a", "w", "o"], ["b"]),
             node("RoiAlign", ["b", "r", "i"], ["y"]), node("Relu", ["x"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, ["batch", 3])],
                              [helper.make_tensor_value_info("y", F, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_every_unsupported_operator_is_listed_in_one_error():
    with pytest.raises(NncError) as e:
        import_onnx(unsupported_model())
    assert e.value.message == ("the ONNX model uses 3 node(s) of 2 operator(s) nnc cannot import: DeformConv ×2, "
                               "RoiAlign")


def test_nnc_check_of_an_unsupported_model_is_one_error_and_exit_1(tmp_path):
    onnx.save(unsupported_model(), str(tmp_path / "bad.onnx"))
    done = run_main("check", tmp_path / "bad.onnx")
    assert done.returncode == 1
    assert "DeformConv ×2, RoiAlign" in done.stderr and "Traceback" not in done.stderr
    done = run_main("check", tmp_path / "missing.onnx")
    assert done.returncode == 1 and "no such file" in done.stderr
    (tmp_path / "junk.onnx").write_bytes(b"\x01\x02 not a protobuf")
    done = run_main("eval", tmp_path / "junk.onnx")
    assert done.returncode == 1 and "not an ONNX model" in done.stderr


def test_an_unknown_value_shape_in_a_translator_is_an_error_naming_the_node():
    model = make([node("Reshape", ["x", "t"], ["y"], name="r")], {"x": [2, 6], "t": [2]},
                 types={"t": TensorProto.INT64}, check=False)
    with pytest.raises(NncError, match=r"ONNX node 'r' \(Reshape\): the target shape is computed at run time"):
        import_onnx(model)


# ---- commands -----------------------------------------------------------------------------------------------


def mlp():
    nodes = [node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1, name="/fc1/Gemm"),
             node("Relu", ["h"], ["r"], name="/Relu"),
             node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["logits"], transB=1, name="/fc2/Gemm")]
    return make(nodes, {"x": [2, 4]}, {"fc1.weight": randn(8, 4), "fc1.bias": randn(8), "fc2.weight": randn(3, 8),
                                       "fc2.bias": randn(3)}, outputs=("logits",))


def test_nnc_import_writes_a_model_and_its_parameters_that_evaluate_as_onnxruntime(tmp_path):
    onnx.save(mlp(), str(tmp_path / "mlp.onnx"))
    done = run_main("import", "mlp.onnx", "-o", "net.nn", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote net.nn" in done.stdout and "wrote net.npz: 4 parameters" in done.stdout
    text = (tmp_path / "net.nn").read_text()
    assert "# parameters: net.npz" in text and 'fc1 = dense(x, 8, name="fc1")' in text
    assert run_main("check", "net.nn", cwd=tmp_path).returncode == 0
    x = randn(5, 4)
    np.savez(tmp_path / "x.npz", x=x)
    want = ort.InferenceSession(str(tmp_path / "mlp.onnx")).run(None, {"x": x})[0]
    got = nnc.load(tmp_path / "net.nn").eval({"x": x}, params=str(tmp_path / "net.npz"))["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    again = run_main("import", "mlp.onnx", "-o", "net.nn", cwd=tmp_path)
    assert again.returncode == 1 and "net.nn exists" in again.stderr
    assert run_main("import", "mlp.onnx", "-o", "net.nn", "--overwrite", cwd=tmp_path).returncode == 0


def test_every_command_takes_the_onnx_file_with_its_values_as_the_parameters(tmp_path):
    onnx.save(mlp(), str(tmp_path / "mlp.onnx"))
    x = randn(3, 4)
    np.savez(tmp_path / "x.npz", x=x)
    want = ort.InferenceSession(str(tmp_path / "mlp.onnx")).run(None, {"x": x})[0]
    done = run_main("eval", "mlp.onnx", "--inputs", "x.npz", "--save", "out.npz", cwd=tmp_path)
    if done.returncode == 2:   # no --save: read the printed numbers instead
        done = run_main("eval", "mlp.onnx", "--inputs", "x.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "random" not in done.stdout
    m = nnc.load(tmp_path / "mlp.onnx")
    assert m.random_param_names() == []
    np.testing.assert_allclose(m.eval({"x": x})["logits"], want, rtol=1e-5, atol=1e-6)
    done = run_main("check", "mlp.onnx", cwd=tmp_path)
    assert done.returncode == 0 and "fc1      dense" in done.stdout


def test_fine_tuning_starts_from_the_imported_values(tmp_path):
    """--loss adds the target and the loss; training starts from the initializers (a step of lr 0 keeps them)."""
    onnx.save(mlp(), str(tmp_path / "mlp.onnx"))
    m = nnc.model.load_onnx(tmp_path / "mlp.onnx", loss="cross_entropy")
    assert list(m.inputs) == ["x", "label"] and str(m.inputs["label"]) == "int[B]"
    data = tmp_path / "d.npz"
    np.savez(data, x=randn(16, 4), label=RNG.integers(0, 3, 16).astype(np.int32))
    m.fit(str(data), epochs=1, batch=8, lr=1e-30, optimizer="sgd", progress=False)
    for name, value in m.file_params.items():
        np.testing.assert_allclose(m.params[name], value, rtol=1e-6, err_msg=name)
    with pytest.raises(NncError, match="--loss: got 'hinge'|loss: got 'hinge'"):
        nnc.model.load_onnx(tmp_path / "mlp.onnx", loss="hinge")
    done = run_main("run", "examples/xor.nn", "--loss", "mse")
    assert done.returncode == 1 and "is for an .onnx model" in done.stderr


def test_split_into_several_values(tmp_path):
    nodes = [node("Split", ["x", "sizes"], ["a", "b"], axis=2), node("Mul", ["a", "b"], ["y"])]
    model = make(nodes, {"x": [2, 3, 6]}, {"sizes": np.array([3, 3], np.int64)})
    text = compare(tmp_path, model, {"x": randn(2, 3, 6)})
    assert "split(x, [3, 3], axis=2)" in text


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_recurrent_layer_with_an_initial_state_reorders_the_gates(tmp_path, op):
    """ONNX's gate blocks (LSTM i o f c, GRU z r h) become nnc's (PyTorch's i f g o, r z n); X is [T, B, D]."""
    g = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    inits = {"W": randn(1, g * 5, 3), "R": randn(1, g * 5, 5), "Bias": randn(1, 2 * g * 5)}
    attrs = {"hidden_size": 5, **({"linear_before_reset": 1} if op == "GRU" else {})}
    nodes = [node(op, ["x", "W", "R", "Bias", "", "h0"], ["y", "h"], **attrs)]
    model = make(nodes, {"x": [4, 2, 3], "h0": [1, 2, 5]}, inits, outputs=("y", "h"), opset=14, check=False)
    for vi, size in zip(model.graph.input, (4, 1)):   # fixed sizes: the first dims are not the batch here
        vi.type.tensor_type.shape.dim[0].dim_value = size
    compare(tmp_path, model, {"x": randn(4, 2, 3), "h0": randn(1, 2, 5)})


def test_without_the_onnx_package_one_error_says_how_to_install_it(tmp_path, monkeypatch):
    onnx.save(mlp(), str(tmp_path / "mlp.onnx"))
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)   # `import onnx` raises ImportError
    with pytest.raises(NncError) as e:
        nnc.load(tmp_path / "mlp.onnx")
    assert e.value.message == "reading ONNX files needs the onnx package"
    assert e.value.hint == "pip install -e '.[onnx]'"


# ---- round two: Dropout's modes, Expand, constant outputs, Pad, Tile, GatherElements, Resize, functions ------


def test_dropout_of_evaluation_gives_x_and_a_mask_of_ones_and_training_mode_is_refused(tmp_path):
    nodes = [node("Dropout", ["x", "r", "t"], ["y", "mask"])]
    ins = [helper.make_tensor_value_info("x", F, ["batch", 5])]
    outs = [helper.make_tensor_value_info("y", F, ["batch", 5]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", 5])]
    inits = [numpy_helper.from_array(np.array(0.3, np.float32), "r"), numpy_helper.from_array(np.array(False), "t")]
    model = helper.make_model(helper.make_graph(nodes, "g", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    x = randn(3, 5)
    m = nnc.load(_saved(tmp_path, model))
    got = m.eval({"x": x})
    np.testing.assert_array_equal(got["y"], x)
    np.testing.assert_array_equal(got["mask"], np.ones((3, 5)))
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array(True), "t"))
    with pytest.raises(NncError, match=r"\(Dropout\): training_mode=true: ONNX's random mask"):
        import_onnx(model)


def _saved(tmp_path, model):
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("shape,target,text", [([2, 3, 1], [3, 4], "y = broadcast_to(x, [B, 3, 4])"),
                                               ([2, 1, 4], [2, 1, 1, 4], "y = broadcast_to(x, [2, B, 1, 4])"),
                                               ([2, 3, 4], [1, 1], "y = x")])
def test_expand_broadcasts_to_the_target_or_is_the_value_itself(tmp_path, shape, target, text):
    model = make([node("Expand", ["x", "s"], ["y"])], {"x": shape}, {"s": np.array(target, np.int64)})
    assert text in compare(tmp_path, model, {"x": randn(5, *shape[1:])})


def test_shape_and_size_outputs_are_tensors_of_the_folded_numbers(tmp_path):
    nodes = [node("Shape", ["x"], ["s"], start=1), node("Size", ["x"], ["n"]), node("Relu", ["x"], ["y"])]
    ins = [helper.make_tensor_value_info("x", F, [2, 3, 4])]
    outs = [helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("n", TensorProto.INT64, []), helper.make_tensor_value_info("y", F, None)]
    model = helper.make_model(helper.make_graph(nodes, "g", ins, outs), opset_imports=[helper.make_opsetid("", 17)])
    text = compare(tmp_path, model, {"x": randn(2, 3, 4)})
    assert "s = broadcast_to([3, 4], [2])" in text and "n = broadcast_to(24, [])" in text


@pytest.mark.parametrize("mode,pads", [("constant", [0, 1, 2, 0, 2, 1]), ("constant", [0, -1, 2, 0, 1, -2]),
                                       ("reflect", [0, 2, 1, 0, 1, 3]), ("edge", [0, 2, 3, 0, 1, 1]),
                                       ("wrap", [0, 3, 1, 0, 2, 4])])
def test_pad(tmp_path, mode, pads):
    inputs = ["x", "p"] + (["v"] if mode == "constant" else [])
    inits = {"p": np.array(pads, np.int64), "v": np.array(-1.5, np.float32)}
    model = make([node("Pad", inputs, ["y"], mode=mode)], {"x": [2, 4, 5]}, inits, opset=19)
    text = compare(tmp_path, model, {"x": randn(3, 4, 5)})
    assert "concat([" in text


def test_pad_with_the_constant_an_input_and_given_axes(tmp_path):
    model = make([node("Pad", ["x", "p", "v", "axes"], ["y"])], {"x": [2, 3, 4], "v": [1]},
                 {"p": np.array([1, 2, 0, 1], np.int64), "axes": np.array([-1, 1], np.int64)}, opset=19)
    model.graph.input[1].type.tensor_type.shape.dim[0].dim_value = 1   # a scalar-like [1], not the batch
    compare(tmp_path, model, {"x": randn(3, 3, 4), "v": np.array([2.5], np.float32)})


def test_tile_keeps_the_batch_and_repeats_the_other_axes(tmp_path):
    model = make([node("Tile", ["x", "r"], ["y"])], {"x": [2, 3, 2]}, {"r": np.array([1, 2, 3], np.int64)})
    text = compare(tmp_path, model, {"x": randn(4, 3, 2)})
    assert "reshape(broadcast_to(reshape(x, [B, 1, 3, 1, 2]), [B, 2, 3, 3, 2]), [B, 6, 6])" in text


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements_of_indices_known_at_import_time(tmp_path, axis):
    idx = RNG.integers(-3, 3, (3, 2, 3)).astype(np.int64)
    if axis == 0:
        idx = RNG.integers(0, 3, (2, 2, 3)).astype(np.int64)
    ins = [helper.make_tensor_value_info("x", F, [3, 3, 3])]
    model = helper.make_model(helper.make_graph(
        [node("GatherElements", ["x", "i"], ["y"], axis=axis)], "g", ins, [helper.make_tensor_value_info("y", F, None)],
        [numpy_helper.from_array(idx, "i")]), opset_imports=[helper.make_opsetid("", 17)])
    compare(tmp_path, model, {"x": randn(3, 3, 3)})


@pytest.mark.parametrize("attrs,upsample", [
    ({"mode": "nearest"}, "upsample(x, 2)"),   # half_pixel with round_prefer_floor: each pixel repeated
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, "upsample(x, 2)"),
    ({"mode": "linear"}, 'upsample(x, 2, mode="bilinear")'),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, 'upsample(x, 2, mode="bilinear")'),
])
def test_resize_by_a_whole_factor_is_upsample(tmp_path, attrs, upsample):
    model = make([node("Resize", ["x", "", "s"], ["y"], **attrs)], {"x": [2, 3, 4, 5]},
                 {"s": np.array([1, 1, 2, 2], np.float32)}, opset=13)
    assert upsample in compare(tmp_path, model, {"x": randn(2, 3, 4, 5)})
    sizes = make([node("Resize", ["x", "", "", "n"], ["y"], axes=[3, 2], **attrs)], {"x": [2, 3, 4, 5]},
                 {"n": np.array([10, 8], np.int64)}, opset=18)
    compare(tmp_path, sizes, {"x": randn(2, 3, 4, 5)})


@pytest.mark.parametrize("attrs,why", [
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "ceil"}, "picks other pixels"),
    ({"mode": "cubic"}, "nnc's upsample is nearest, or bilinear"),
])
def test_resize_that_upsample_does_not_compute_is_an_error(attrs, why):
    model = make([node("Resize", ["x", "", "s"], ["y"], **attrs)], {"x": [2, 3, 4, 5]},
                 {"s": np.array([1, 1, 2, 2], np.float32)}, opset=13)
    with pytest.raises(NncError, match=why):
        import_onnx(model)
    with pytest.raises(NncError, match="one whole factor"):
        import_onnx(make([node("Resize", ["x", "", "s"], ["y"])], {"x": [2, 3, 4, 5]},
                         {"s": np.array([1, 1, 1.5, 1.5], np.float32)}, opset=13))


def test_an_operator_defined_as_an_onnx_function_imports_as_its_body(tmp_path):
    """Attention (opset 23) has no translator of its own: the importer expands ONNX's function definition of it
    (MatMul, Softmax, ...), here with a causal mask, whose −inf constants nnc writes as log(0.0)."""
    ins = [helper.make_tensor_value_info(k, F, [2, 3, 4, 8]) for k in ("q", "k", "v")]
    model = helper.make_model(helper.make_graph(
        [node("Attention", ["q", "k", "v"], ["y"], is_causal=1)], "g", ins,
        [helper.make_tensor_value_info("y", F, None)]), opset_imports=[helper.make_opsetid("", 23)])
    text = compare(tmp_path, model, {k: randn(2, 3, 4, 8) for k in ("q", "k", "v")})
    assert "softmax(" in text and "where([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]" in text and "log(0.0)" in text


def test_infinite_constants_and_a_bool_input_mask(tmp_path):
    c = np.array([0.0, -np.inf, 1.5, np.inf], np.float32)
    nodes = [node("Where", ["m", "x", "c"], ["w"]), node("Max", ["w", "lo"], ["y"])]
    model = make(nodes, {"x": [2, 4], "m": [2, 4]}, {"c": c, "lo": np.array(-np.inf, np.float32)},
                 types={"m": TensorProto.BOOL})
    model.graph.initializer.pop()   # c and lo as constants of the graph, not initializers (parameters)
    model.graph.initializer.pop()
    model.graph.node.insert(0, helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(c)))
    model.graph.node.insert(0, helper.make_node("Constant", [], ["lo"],
                                                value=numpy_helper.from_array(np.array(-np.inf, np.float32))))
    mask = RNG.integers(0, 2, (3, 4)).astype(bool)
    x = randn(3, 4)
    path = _saved(tmp_path, model)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x, "m": mask})[0]
    np.testing.assert_array_equal(nnc.load(path).eval({"x": x, "m": mask.astype(np.float32)})["y"], want)
    assert "where(" in import_onnx(model).text and "input m: [B, 4]" in import_onnx(model).text


def test_broadcast_to_has_the_gradient_of_a_sum_over_the_repeats(tmp_path):
    (tmp_path / "b.nn").write_text("model b {\n  input x: [B, 3, 1]\n  param w: [1, 4]\n"
                                   "  y = broadcast_to(x, [2, B, 3, 4]) * w\n  loss sum(square(y))\n}\n")
    done = run_main("grad", "b.nn", "--random-inputs", "--random-params", "--check", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "w         4 entries" in done.stdout and "x        12 entries" in done.stdout and " ok" in done.stdout


def test_grad_and_bench_take_loss_and_resume_remembers_it(tmp_path):
    onnx.save(mlp(), str(tmp_path / "mlp.onnx"))
    done = run_main("grad", "mlp.onnx", "--loss", "cross_entropy", "--random-inputs", cwd=tmp_path)
    assert done.returncode == 0 and "dloss/dfc1.weight" in done.stdout, done.stderr
    done = run_main("bench", "mlp.onnx", "--loss", "mse", "--rounds", "1", "--batch", "4", cwd=tmp_path)
    assert done.returncode == 0 and "training step, batch 4" in done.stdout, done.stderr
    done = run_main("bench", "mlp.onnx", "--rounds", "1", cwd=tmp_path)
    assert done.returncode == 1 and "--loss cross_entropy" in done.stderr
    np.savez(tmp_path / "d.npz", x=randn(32, 4), label=RNG.integers(0, 3, 32).astype(np.int32))
    done = run_main("run", "mlp.onnx", "--loss", "cross_entropy", "--data", "d.npz", "--epochs", "1", "--batch", "8",
                    "--out", "r", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_main("run", "mlp.onnx", "--resume", "r", "--epochs", "2", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_main("run", "mlp.onnx", "--resume", "r", "--epochs", "3", "--loss", "mse", cwd=tmp_path)
    assert done.returncode == 1 and "--loss mse contradicts the run being resumed" in done.stderr


@pytest.mark.parametrize("a,b", [([2, 3, 4], [4]), ([4], [2, 4, 5]), ([4], [4])])
def test_matmul_with_a_vector(tmp_path, a, b):
    model = make([node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b}, check=False)
    for vi in model.graph.input:   # fixed sizes: a vector has no batch dim
        vi.type.tensor_type.shape.dim[0].dim_value = {"a": a, "b": b}[vi.name][0]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    compare(tmp_path, model, {"a": randn(*a), "b": randn(*b)})


def test_layernorm_over_several_axes_with_its_statistics_and_a_computed_scale(tmp_path):
    nodes = [node("Relu", ["s"], ["scale"]),
             node("LayerNormalization", ["x", "scale", "bias"], ["y", "m", "inv"], axis=1, epsilon=1e-3)]
    model = make(nodes, {"x": [2, 3, 4], "s": [2, 3, 4]}, {"bias": randn(3, 4)}, outputs=("y", "m", "inv"))
    text = compare(tmp_path, model, {"x": randn(2, 3, 4), "s": randn(2, 3, 4)})
    assert "mean(x, axis=[1, 2], keepdims=true)" in text


@pytest.mark.parametrize("indices,axis", [([2, 0, 0, 3], 1), ([[1, -1], [0, 2]], 2)])
def test_gather_of_any_positions_known_at_import_time(tmp_path, indices, axis):
    model = make([node("Gather", ["x", "i"], ["y"], axis=axis)], {"x": [2, 4, 5]},
                 {"i": np.array(indices, np.int64)})
    text = compare(tmp_path, model, {"x": randn(3, 4, 5)})
    assert "concat([x[" in text


@pytest.mark.parametrize("upper,k", [(1, 0), (0, -1), (1, 2)])
def test_trilu_of_a_computed_matrix(tmp_path, upper, k):
    model = make([node("Relu", ["x"], ["r"]), node("Trilu", ["r", "k"], ["y"], upper=upper)], {"x": [2, 4, 5]},
                 {"k": np.array(k, np.int64)})
    compare(tmp_path, model, {"x": randn(3, 4, 5)})


def test_a_pytorch_model_of_the_new_operators_computes_what_pytorch_does(tmp_path):
    """F.pad (reflect), F.interpolate (nearest and bilinear), scaled_dot_product_attention with its causal mask
    (−inf constants), tile and repeat (whose export tests the rank in an If, known at import time)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as tf

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            h = tf.interpolate(self.conv(tf.pad(x, (1, 2, 2, 1), mode="reflect")), scale_factor=2)
            q = tf.interpolate(h, scale_factor=2, mode="bilinear").flatten(2).transpose(1, 2)
            return tf.scaled_dot_product_attention(q, q, q, is_causal=True).tile(1, 1, 2) + q.repeat(1, 1, 2)

    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(2, 3, 3, 4)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        torch.onnx.export(net, (x,), str(tmp_path / "n.onnx"), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False, opset_version=17)
    m = nnc.load(tmp_path / "n.onnx")
    for batch in (2, 3):
        x = torch.randn(batch, 3, 3, 4)
        np.testing.assert_allclose(m.eval({"x": x.numpy()})["y"], net(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    text = import_onnx(tmp_path / "n.onnx").text
    assert "upsample(" in text and 'mode="bilinear"' in text and "log(0.0)" in text and "broadcast_to(" in text
