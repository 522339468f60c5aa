"""The builder (nnc/builder.py, nnc/layers.py) and train block (nnc/settings.py): names, lowering, graph invariants.

Parameter names are a contract (checkpoints and gradient files are keyed by
them), so they are spelled out here in full.
"""

from __future__ import annotations

import pytest
from conftest import EXAMPLE_FILES

import nnc
from nnc import NncError
from nnc.front.settings import read_train_block
from nnc.front.syntax import parse
from nnc.ir import ops
from nnc.ir.graph import verify
from nnc.specs import Spec


def params(text: str) -> list[str]:
    return list(nnc.loads(text).param_types)


def model(body: str, blocks: str = "") -> nnc.Model:
    return nnc.loads(f"{blocks}\nmodel m {{\n{body}\n}}")


def build_error(body: str, blocks: str = "") -> NncError:
    with pytest.raises(NncError) as info:
        model(body, blocks)
    return info.value


# ---- parameter naming --------------------------------------------------------------------------


def test_layer_parameters_are_named_after_their_target():
    m = model("input x: [B, 4]\nh1 = relu(dense(x, 8))\nlogits = dense(h1, 3, bias=false)\noutput logits")
    assert list(m.param_types) == ["h1.weight", "h1.bias", "logits.weight"]
    assert str(m.param_types["h1.weight"]) == "[4, 8]"   # dense weight is [in, out]
    assert str(m.param_types["h1.bias"]) == "[8]"
    assert str(m.param_types["logits.weight"]) == "[8, 3]"


def test_conv_and_norm_parameter_names_and_layouts():
    m = model("input image: [B, 3, 8, 8]\nc = relu(batchnorm(conv2d(image, 5, 3, pad=1)))\nn = layernorm(flatten(c))\n"
              "output n")
    assert {k: str(v) for k, v in m.param_types.items()} == {
        "c.weight": "[5, 3, 3, 3]",                     # [filters, in_channels, kh, kw]
        "c.bias": "[5]",
        "c.batchnorm.gamma": "[5]", "c.batchnorm.beta": "[5]",
        "c.batchnorm.running_mean": "[5]", "c.batchnorm.running_var": "[5]",
        "n.gamma": "[320]", "n.beta": "[320]",
    }
    trainable = {name for name, node in m.graph.params.items()
                 if m.graph.nodes[node]["attrs"]["trainable"]}
    assert "c.batchnorm.running_mean" not in trainable and "c.batchnorm.gamma" in trainable


def test_name_argument_overrides_the_target():
    assert params("model m { input x: [B, 2] y = dense(x, 3, name=\"encoder\") output y }") == [
        "encoder.weight", "encoder.bias"]


def test_rebinding_a_name_gives_numbered_bindings():
    m = model("input x: [B, 4]\nh = dense(x, 4)\nh = dense(h, 4)\nh = dense(h, 2)\noutput h")
    assert list(m.param_types) == ["h.weight", "h.bias", "h_2.weight", "h_2.bias", "h_3.weight", "h_3.bias"]
    rows = [info.label for info in m.graph.statements]
    assert rows[:4] == ["x", "h", "h_2", "h_3"]
    assert str(m.graph.type_of(m.graph.outputs["h"])) == "[B, 2]"  # the last binding is the output


def test_second_parametric_call_in_a_statement_gets_the_op_name():
    m = model("input x: [B, 4]\ny = dense(x, 3) + dense(x, 3) + dense(x, 3)\noutput y")
    assert list(m.param_types) == ["y.weight", "y.bias", "y.dense.weight", "y.dense.bias",
                                   "y.dense_2.weight", "y.dense_2.bias"]
    mixed = model("input x: [B, 1, 4, 4]\ny = batchnorm(conv2d(x, 2, 3))\noutput y")
    assert list(mixed.param_types)[:3] == ["y.weight", "y.bias", "y.batchnorm.gamma"]


def test_explicit_names_do_not_use_up_the_target():
    m = model("input x: [B, 4]\ny = dense(x, 3, name=\"a\") + dense(x, 3)\noutput y")
    assert list(m.param_types) == ["a.weight", "a.bias", "y.weight", "y.bias"]


def test_blocks_called_twice_get_distinct_prefixes():
    blocks = "def res(x, c) {\n  h = relu(dense(x, c))\n  h = dense(h, c)\n  return relu(x + h)\n}"
    m = model("input x: [B, 4]\nr1 = res(x, 4)\nr2 = res(r1, 4)\noutput r2", blocks)
    assert list(m.param_types) == ["r1.h.weight", "r1.h.bias", "r1.h_2.weight", "r1.h_2.bias",
                                   "r2.h.weight", "r2.h.bias", "r2.h_2.weight", "r2.h_2.bias"]
    summary_rows = {info.label: info for info in m.graph.statements}
    assert summary_rows["r1"].ops == ["res"]
    assert summary_rows["r1"].params == ["r1.h.weight", "r1.h.bias", "r1.h_2.weight", "r1.h_2.bias"]


def test_nested_blocks_and_block_params():
    blocks = """
def scale(x) { param s: [1] = ones  return x * s }
def pair(x) { a = scale(x)  b = scale(a)  return dense(b, 2) }"""
    m = model("input x: [B, 2]\np = pair(x)\noutput p", blocks)
    assert list(m.param_types) == ["p.a.s", "p.b.s", "p.weight", "p.bias"]


def test_block_without_parameters_does_not_claim_the_target():
    blocks = "def act(x) { return relu(x) }"
    m = model("input x: [B, 2]\ny = dense(act(x), 2)\noutput y", blocks)
    assert list(m.param_types) == ["y.weight", "y.bias"]


def test_resnet_example_names():
    m = nnc.load("examples/resnet_mini.nn")
    names = list(m.param_types)
    assert names[:2] == ["stem.weight", "stem.bias"]
    assert "r1.h.weight" in names and "r1.h_2.weight" in names and "r2.h_2.batchnorm.running_var" in names
    assert len(names) == len(set(names))


def test_dotted_references_to_parameters():
    m = model("input x: [B, 4]\ninput y: [B, 2]\nh1 = dense(x, 3)\nh1 = dense(h1, 2)\noutput h1\n"
              "loss mse(h1, y) + 0.01 * l2(h1.weight, h1_2.weight) + l1(h1.bias)")
    g = m.graph
    loss_ancestors = g.needed_for([g.loss])
    for name in ("h1.weight", "h1_2.weight", "h1.bias"):
        assert g.params[name] in loss_ancestors


def test_dotted_references_inside_blocks_are_prefixed():
    blocks = "def lin(x) { h = dense(x, 2)  return h + 0 * l2(h.weight) }"
    m = model("input x: [B, 2]\na = lin(x)\nb = lin(a)\noutput b", blocks)
    assert list(m.param_types) == ["a.h.weight", "a.h.bias", "b.h.weight", "b.h.bias"]


def test_declared_params_are_used_directly():
    m = nnc.load("examples/linreg.nn")
    assert list(m.param_types) == ["a", "b"]
    init = m.graph.nodes[m.graph.params["a"]]["attrs"]["init"]
    assert init.kind == "zeros"


@pytest.mark.parametrize("text, kind, args", [
    ("zeros", "zeros", ()), ("ones", "ones", ()), ("xavier", "xavier", ()), ("he", "he", ()),
    ("glorot", "xavier", ()), ("kaiming", "he", ()), ("normal(0, 0.1)", "normal", (0.0, 0.1)),
    ("uniform(-1, 1)", "uniform", (-1.0, 1.0)), ("constant(20)", "constant", (20.0,)), ("0.5", "constant", (0.5,)),
    ("-30", "constant", (-30.0,)),
])
def test_initializers(text, kind, args):
    m = model(f"input x: [B, 2]\nparam w: [2, 2] = {text}\ny = x @ w\noutput y")
    init = m.graph.nodes[m.graph.params["w"]]["attrs"]["init"]
    assert (init.kind, tuple(init.args)) == (kind, args)


def test_default_initializers_depend_on_rank():
    m = model("input x: [B, 2]\nparam w: [2, 2]\nparam b: [2]\ny = x @ w + b\noutput y")
    kinds = {n: m.graph.nodes[node]["attrs"]["init"].kind for n, node in m.graph.params.items()}
    assert kinds == {"w": "xavier", "b": "zeros"}


# ---- name errors ---------------------------------------------------------------------------------


def test_duplicate_parameter_names_from_name_argument():
    # name="p" twice shares p's parameters (tests/test_sharing.py); a name taken from the variable never does
    err = build_error('input x: [B, 2]\na = dense(x, 2, name="p")\np = dense(x, 2)\noutput a, p')
    assert "duplicate parameter name 'p.weight'" in err.message
    assert err.loc.span.line == 5  # body lines start at 3: a blank line for blocks, then `model m {`


def test_block_recursion_is_an_error():
    err = build_error("input x: [B, 2]\ny = f(x)\noutput y", "def f(x) { return g(x) }\ndef g(x) { return f(x) }")
    assert "block 'f' calls itself (f -> g -> f)" in err.message
    assert "cannot recurse" in err.hint
    assert err.notes == ["in block 'g' called at 1:19", "in block 'f' called at 5:5"]


def test_blocks_see_only_their_arguments():
    err = build_error("input x: [B, 2]\ninput y: [B, 2]\nz = f(x)\noutput z", "def f(a) { return a + y }")
    assert err.message == "undefined name 'y'"


def test_block_keyword_arguments():
    m = model("input x: [B, 2]\ny = f(c=3, x=x)\noutput y", "def f(x, c) { return dense(x, c) }")
    assert str(m.graph.type_of(m.graph.outputs["y"])) == "[B, 3]"
    err = build_error("input x: [B, 2]\ny = f(x, d=3)\noutput y", "def f(x, c) { return dense(x, c) }")
    assert err.message == "f: unknown keyword argument 'd'"


def test_calling_a_value_or_using_a_function_as_a_value():
    assert build_error("input x\ny = x(1)\noutput y").message == "'x' is a tensor, not a function"
    err = build_error("input x\ny = relu\noutput y")
    assert err.message == "undefined name 'relu'" and err.hint == "'relu' is a function; call it as relu(...)"


def test_numbers_fold_and_meet_tensors_as_constants():
    m = model("input x\ny = x * (2 ** 3 - 1) / 2\noutput y")
    consts = [m.graph.nodes[n]["attrs"]["value"] for n in m.graph if m.graph.op(n) is ops.const]
    assert sorted(consts) == [2.0, 7.0]  # 2 ** 3 - 1 folded to one constant
    assert m.eval({"x": 4.0})["y"] == pytest.approx(14.0)


def test_int_tensors_take_only_whole_numbers():
    assert str(model("input k: int[B]\nj = k + 1\noutput j").graph.type_of(2)) == "int[B]"
    err = build_error("input k: int[B]\nj = k + 0.5\noutput j")
    assert "meets an int tensor" in err.message


# ---- lowering and graph invariants ------------------------------------------------------------------


def ops_of(m: nnc.Model) -> list[str]:
    g = m.graph
    return [g.op(n).name for n in g.topo() if g.op(n) not in (ops.input, ops.param, ops.const)]


def test_layers_lower_to_primitive_ops():
    assert ops_of(model("input x: [B, 3]\ny = dense(x, 2)\noutput y")) == ["matmul", "add"]
    assert ops_of(model("input x: [B, 3]\ny = dense(x, 2, bias=false)\noutput y")) == ["matmul"]
    conv = ops_of(model("input x: [B, 1, 5, 5]\ny = conv2d(x, 2, 3)\noutput y"))
    assert sorted(conv) == ["add", "conv2d", "reshape"]
    assert ops_of(model("input x: [B, 2, 4, 4]\ny = global_avgpool(x)\noutput y")) == ["mean"]
    assert ops_of(model("input x: [B, 2, 4, 4]\ny = flatten(x)\noutput y")) == ["reshape"]
    xent = ops_of(model("input x: [B, 3]\ninput k: int[B]\noutput x\nloss cross_entropy(x, k)"))
    assert xent == ["xent", "mean"]


def test_dropout_and_batchnorm_differ_between_training_and_evaluation():
    m = nnc.load("examples/mnist_mlp_dropout_bn.nn")
    eval_ops = {m.graph.op(n).name for n in m.graph}
    train_ops = {m.training_graph.op(n).name for n in m.training_graph}
    assert "dropout_mask" not in eval_ops and "dropout_mask" in train_ops
    assert m.graph.updates == {}
    assert set(m.training_graph.updates) == {
        "h1.batchnorm.running_mean", "h1.batchnorm.running_var", "h2.batchnorm.running_mean",
        "h2.batchnorm.running_var"}


def test_operands_keep_order_and_multiplicity():
    m = model("input x\ninput y\nz = x * x\nw = y - x\noutput z, w")
    g = m.graph
    x, y = g.inputs["x"], g.inputs["y"]
    z, w = g.outputs["z"], g.outputs["w"]
    assert g.operands(z) == (x, x) and g.number_of_edges(x, z) == 2
    assert g.operands(w) == (y, x)


def test_nodes_remember_their_statement_and_source():
    m = model("input x: [B, 3]\nh = relu(dense(x, 2))\noutput h")
    g = m.graph
    relu = next(n for n in g if g.op(n) is ops.relu)
    assert g.nodes[relu]["stmt"] == "h"
    assert g.nodes[relu]["layer"] == "relu"
    assert (g.nodes[relu]["loc"].span.line, g.nodes[relu]["loc"].span.column) == (4, 5)
    matmul = next(n for n in g if g.op(n) is ops.matmul)
    assert g.nodes[matmul]["layer"] == "dense" and g.nodes[matmul]["stmt"] == "h"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_example_builds_a_valid_graph(path):
    m = nnc.load(path)
    verify(m.graph)
    verify(m.training_graph)
    assert m.outputs or not m.graph.inputs   # a model without inputs may be a bare function to minimize
    assert "graph:" in m.summary()


def test_summary_counts_parameters():
    text = nnc.load("examples/mnist_mlp.nn").summary()
    # 784·256 + 256 + 256·128 + 128 + 128·10 + 10
    assert "parameters: 235,146 trainable, 0 non-trainable" in text
    lines = text.splitlines()
    assert lines[0] == "model mnist_mlp  (examples/mnist_mlp.nn)"
    h1 = next(line for line in lines if line.split()[:1] == ["h1"])
    assert h1.split() == ["h1", "dense", "→", "relu", "[B,", "256]", "200,960", "200,704"]   # params, MACs
    assert " loss: cross_entropy" in lines


def test_python_api_loads_text_and_files():
    m = nnc.load("model c { input x input y f = x * y output f }")
    assert m.name == "c" and m.outputs == ["f"]
    assert float(m.eval({"x": 3, "y": -2})["f"]) == -6
    two = "model a { input x output x }\nmodel b { input y z = -y output z }"
    assert nnc.loads(two, model="b").name == "b"
    with pytest.raises(NncError, match="has no model 'c'"):
        nnc.loads(two, model="c")
    assert "<nnc.Model circuit:" in repr(nnc.load("examples/circuit.nn"))


# ---- the train block ------------------------------------------------------------------------------


def settings(text: str) -> dict:
    return read_train_block(parse(f"train {{\n{text}\n}}").trains)


def test_train_defaults():
    s = read_train_block(())
    assert s["optimizer"] == Spec("sgd", {"lr": 0.01, "momentum": 0.0, "nesterov": False})
    assert (s["batch"], s["epochs"], s["seed"], s["data"]) == (32, 1, 0, None)
    assert s["schedule"].name == "constant"


def test_train_settings_are_read():
    s = settings('data = mnist\noptimizer = adam(lr=0.002)\nbatch = 64\nepochs = 3\nschedule = step(every=2)\n'
                 'weight_decay = 0.0001\nseed = 7\nclip = 5\nval = 0.1\ntarget = "price"\nthreads = 2')
    assert s["data"] == "mnist" and s["target"] == "price"
    assert s["optimizer"] == Spec("adam", {"lr": 0.002, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8})
    assert (s["batch"], s["epochs"], s["seed"], s["threads"]) == (64, 3, 7, 2)
    assert s["schedule"] == Spec("step", {"every": 2, "gamma": 0.1})
    assert (s["weight_decay"], s["clip"], s["val"]) == (0.0001, 5, 0.1)


def test_optimizer_forms():
    assert settings("optimizer = momentum")["optimizer"].args["momentum"] == 0.9
    assert settings("optimizer = sgd(0.5)")["optimizer"].args["lr"] == 0.5     # positional in table order
    assert settings("optimizer = adam\nlr = 0.3")["optimizer"].args["lr"] == 0.3  # lr= overrides the optimizer's
    assert settings('data = "data/x.csv"')["data"] == "data/x.csv"


@pytest.mark.parametrize("text, message", [
    ("epoch = 10", "unknown train setting 'epoch'"),
    ("batch = 0", "batch must be a positive integer, got 0"),
    ("batch = 2.5", "batch must be a positive integer, got 2.5"),
    ("batch = adam(lr=1)", "batch must be a positive integer, got a call"),
    ("lr = -1", "lr must be a number of 0 or more, got -1"),
    ("data = 3", "data must be a name or a string, got 3"),
    ("optimizer = adamm", "unknown optimizer 'adamm'"),
    ("optimizer = adam(rate=1)", "adam: unknown argument 'rate'"),
    ("optimizer = sgd(1, 2, 3, 4)", "sgd: too many arguments: got 4, expected at most 3 (lr, momentum, nesterov)"),
    ("optimizer = 5", "optimizer must be a name such as sgd or a call such as sgd(lr=0.1)"),
    ("schedule = linear", "unknown schedule 'linear'"),
    ("batch = 8\nbatch = 16", "train setting 'batch' given twice"),
    ("data = x + 1", "a setting's value must be a number, a name, a string or a call like adam(lr=0.001)"),
])
def test_train_setting_errors(text, message):
    with pytest.raises(NncError) as info:
        settings(text)
    assert info.value.message == message
    assert info.value.loc is not None


def test_model_reads_its_train_block():
    m = nnc.load("examples/mnist_mlp.nn")
    assert m.settings["data"] == "mnist" and m.settings["batch"] == 128 and m.settings["epochs"] == 8
    assert m.settings["optimizer"].name == "adam"


def test_seed_zero_is_a_valid_seed():
    assert settings("seed = 0")["seed"] == 0
    with pytest.raises(NncError, match="seed must be an integer of 0 or more, got -1"):
        settings("seed = -1")


def test_binary_functions_take_a_and_b_and_unary_minus_is_neg_in_the_summary():
    m = model("input x: [B]\ninput y: [B]\nz = maximum(b=y, a=x) - minimum(x, b=y)\nn = -x\noutput z, n")
    rows = {info.label: info.ops for info in m.graph.statements if info.kind == "assign"}
    assert rows["z"] == ["maximum", "minimum", "-"] and rows["n"] == ["neg"]
    out = m.eval({"x": [1.0, 5.0], "y": [3.0, 2.0]})
    assert out["z"].tolist() == [2.0, 3.0] and out["n"].tolist() == [-1.0, -5.0]


def test_warmup_then_takes_a_schedule_call():
    from nnc.train.schedules import learning_rate

    s = settings("schedule = warmup(epochs=1, then=step(every=1, gamma=0.5))")["schedule"]
    assert s.args["then"] == Spec("step", {"every": 1, "gamma": 0.5})
    assert [learning_rate(s, 0.1, e, 4) for e in (1, 2, 3)] == [0.1, 0.05, 0.025]
    assert settings("schedule = warmup(2, cosine)")["schedule"].args["then"] == Spec("cosine", {"min_lr": 0.0})
    for text, message in (("warmup(then=linear)", "unknown schedule 'linear'"),
                          ("warmup(then=warmup)", "warmup(then=warmup) would never end"),
                          ("warmup(then=step(every=2, rate=1))", "step: unknown argument 'rate'")):
        with pytest.raises(NncError) as info:
            settings(f"schedule = {text}")
        assert info.value.message == message and info.value.loc is not None


@pytest.mark.parametrize("text, message", [
    ("optimizer = adam(lr=fast)", "adam: lr must be a number of 0 or more, got fast"),
    ("optimizer = sgd(0.1, -1)", "sgd: momentum must be a number of 0 or more, got -1"),
    ("optimizer = rmsprop(eps=true)", "rmsprop: eps must be a number of 0 or more, got true"),
    ("optimizer = sgd(nesterov=1)", "sgd: nesterov must be true or false, got 1"),
    ("optimizer = adam(lr=adam(lr=1))", "adam: lr must be a number of 0 or more, got a call"),
    ("schedule = step(every=-2)", "step: every must be a number of 0 or more, got -2"),
])
def test_optimizer_and_schedule_arguments_are_checked(text, message):
    with pytest.raises(NncError) as info:
        settings(text)
    assert info.value.message == message and info.value.loc is not None


@pytest.mark.parametrize("name", ["a b", "", "1st", "enc.", "h-1"])
def test_name_argument_must_be_a_name(name):
    with pytest.raises(NncError) as info:
        params(f'model m {{ input x: [B, 2] y = dense(x, 3, name="{name}") output y }}')
    assert info.value.message == f'dense: name must be a name such as "encoder": got "{name}"'
    assert params('model m { input x: [B, 2] y = dense(x, 3, name="block1.enc") output y }') == [
        "block1.enc.weight", "block1.enc.bias"]
