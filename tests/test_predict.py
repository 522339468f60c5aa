"""`nnc predict` on real images and arrays: any image Pillow reads (PNG, JPEG, BMP, GIF) converted and resized to
the model's input with a note saying so, pixels scaled to [0, 1] as the model's data, `--invert` only when asked,
class names from the run folder, `--top`, arrays as one example or a batch (a wrong shape refused, never cut into
examples), `--at` for a table model.

Images are generated with Pillow in temporary folders; the class names come from Fashion-MNIST
($NNC_DATA_DIR) trained for one epoch.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import REPO, run_main
from PIL import Image

import nnc
from nnc.data import open_dataset
from nnc.data.image_file import ImageShape, image_shape, read_image
from nnc.data.images import FASHION_MNIST
from nnc.ir.types import TensorType

# The brightest channel of an 8 × 8 RGB image is its class: red 0, green 1, blue 2 (no parameters to train).
COLOUR = """
model colour {
  input  image: [B, 3, 8, 8]
  input  label: int[B]
  logits = 40 * (mean(image, [2, 3]) - 0.5)
  output logits
  loss cross_entropy(logits, label)
}
"""

# Class 1 when a flat 28 × 28 grey image is light on average, class 0 when it is dark.
BRIGHTNESS = """
model brightness {
  input  image: [B, 784]
  input  label: int[B]
  m = mean(image, 1, keepdims=true)
  logits = 40 * concat([0.5 - m, m - 0.5], axis=1)
  output logits
  loss cross_entropy(logits, label)
}
"""

# A table's row of four features; the prediction is their sum.
TABLE = """
model table {
  input  features: [B, 4]
  input  price: [B, 1]
  param  w: [4, 1] = 1
  pred = features @ w
  output pred
  loss mse(pred, price)
}
"""

# The colour model with a bias per class given beside the image.
BIASED = """
model biased {
  input  image: [B, 3, 8, 8]
  input  bias: [B, 3]
  input  label: int[B]
  logits = 40 * (mean(image, [2, 3]) - 0.5) + bias
  output logits
  loss cross_entropy(logits, label)
}
"""

RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".gif": "GIF"}
LINE = re.compile(r"(?:\[(?P<i>\d+)\] )?predicted (?:(?P<name>.+?) \(class (?P<k>\d+)\)|class (?P<n>\d+)): "
                  r"(?P<p>[\d.]+)%(?:; next (?P<next>.*))?")


def predicted(line: str) -> int:
    """The class a prediction line names first."""
    found = LINE.fullmatch(line)
    assert found, line
    return int(found["k"] or found["n"])


@pytest.fixture
def models(tmp_path):
    for name, text in (("colour", COLOUR), ("brightness", BRIGHTNESS), ("table", TABLE), ("biased", BIASED)):
        (tmp_path / f"{name}.nn").write_text(text)
    return tmp_path


def predict(*args, cwd):
    result = run_main("predict", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


# ---- what an input's type says about the image it holds ---------------------------------------------------


@pytest.mark.parametrize("shape, expected", [
    (("B", 784), ImageShape(1, 28, 28, True, (784,))),            # MNIST's MLP: a flattened 28 × 28
    (("B", 3072), ImageShape(3, 32, 32, True, (3072,))),          # CIFAR's MLP: 3 · 32², channels first
    (("B", 64), ImageShape(1, 8, 8, True, (64,))),                # the smallest flat image
    (("B", 1, 28, 28), ImageShape(1, 28, 28, False, (1, 28, 28))),
    (("B", 3, 32, 16), ImageShape(3, 32, 16, False, (3, 32, 16))),
    (("B", 28, 28), ImageShape(1, 28, 28, False, (28, 28))),
    (("B", 4), None),            # a table's features
    (("B", 49), None),           # 7 × 7: fewer values than an image
    (("B", 2, 8, 8), None),      # two channels: neither grey nor RGB
    (("B", "T", 28), None),      # no fixed size
    ((28, 28), None),            # no batch dimension
])
def test_which_inputs_hold_images(shape, expected):
    assert image_shape(TensorType(shape)) == expected


def test_an_int_input_is_no_image():
    assert image_shape(TensorType(("B", 784), "int32")) is None


# ---- reading and converting -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_converts_to_grey_with_pillows_luma(tmp_path, suffix):
    path = tmp_path / f"brown{suffix}"
    Image.new("RGB", (20, 12), (128, 64, 0)).save(path)
    pixels, note = read_image(path, ImageShape(1, 28, 28, False, (1, 28, 28)))
    assert pixels.shape == (1, 28, 28) and pixels.dtype == np.float32
    source = "palette" if suffix == ".gif" else "RGB"
    assert note == f"resized 20×12 {source} to 28×28 grey"
    luma = (0.299 * 128 + 0.587 * 64) / 255
    assert np.allclose(pixels, luma, atol=0.02 if suffix in (".jpg", ".gif") else 1e-5)


def test_resizing_keeps_rows_and_columns_apart(tmp_path):
    """A 64 × 32 image lit in its top half, read for a model of 16 rows of 32: the top rows are light."""
    img = np.zeros((32, 64), np.uint8)
    img[:16] = 255
    Image.fromarray(img).save(tmp_path / "top.png")
    pixels, note = read_image(tmp_path / "top.png", ImageShape(1, 16, 32, False, (1, 16, 32)))
    assert note == "resized 64×32 grey to 32×16 grey"
    assert pixels.shape == (1, 16, 32)
    assert np.allclose(pixels[0, :7], 1.0) and np.allclose(pixels[0, 9:], 0.0)


def test_resizing_is_pillows_bilinear(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    pixels, _ = read_image(tmp_path / "noise.png", ImageShape(1, 28, 28, True, (784,)))
    pillow = Image.open(tmp_path / "noise.png").convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    assert pixels.shape == (784,)
    assert np.abs(pixels - np.asarray(pillow, np.float32).ravel() / 255).max() <= 1.5 / 255


def test_grey_becomes_rgb_channels_first(tmp_path):
    Image.new("L", (8, 8), 51).save(tmp_path / "grey.png")
    pixels, note = read_image(tmp_path / "grey.png", ImageShape(3, 8, 8, True, (192,)))
    assert note == "converted 8×8 grey to RGB, flattened to 192 values"
    assert np.allclose(pixels, 0.2)


def test_sixteen_bit_grey_scales_by_its_own_white(tmp_path):
    Image.fromarray(np.full((8, 8), 16384, np.uint16)).save(tmp_path / "deep.png")
    pixels, _ = read_image(tmp_path / "deep.png", ImageShape(1, 8, 8, False, (8, 8)))
    assert np.allclose(pixels, 16384 / 65535)


def test_alpha_is_dropped_and_said(tmp_path):
    Image.new("RGBA", (8, 8), (0, 0, 255, 0)).save(tmp_path / "clear.png")
    pixels, note = read_image(tmp_path / "clear.png", ImageShape(3, 8, 8, False, (3, 8, 8)))
    assert note == "converted 8×8 RGBA to RGB, alpha dropped"
    assert np.allclose(pixels[2], 1.0) and np.allclose(pixels[:2], 0.0)


def test_a_photo_is_turned_upright_as_its_exif_says(tmp_path):
    img = np.zeros((8, 16), np.uint8)
    img[:, :8] = 255                          # stored 16 wide, lit on the left
    exif = Image.Exif()
    exif[0x0112] = 6                          # shown turned 90° clockwise: 8 wide, lit at the top
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    pixels, note = read_image(tmp_path / "phone.jpg", ImageShape(1, 16, 8, False, (16, 8)))
    assert note == "read 8×16 grey, turned upright as its EXIF orientation says"
    assert pixels[:6].mean() > 0.95 and pixels[10:].mean() < 0.05


# ---- the command ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("colour", RGB)
def test_predict_reads_every_format(models, suffix, colour):
    Image.new("RGB", (20, 12), RGB[colour]).save(models / f"{colour}{suffix}")
    lines = predict("colour.nn", "--input", f"{colour}{suffix}", cwd=models)
    source = "palette" if suffix == ".gif" else "RGB"
    assert lines[0] == f"{colour}{suffix}: resized 20×12 {source} to 8×8 RGB"
    assert predicted(lines[1]) == list(RGB).index(colour), lines
    assert len(lines) == 2


def test_a_gif_gives_its_first_frame(models):
    frames = [Image.new("RGB", (8, 8), RGB[c]) for c in ("green", "red", "blue")]
    frames[0].save(models / "anim.gif", save_all=True, append_images=frames[1:])
    lines = predict("colour.nn", "--input", "anim.gif", cwd=models)
    assert lines[0] == "anim.gif: converted 8×8 palette to RGB, first of its 3 frames"
    assert predicted(lines[1]) == 1


def test_top_shows_as_many_classes_as_asked(models):
    Image.new("RGB", (8, 8), (200, 100, 0)).save(models / "amber.png")
    one = predict("colour.nn", "--input", "amber.png", "--top", "1", cwd=models)
    assert one[1] == "predicted class 0: 100.0%"
    every = LINE.fullmatch(predict("colour.nn", "--input", "amber.png", "--top", "5", cwd=models)[1])
    assert every["p"] == "100.0" and every["next"] == "class 1: 0.0%, class 2: 0.0%"
    assert LINE.fullmatch(predict("colour.nn", "--input", "amber.png", cwd=models)[1])["next"] == every["next"]


def test_a_dark_digit_on_paper_is_pointed_out_and_inverted_only_when_asked(models):
    paper = np.full((56, 56), 255, np.uint8)
    paper[12:44, 24:32] = 0                    # a dark stroke: the image is mostly light
    Image.fromarray(paper).save(models / "paper.png")
    lines = predict("brightness.nn", "--input", "paper.png", cwd=models)
    assert lines[0] == ("paper.png: resized 56×56 grey to 28×28 grey, flattened to 784 values; the image has a light "
                        "background: if it is dark on light (a digit on paper) and the model learned light on dark "
                        "(as MNIST's white digits on black), add --invert")
    assert predicted(lines[1]) == 1   # not inverted: light
    inverted = predict("brightness.nn", "--input", "paper.png", "--invert", cwd=models)
    assert inverted[0] == "paper.png: resized 56×56 grey to 28×28 grey, flattened to 784 values, inverted (--invert)"
    assert predicted(inverted[1]) == 0


def test_a_light_digit_on_black_gets_no_remark(models):
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 8:20] = 255                     # light in most of the middle, black edges
    Image.fromarray(digit).save(models / "digit.png")
    lines = predict("brightness.nn", "--input", "digit.png", cwd=models)
    assert lines[0] == "digit.png: read 28×28 grey, flattened to 784 values"


def test_an_image_for_a_table_model_is_refused(models):
    Image.new("RGB", (8, 8)).save(models / "x.png")
    result = run_main("predict", "table.nn", "--input", "x.png", cwd=models)
    assert result.returncode == 1
    assert result.stderr == (
        "x.png: error: input 'features' is [B, 4], not an image\n"
        "hint: an image input is [B, H, W] or [B, 1, H, W] (grey), [B, 3, H, W] (RGB), or [B, N] with N = s² or "
        "3·s² (a square image flattened, s >= 8); give this input a .npy or .npz array instead\n")


def test_a_table_model_takes_at_values(models):
    assert predict("table.nn", "--at", "features=[1, 2, 3, 4.5]", cwd=models) == ["pred = 10.5"]
    assert predict("table.nn", "--at", "features=[[1, 2, 3, 4], [0, 0, 0, -1]]", cwd=models) == \
        ["[0] pred = 10", "[1] pred = -1"]


def test_an_image_feeds_the_one_input_at_leaves(models):
    Image.new("RGB", (8, 8), RGB["red"]).save(models / "red.png")
    lines = predict("biased.nn", "--input", "red.png", "--at", "bias=[0, 0, 100]", cwd=models)
    assert lines[0] == "red.png: read 8×8 RGB" and predicted(lines[1]) == 2
    result = run_main("predict", "biased.nn", "--input", "red.png", cwd=models)
    assert result.returncode == 1
    assert result.stderr == ("red.png: error: model 'biased' predicts from 2 inputs (image, bias), so one array or "
                             "image cannot feed it\nhint: give a .npz of arrays named after the inputs, or add --at "
                             "NAME=VALUE for the others\n")


def test_nothing_to_predict_from(models):
    result = run_main("predict", "table.nn", cwd=models)
    assert result.returncode == 1
    assert result.stderr == ("error: nothing to predict from\n"
                             "hint: give --input FILE (an image, .npy or .npz) or --at NAME=VALUE\n")


@pytest.mark.parametrize("content, message", [
    (b"not an image at all", "not an image Pillow can read (PNG, JPEG, BMP, GIF, ...), nor a .npy or .npz array"),
    (None, "not a readable PNG image (image file is truncated"),
])
def test_an_unreadable_image_is_one_error(models, content, message):
    if content is None:
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            models / "bad.png")
        content = (models / "bad.png").read_bytes()[:2000]
    (models / "bad.png").write_bytes(content)
    result = run_main("predict", "colour.nn", "--input", "bad.png", cwd=models)
    assert result.returncode == 1
    assert result.stderr.startswith(f"bad.png: error: {message}"), result.stderr
    assert "Traceback" not in result.stderr


# ---- arrays -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(784,), (28, 28), (1, 28, 28)])
def test_one_example_in_any_of_its_image_forms(models, shape):
    np.save(models / "one.npy", np.full(shape, 0.75, np.float32))
    assert predict("brightness.nn", "--input", "one.npy", cwd=models) == ["predicted class 1: 100.0%; next class 0: "
                                                                          "0.0%"]


@pytest.mark.parametrize("shape", [(3, 784), (3, 28, 28), (3, 1, 28, 28)])
def test_a_batch_prints_one_line_per_example(models, shape):
    values = np.array([0.9, 0.1, 0.7], np.float32).reshape(3, *([1] * (len(shape) - 1)))
    np.save(models / "batch.npy", np.broadcast_to(values, shape))
    lines = predict("brightness.nn", "--input", "batch.npy", cwd=models)
    assert [LINE.fullmatch(line)["i"] for line in lines] == ["0", "1", "2"]
    assert [predicted(line) for line in lines] == [1, 0, 1]


@pytest.mark.parametrize("shape", [(1568,), (56, 28), (3, 5), (2, 2, 28, 28)])
def test_an_array_of_another_shape_is_refused_naming_both(models, shape):
    """1568 values are two examples' worth, but not in any shape of one or of a batch: refused, not cut."""
    np.save(models / "wrong.npy", np.zeros(shape, np.float32))
    result = run_main("predict", "brightness.nn", "--input", "wrong.npy", cwd=models)
    assert result.returncode == 1
    got = "[" + ", ".join(map(str, shape)) + "]"
    assert result.stderr == (
        f"wrong.npy: error: input 'image' is [B, 784]: got an array of shape {got}, expected one example [784], "
        f"[1, 28, 28] or [28, 28], or a batch [N, 784], [N, 1, 28, 28] or [N, 28, 28]\n"
        "hint: an array is never cut into examples of another shape: reshape it to one of these\n")
    assert result.stdout == ""


def test_an_npz_names_its_inputs(models):
    np.savez(models / "rows.npz", features=np.array([[1, 1, 1, 1], [2, 2, 2, 2]], np.float32))
    assert predict("table.nn", "--input", "rows.npz", cwd=models) == ["[0] pred = 4", "[1] pred = 8"]
    np.savez(models / "other.npz", feature=np.ones(4, np.float32))
    result = run_main("predict", "table.nn", "--input", "other.npz", cwd=models)
    assert result.returncode == 1
    assert result.stderr == ("other.npz: error: array 'feature' names no input of model 'table'\n"
                             "hint: its inputs are: features, price\n")


# ---- class names ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fashion") / "run"
    result = run_main("run", "examples/fashion_mlp.nn", "--epochs", "1", "--out", folder, "--quiet")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="module")
def fashion_test():
    """The first 4 Fashion-MNIST test images (bytes) and what the model should read: bytes / 255."""
    images = open_dataset("fashion-mnist", download=False).test["image"][:4]
    return images, images.astype(np.float32) / 255


def expected_lines(run, pixels: np.ndarray, names: tuple, top: int = 3) -> list[str]:
    logits = nnc.load(REPO / "examples/fashion_mlp.nn").eval({"image": pixels.reshape(len(pixels), 784)},
                                                             params=run)["logits"].astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    lines = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:top]
        label = [f"{names[k]} (class {k})" if names else f"class {k}" for k in order]
        lines.append(f"predicted {label[0]}: {100 * row[order[0]]:.1f}%; next " +
                     ", ".join(f"{label[i]}: {100 * row[k]:.1f}%" for i, k in enumerate(order) if i))
    return lines


def test_a_png_of_the_data_predicts_what_the_model_says_of_the_data_with_names(tmp_path, fashion_run, fashion_test):
    images, pixels = fashion_test
    Image.fromarray(images[0]).save(tmp_path / "item.png")
    lines = predict(REPO / "examples/fashion_mlp.nn", "--params", fashion_run, "--input", "item.png", cwd=tmp_path)
    assert lines == ["item.png: read 28×28 grey, flattened to 784 values",
                     *expected_lines(fashion_run, pixels[:1], FASHION_MNIST.class_names)]


def test_a_batch_of_the_data_with_names_from_the_checkpoint_s_folder(tmp_path, fashion_run, fashion_test):
    images, pixels = fashion_test
    np.save(tmp_path / "items.npy", pixels)
    lines = predict(REPO / "examples/fashion_mlp.nn", "--params", fashion_run / "checkpoint.npz", "--input",
                    "items.npy", cwd=tmp_path)
    assert lines == [f"[{i}] {line}" for i, line in
                     enumerate(expected_lines(fashion_run, pixels, FASHION_MNIST.class_names))]


def test_parameters_outside_a_run_folder_give_class_numbers(tmp_path, fashion_run, fashion_test):
    images, pixels = fashion_test
    from nnc.runtime.checkpoint import load
    arrays, _ = load(fashion_run / "checkpoint.npz")
    np.savez(tmp_path / "weights.npz", **{k: v for k, v in arrays.items() if not k.startswith("optimizer")})
    Image.fromarray(images[1]).resize((280, 280)).convert("RGB").save(tmp_path / "big.jpg", quality=95)
    lines = predict(REPO / "examples/fashion_mlp.nn", "--params", "weights.npz", "--input", "big.jpg", cwd=tmp_path)
    assert lines[0] == "big.jpg: resized 280×280 RGB to 28×28 grey, flattened to 784 values"
    assert LINE.fullmatch(lines[1])["name"] is None
    assert predicted(lines[1]) == int(np.argmax(nnc.load(REPO / "examples/fashion_mlp.nn").eval(
        {"image": pixels[1:2].reshape(1, 784)}, params=fashion_run)["logits"]))
