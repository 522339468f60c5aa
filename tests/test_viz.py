"""nnc viz: DOT text of each view against golden files, values and gradients on the right edges,
rendering, the step frames and HTML page (in headless Chromium), --grad-stats and --heat, errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import nnc
from nnc.backend.compiler import effective_targets
from nnc.backend.fusion import fuse
from nnc.cli.main import main
from nnc.ir import ops
from nnc.runtime.annotate import annotate
from nnc.viz import diagram

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "viz"
UPDATE = os.environ.get("NNC_UPDATE_GOLDEN") == "1"  # NNC_UPDATE_GOLDEN=1 pytest tests/test_viz.py rewrites them
CIRCUIT_AT = {"x": np.array(-2.0), "y": np.array(5.0), "z": np.array(-4.0)}
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")


def load(name: str, model: str | None = None):
    return nnc.load(EXAMPLES / name, model=model)


def edge_line(dot: str, tail: str, head: str) -> str:
    lines = [line for line in dot.splitlines() if line.strip().startswith(f'"{tail}" -> "{head}"')]
    assert len(lines) == 1, f"expected one edge {tail} -> {head}, got {lines}"
    return lines[0]


def circuit_annotation(backend="llvm"):
    m = load("circuit.nn")
    return m, annotate(m, CIRCUIT_AT, m.complete_params({}), backend=backend)


# ---- golden DOT files ------------------------------------------------------------------------------


INCEPTION = """def inception(x, c1, c3, c5, cp) {
  b1 = relu(conv2d(x, c1, 1))
  b2 = relu(conv2d(relu(conv2d(x, c3, 1)), c3, 3, pad=1))
  b3 = relu(conv2d(relu(conv2d(x, c5, 1)), c5, 5, pad=2))
  b4 = relu(conv2d(maxpool(x, 3, stride=1, pad=1), cp, 1))
  return concat([b1, b2, b3, b4], axis=1)
}

model inception_net {
  input  image: [B, 3, 28, 28]
  input  label: int[B]
  stem   = relu(conv2d(image, 32, 3, pad=1))
  i1     = inception(stem, 16, 24, 8, 8)
  i2     = inception(i1, 16, 24, 8, 8)
  logits = dense(global_avgpool(i2), 10)
  output logits
  loss   cross_entropy(logits, label)
}
"""


def golden_cases():
    circuit = load("circuit.nn")
    mlp = load("mnist_mlp.nn")
    _, ann = circuit_annotation("reference")
    return {
        "circuit_layers_values.dot": lambda: diagram(circuit, "layers", ann, partials=True),
        "circuit_ops_values.dot": lambda: diagram(circuit, "ops", ann),
        "mnist_mlp_layers.dot": lambda: diagram(mlp, "layers"),
        "mnist_mlp_ops.dot": lambda: diagram(mlp, "ops"),
        "mnist_mlp_backward.dot": lambda: diagram(mlp, "backward"),
        "mnist_mlp_fused.dot": lambda: diagram(mlp, "fused"),
        "resnet_mini_layers.dot": lambda: diagram(load("resnet_mini.nn"), "layers"),
        "inception_layers.dot": lambda: diagram(nnc.loads(INCEPTION, "inception.nn"), "layers"),
    }


@pytest.mark.parametrize("name", sorted(golden_cases()))
def test_golden_dot(name):
    text = golden_cases()[name]()
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; if on purpose, regenerate with NNC_UPDATE_GOLDEN=1"


# ---- structure and labels of each view ---------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.nn")), ids=lambda p: p.stem)
def test_the_layers_view_connects_every_statement_block_calls_included(path):
    """Every box but an input has an edge in, and every box an edge out (to another box or out of the
    diagram): a block call is one box whose inputs and outputs are connected."""
    import re

    text = diagram(nnc.load(path), "layers")
    boxes = set(re.findall(r'^\s*"(s:[^"]+)" \[', text, re.M))
    edges = re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', text, re.M)
    heads, tails = {h for _, h in edges}, {t for t, _ in edges}
    g = nnc.load(path).graph
    sources = {f"s:{info.label}" for info in g.statements if info.kind in ("input", "param")}
    sources |= {f"s:{info.label}" for info in g.statements if info.ops and info.ops[0] == "randn"}
    assert boxes and not boxes - sources - heads, f"{path.name}: boxes with no edge in"
    assert not boxes - tails, f"{path.name}: boxes with no edge out"


def test_layers_view_boxes_shapes_and_parameter_counts():
    dot = diagram(load("mnist_mlp.nn"), "layers")
    for label, params in (("h1", "200,960 params"), ("h2", "32,896 params"), ("logits", "1,290 params")):
        box = next(line for line in dot.splitlines() if line.strip().startswith(f'"s:{label}" ['))
        assert params in box and "dense" in box
    assert 'label="[B, 256]"' in edge_line(dot, "s:h1", "s:h2")
    assert 'label="int[B]"' in edge_line(dot, "s:label", "s:loss")
    assert "output logits" in dot


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_circuit_values_above_and_gradients_below_the_right_edges(backend):
    m, ann = circuit_annotation(backend)
    for view in ("layers", "ops"):
        dot = diagram(m, view, ann)
        ids = {"layers": lambda s: f"s:{s}", "ops": lambda s: f"n{m.graph.values[s]}"}[view]
        expected = [("x", "q", "x = -2", "∂f/∂x = -4"), ("y", "q", "y = 5", "∂f/∂y = -4"),
                    ("z", "f", "z = -4", "∂f/∂z = 3"), ("q", "f", "q = 3", "∂f/∂q = -4")]
        for tail, head, value, gradient in expected:
            line = edge_line(dot, ids(tail), ids(head))
            assert line.index(value) < line.index(gradient), line  # value above, gradient below
        assert "f = -12" in edge_line(dot, ids("f"), "out:output f")
    backward = diagram(m, "backward", ann)  # the gradient nodes carry their values to the ∂f/∂name arrows
    for name, value in (("x", "-4"), ("y", "-4"), ("z", "3")):
        line = next(x for x in backward.splitlines() if f'-> "grad:{name}"' in x)
        assert f">{value}</font>" in line, line


def test_partials_write_the_local_derivative_with_names():
    m, ann = circuit_annotation()
    dot = diagram(m, "layers", ann, partials=True)
    assert "∂f/∂q = z = -4" in edge_line(dot, "s:q", "s:f")
    assert "∂q/∂x = 1" in edge_line(dot, "s:x", "s:q")
    assert "∂q/∂x" not in diagram(m, "layers", ann)


def test_tensors_show_shape_norm_and_mean():
    m = load("mnist_mlp.nn")
    ann = annotate(m, m.random_inputs(4), m.complete_params({}))
    line = edge_line(diagram(m, "layers", ann), "s:h1", "s:h2")
    assert re.search(r"h1 = \[4, 256\] ‖·‖=[0-9.e+-]+ mean=[0-9.e+-]+", line), line
    assert "∂loss/∂h1 = [4, 256]" in line
    h1 = np.asarray(ann.values[m.training_graph.values["h1"]])
    assert f"‖·‖={np.linalg.norm(h1.astype(np.float64)):.3g}" in line


def test_values_only_when_the_gradient_cannot_be_computed(tmp_path, capsys):
    m = load("mnist_mlp.nn")
    image = {"image": m.random_inputs(2)["image"]}
    dot = diagram(m, "layers", annotate(m, image, m.complete_params({}), backend="reference"))
    assert "image = [2, 784]" in dot and "∂" not in dot  # no label, so no loss: forward values only
    two = nnc.loads("model two { input x\n a = x * 2\n b = x + 1\n output a\n output b }")
    dot = diagram(two, "ops", annotate(two, {"x": np.array(3.0)}, {}, backend="reference"))
    assert "a = 6" in dot and "b = 4" in dot and "∂" not in dot
    np.savez(tmp_path / "image.npz", **image)
    assert main(["viz", str(EXAMPLES / "mnist_mlp.nn"), "--inputs", str(tmp_path / "image.npz"), "--random-params",
                 "--html", str(tmp_path / "x.html")]) == 1
    assert "no value for input 'label' int[B]" in capsys.readouterr().err


def test_backward_view_labels_every_backward_node_with_its_rule_and_links_it():
    m = load("mnist_mlp.nn")
    dot = diagram(m, "backward")
    assert "matmul: dA = dC · Bᵀ" in dot and "matmul: dB = Aᵀ · dC" in dot and "relu: dx = dy · [x &gt; 0]" in dot
    from nnc.runtime.annotate import gradient_graph

    gg, _ = gradient_graph(m)
    backward = [n for n in gg.nodes if gg.nodes[n].get("grad_of") is not None and gg.op(n) is not ops.const]
    for n in backward:
        line = next(x for x in dot.splitlines() if x.strip().startswith(f'"n{n}" ['))
        assert "#fde8e4" in line  # the backward colour
    assert dot.count("style=\"dashed\"") == len({gg.nodes[n]["grad_of"] for n in backward})
    for name in ("h1.weight", "h1.bias", "logits.weight"):
        assert f'label="∂loss/∂{name}"' in dot


def test_fused_view_has_one_cluster_per_kernel_around_its_nodes():
    m = load("mnist_mlp.nn")
    dot = diagram(m, "fused")
    plan = fuse(m.graph, effective_targets(m.graph))
    clusters = re.findall(r'subgraph "cluster_k(\d+)" \{(.*?)\n  \}', dot, re.S)
    assert len(clusters) == len(plan.kernels)
    for index, body in clusters:
        members = {int(x) for x in re.findall(r'^\s+"n(\d+)" \[', body, re.M)}
        assert members == set(plan.kernels[int(index)].nodes)
    assert f"{len(plan.kernels)} kernels for {plan.primitive_ops} primitive ops" in dot


# ---- rendering ------------------------------------------------------------------------------------------


@needs_dot
def test_svg_and_png_rendering_give_valid_files(tmp_path, capsys):
    svg, png = tmp_path / "c.svg", tmp_path / "c.png"
    assert main(["viz", str(EXAMPLES / "circuit.nn"), "-o", str(svg), "--at", "x=-2", "y=5", "z=-4"]) == 0
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    texts = "".join(root.itertext())
    assert "x = -2" in texts and "∂f/∂q = -4" in texts
    assert main(["viz", str(EXAMPLES / "mnist_mlp.nn"), "-o", str(png), "--view", "fused"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_dot
def test_model_repr_svg_for_jupyter():
    svg = load("mnist_mlp.nn")._repr_svg_()
    assert svg.startswith("<svg") and "h1" in svg


@needs_dot
def test_the_kernels_view_in_jupyter_shows_the_compiled_kernels():
    from nnc.backend import compile_graph

    model = load("mnist_mlp.nn")
    exe = compile_graph(model.graph, {"B": 2})
    svg = model.view("fused")._repr_svg_()
    assert svg.startswith("<svg") and f"{len(exe.plan.kernels)} kernels" in svg


def test_without_dot_a_dot_file_works_and_svg_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there: no dot
    out = tmp_path / "c.dot"
    assert main(["viz", str(EXAMPLES / "circuit.nn"), "-o", str(out)]) == 0
    assert out.read_text().startswith('digraph "circuit"')
    capsys.readouterr()
    assert main(["viz", str(EXAMPLES / "circuit.nn"), "-o", str(tmp_path / "c.svg")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Graphviz" in err and "apt-get install graphviz" in err
    assert "Traceback" not in err and not (tmp_path / "c.svg").exists()


# ---- errors ----------------------------------------------------------------------------------------------


def test_errors_are_one_clear_message(tmp_path, capsys):
    assert main(["viz", str(tmp_path / "missing.nn"), "-o", str(tmp_path / "x.dot")]) == 1
    assert "missing.nn" in capsys.readouterr().err
    assert main(["viz", str(EXAMPLES / "circuit.nn"), "-o", str(tmp_path / "x.dot"), "--at", "w=1"]) == 1
    err = capsys.readouterr().err
    assert "no input or parameter 'w'" in err and "x, y, z" in err
    assert main(["viz", str(EXAMPLES / "circuit.nn"), "-o", str(tmp_path / "x.jpg")]) == 1
    assert "got format '.jpg', expected .svg, .png, .pdf, .dot" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["viz", str(EXAMPLES / "circuit.nn"), "-o", str(tmp_path / "x.dot"), "--view", "kernels"])
    assert stop.value.code == 2
    assert "invalid choice: 'kernels'" in capsys.readouterr().err
    bad = tmp_path / "bad.nn"
    bad.write_text("model m {\n  input x\n  y = x +* 2\n  output y\n}\n")
    assert main(["viz", str(bad), "-o", str(tmp_path / "x.dot")]) == 1
    assert re.search(r"bad\.nn:3:\d+: error:", capsys.readouterr().err)


# ---- step frames and the HTML page ------------------------------------------------------------------


def test_step_frames_walk_backward_and_reveal_gradients_in_order():
    from nnc.runtime.explain import Explainer
    from nnc.viz import VIEWS
    from nnc.viz.steps import build_frames

    m, ann = circuit_annotation()
    params = m.complete_params({})
    explainer = Explainer(m, CIRCUIT_AT, params)
    frames, explain = build_frames(explainer, ann, VIEWS["layers"]), explainer.text()
    steps = explainer.steps()
    assert [f.name for f in frames] == [s.name for s in steps] == ["f", "q", "z", "y", "x"]
    first, last = frames[0].dot, frames[-1].dot
    assert "step 1/5: df/df = 1" in first and "∂f/∂x" not in first
    assert 'fillcolor="#ffe58a"' in next(x for x in first.splitlines() if x.strip().startswith('"s:f" ['))
    assert "∂f/∂q = -4" in frames[1].dot and "∂f/∂x" not in frames[1].dot
    assert 'penwidth="2.5"' in edge_line(frames[1].dot, "s:q", "s:f")  # the gradient flows back along q -> f
    assert 'penwidth="2.5"' in edge_line(frames[3].dot, "s:y", "s:q")
    assert 'penwidth="2.5"' not in first and frames[1].dot.count('penwidth="2.5"') == 1
    assert "∂f/∂x = -4" in last and "∂f/∂y = -4" in last
    assert all(f.line in explain for f in frames)


def test_each_frame_holds_every_statements_ops_with_the_gradients_known_at_that_step():
    """What a click on a box of the step page shows: the statement's primitive ops and the values they read; a
    gradient appears on them only from the step that computes it."""
    from nnc.runtime.explain import Explainer
    from nnc.viz import VIEWS
    from nnc.viz.steps import build_frames

    m = load("mnist_mlp.nn")
    inputs, params = m.random_inputs(2), m.complete_params({}, random_params=True)
    ann = annotate(m, inputs, params, need_gradients=True)
    frames = build_frames(Explainer(m, inputs, params), ann, VIEWS["layers"], expand=True)
    assert all(sorted(f.ops) == ["h1", "h2", "logits", "loss"] for f in frames)
    h1 = [f.ops["h1"] for f in frames]
    for op in ("matmul", "add", "h1 = relu", "h1.weight", "h1.bias", "image"):
        assert op in h1[0], op
    assert "h2.weight" not in h1[0] and "cross_entropy" not in h1[0]   # only h1's ops and what they read
    first_gradient = next(i for i, dot in enumerate(h1) if "∂loss/∂" in dot)
    assert frames[first_gradient].name == "h1"   # dloss/dh1's step
    assert "∂loss/∂h1.weight" not in h1[first_gradient] and "∂loss/∂h1.weight" in h1[-1]
    assert len({dot for f in frames for dot in f.ops.values()}) < 4 * len(frames)   # the page stores each once
    assert build_frames(Explainer(m, inputs, params), ann, VIEWS["layers"])[0].ops == {}


def chromium_selftest(page: Path, profile: Path, fragment: str = "#selftest", dom: list | None = None):
    """(self-test verdict, text of #errors, console lines) of a page opened headless with #selftest; `dom`
    collects the dumped DOM."""
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--window-size=1280,800", f"--user-data-dir={profile}", "--dump-dom",
                           page.as_uri() + fragment],
                          capture_output=True, text=True, timeout=120)
    if dom is not None:
        dom.append(done.stdout)
    dom = done.stdout
    result = re.search(r'<div id="selftest-result"[^>]*>([^<]*)</div>', dom)
    errors = re.search(r'<div id="errors"[^>]*>([^<]*)</div>', dom)
    assert result and errors, dom[-2000:]
    return result.group(1), errors.group(1), [x for x in done.stderr.splitlines() if ":CONSOLE" in x]


@needs_dot
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_html_page_in_headless_chromium(tmp_path, capsys):
    page = tmp_path / "circuit.html"
    assert main(["viz", str(EXAMPLES / "circuit.nn"), "--at", "x=-2", "y=5", "z=-4", "--html", str(page),
                 "--steps", str(tmp_path / "frames")]) == 0
    assert len(list((tmp_path / "frames").glob("step-*.svg"))) == 5
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text  # self-contained
    verdict, errors, console = chromium_selftest(page, tmp_path / "profile")
    assert verdict.startswith("selftest ok: 5 steps; forward 1,2,3,4,5; backward 5,4,3,2,1; diagram scale ")
    assert errors == "" and console == []
    # the harness notices a broken page: controls that leave frames visible, and script errors
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("frames[current].hidden = true;", "").replace(
        "</body>", "<script>console.error('boom'); notDefined();</script>\n</body>"))
    verdict, errors, console = chromium_selftest(broken, tmp_path / "profile2")
    assert verdict.startswith("selftest FAILED")
    assert "boom" in errors and "notDefined" in errors and len(console) == 2


# ---- training health: --grad-stats and --heat ------------------------------------------------------------


def test_vanishing_gradients_sigmoid_first_layer_orders_of_magnitude_smaller():
    norms = {}
    for name in ("vanishing_sigmoid", "vanishing_relu"):
        m = load("vanishing.nn", name)
        grads = m.grad(m.random_inputs(32, seed=1), random_params=True, wrt=["h1.weight", "logits.weight"],
                       backend="reference").grads
        norms[name] = {k: float(np.linalg.norm(v)) for k, v in grads.items()}
    sigmoid, relu = norms["vanishing_sigmoid"], norms["vanishing_relu"]
    assert sigmoid["h1.weight"] < 1e-2 * relu["h1.weight"]
    assert sigmoid["h1.weight"] < 1e-3 * sigmoid["logits.weight"]  # it shrinks towards the input


@needs_dot
def test_grad_stats_per_time_step_of_a_recurrent_layer(tmp_path, capsys):
    """--grad-stats on a recurrent layer also records the gradient that reaches each time step; the vanilla
    RNN's vanishes back through time (step 1 gets a tiny fraction of step 50's), the LSTM's (forget bias 1)
    much less; the norms are the reference interpreter's; --heat draws them per step and epoch."""
    from nnc.data import load_dataset
    from nnc.runtime.checkpoint import load as load_checkpoint
    from nnc.train.grad_stats import GradNormProbe, read_grad_steps

    first_over_last = {}
    for name in ("vanishing_rnn", "vanishing_lstm"):
        run = tmp_path / name
        assert main(["run", str(EXAMPLES / "vanishing_rnn.nn"), "--model", name, "--epochs", "2", "--grad-stats",
                     "--out", str(run), "--quiet"]) == 0
        steps = read_grad_steps(run)
        assert list(steps) == ["h"] and sorted(steps["h"]) == [1, 2] and len(steps["h"][2]) == 50
        first_over_last[name] = steps["h"][1][0] / steps["h"][1][-1]
        model = load("vanishing_rnn.nn", name)
        arrays, _ = load_checkpoint(run / "checkpoint.npz")
        params = {k: v for k, v in arrays.items() if k in model.graph.params}
        train = load_dataset("remember", model, val=0.0).train
        _, reference = GradNormProbe(model, "reference", batch=32).norms(params, train)
        np.testing.assert_allclose(steps["h"][2], reference["h"], rtol=1e-3, atol=1e-30)
        out = tmp_path / f"{name}.svg"
        assert main(["viz", "--heat", str(run), "-o", str(out)]) == 0
        assert (tmp_path / f"{name}_steps.png").read_bytes()[:4] == b"\x89PNG"
    assert first_over_last["vanishing_rnn"] < 1e-8 and first_over_last["vanishing_lstm"] > 1e3 * \
        first_over_last["vanishing_rnn"]
    capsys.readouterr()


@needs_dot
def test_grad_stats_run_and_heat_map(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", str(EXAMPLES / "xor.nn"), "--epochs", "3", "--grad-stats", "--out", str(run), "--quiet"]) == 0
    rows = [r.split(",") for r in (run / "grad_stats.csv").read_text().splitlines()]
    assert rows[0] == ["epoch", "layer", "grad_norm"]
    assert [(int(e), layer) for e, layer, _ in rows[1:]] == [(e, layer) for e in (1, 2, 3) for layer in ("h", "z")]
    # the norms are the native gradient's: compare epoch 3 with the reference interpreter on the same batch
    from nnc.data import load_dataset
    from nnc.runtime.checkpoint import load as load_checkpoint
    from nnc.train.grad_stats import GradNormProbe

    model = load("xor.nn")
    arrays, _ = load_checkpoint(run / "checkpoint.npz")
    params = {k: v for k, v in arrays.items() if k in model.graph.params}
    train = load_dataset("xor", model, val=0.0).train
    reference, steps = GradNormProbe(model, "reference", batch=4).norms(params, train)
    assert steps == {}   # no recurrent layer
    for _, layer, norm in rows[-2:]:
        assert float(norm) == pytest.approx(reference[layer], rel=1e-4)
    out = tmp_path / "heat.svg"
    assert main(["viz", "--heat", str(run), "-o", str(out)]) == 0
    svg = out.read_text()
    assert svg.count("‖∇‖ = ") == 2 and "after epoch 3" in svg
    assert (tmp_path / "heat_norms.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["viz", "--heat", str(tmp_path / "nowhere"), "-o", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_the_training_form_draws_dropout_where_the_evaluation_form_has_none(tmp_path, capsys):
    from nnc.cli.main import main

    path = EXAMPLES / "fashion_mlp.nn"
    evaluation = diagram(nnc.load(path), "layers")
    training = diagram(nnc.load(path), "layers", training=True)
    assert "dropout (training only)" in evaluation and "dropout_mask" not in diagram(nnc.load(path), "ops")
    assert "dense → relu → dropout<br/>" in training
    assert main(["viz", str(path), "--train", "-o", str(tmp_path / "t.dot")]) == 0
    assert "dropout" in (tmp_path / "t.dot").read_text()
    assert "dropout" in nnc.load(path).view("ops", training=True).source


def test_check_says_what_trains_otherwise_and_shows_the_training_form(tmp_path):
    from conftest import run_main

    plain = run_main("check", str(EXAMPLES / "mnist_mlp_dropout_bn.nn"))
    assert plain.returncode == 0
    assert plain.stdout.rstrip().endswith(" while training: dropout zeroes values at random; batchnorm normalizes "
                                          "with the batch's statistics and updates its running ones (nnc check "
                                          "--train shows that form)")
    assert "dropout (training only)" in plain.stdout
    training = run_main("check", str(EXAMPLES / "mnist_mlp_dropout_bn.nn"), "--train")
    assert "[training form]" in training.stdout.splitlines()[0]
    assert "dense → batchnorm → relu → dropout " in training.stdout
    assert "while training" not in run_main("check", str(EXAMPLES / "mnist_mlp.nn")).stdout


@needs_dot
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_the_mlp_step_through_page_is_readable_in_a_1280_by_800_window(tmp_path, capsys):
    """The MNIST MLP's page draws one box per statement, top to bottom beside the explanation: in a 1280×800
    window the diagram is drawn whole, without scrolling, at a scale its labels can be read at (a left-to-right
    chain was shrunk to 0.47), at every step. A click on a box opens that statement's ops beside it, legible too,
    open while stepping, folded by a second click; #expand=h2 opens the page with h2's ops shown."""
    page = tmp_path / "mlp.html"
    assert main(["viz", str(EXAMPLES / "mnist_mlp.nn"), "--random-inputs", "2", "--random-params",
                 "--html", str(page)]) == 0
    verdict, errors, console = chromium_selftest(page, tmp_path / "profile")
    assert verdict.startswith("selftest ok: 11 steps") and errors == "" and console == [], verdict
    found = re.search(r"diagram scale ([\d.]+) \((\d+)x(\d+) px, right (\d+) bottom (\d+) in a (\d+)x(\d+) window\), "
                      r"smallest ([\d.]+) at step \d+; "
                      r"expanded h1 by a click: ([^(]+) \(scale ([\d.]+), the diagram beside it ([\d.]+)\); "
                      r"it stays open on the next step; a second click folds it$", verdict)
    assert found, verdict
    scale, _, _, right, bottom, width, height, smallest, shown, ops_scale, beside = found.groups()
    assert float(scale) >= 0.8 and int(right) <= int(width) and int(bottom) <= int(height), verdict
    assert float(smallest) >= 0.7, verdict   # the gradients written on the edges, step by step, make it taller
    assert int(width) == 1280 and int(height) >= 600, verdict   # the browser's own bar takes the rest of the 800
    assert sorted(shown.split(", ")) == ["add", "h1 = relu", "h1.bias", "h1.weight", "image", "matmul"], verdict
    assert float(ops_scale) >= 0.8 and float(beside) >= 0.8, verdict
    dom = []
    chromium_selftest(page, tmp_path / "profile", "#expand=h2", dom)
    first = dom[0][dom[0].index('data-step="1"'):dom[0].index('data-step="2"')]
    panel = first[first.index('<div id="ops-panel"'):]
    assert panel.startswith('<div id="ops-panel"><h3>h2: its ops at this step'), panel[:200]
    for op in (">matmul<", ">h2 = relu<", ">h2.weight<", ">h1 = relu<"):
        assert op in panel[:panel.index("</svg>")], op
