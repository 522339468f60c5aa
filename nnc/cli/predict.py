"""`nnc predict`: one input (an image file, .npy or .npz) through a trained model; the class and probabilities
(a scalar output, one value for the whole input batch, is printed as it is)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..fileio import load_npz, reading
from ..ir import ops
from ..ir.types import format_shape
from ..runtime.execute import run_graph
from ..runtime.task import task_of
from ..text import value_text
from ..train.metrics import probabilities
from .options import backend_option, gather_params, load_model, model_options, params_options

IMAGE_SUFFIXES = {".png"}


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict the class of one input (a .png image, .npy or .npz)")
    model_options(p)
    params_options(p)
    p.add_argument("--input", required=True, metavar="FILE", help="a .png image, .npy array or .npz of inputs")
    backend_option(p, default="llvm")
    p.set_defaults(func=cmd_predict)


def read_input(path: Path, model) -> dict:
    """{input name: array with a batch dim} for the model's float input(s)."""
    floats = [name for name, t in model.inputs.items() if t.is_float]
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = load_npz(path, "inputs")
    elif suffix == ".npy":
        arrays = {floats[0]: _load_npy(path)} if floats else {}
    elif suffix in IMAGE_SUFFIXES:
        arrays = {floats[0]: read_image(path)} if floats else {}
    else:
        raise NncError(f"{path}: cannot read {suffix or 'a file without a suffix'} input",
                       hint="give a .png image, a .npy array or a .npz of arrays named after the model's inputs")
    out = {}
    for name in floats:
        if name not in arrays:
            continue
        out[name] = fit_to(np.asarray(arrays[name], dtype=np.float32), model.inputs[name].shape, name, path)
    if not out:
        raise NncError(f"{path} has no array for the model's input {', '.join(floats) or '(none)'}")
    return out


def _load_npy(path: Path) -> np.ndarray:
    with reading(path, "a .npy array"):
        data = path.read_bytes()
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        raise NncError(f"{path}: not a readable .npy array ({err})") from None


def read_image(path: Path) -> np.ndarray:
    """A grayscale image in [0, 1], white strokes on black as in MNIST (dark-on-light images are inverted)."""
    import matplotlib.image as mpimg

    with reading(path, "a .png image"):
        data = path.read_bytes()
    try:
        img = np.asarray(mpimg.imread(io.BytesIO(data), format="png"), dtype=np.float32)
    except (OSError, ValueError, SyntaxError) as err:
        raise NncError(f"{path}: not a readable PNG image ({err})") from None
    if img.ndim == 3:
        img = img[..., :3].mean(axis=2)
    if img.max() > 1.0:
        img = img / 255.0
    if img.mean() > 0.5:
        img = 1.0 - img
    return img


def fit_to(arr: np.ndarray, declared: tuple, name: str, path: Path) -> np.ndarray:
    """Add the batch dim and reshape to the declared shape when the element counts agree."""
    per_example = [d for d in declared[1:]] if declared and isinstance(declared[0], str) else list(declared)
    size = int(np.prod(per_example)) if per_example else 1
    if arr.size % size:
        raise NncError(f"{path}: input '{name}' has shape {format_shape(arr.shape)}, expected "
                       f"{format_shape(declared)} ({size} values per example)")
    if arr.ndim == 2 and size == 784 and arr.shape != (28, 28) and arr.size != 784:
        raise NncError(f"{path}: the image is {arr.shape[1]}x{arr.shape[0]}, expected 28x28",
                       hint="resize it to 28x28 pixels first")
    return arr.reshape((arr.size // size, *per_example))


def cmd_predict(args) -> int:
    model = load_model(args)
    inputs = read_input(Path(args.input), model)
    params = gather_params(args, model)
    g = model.graph
    out_name = task_of(g).output
    out_node = g.outputs[out_name]
    batch = len(next(iter(inputs.values())))
    output = np.asarray(run_graph(g, inputs, params, [out_node], backend=args.backend)[out_node])
    if output.ndim == 0:
        print(f"{out_name} = {value_text(output)}")
        return 0
    probs = probabilities(output, g.op(out_node) in (ops.softmax, ops.sigmoid))
    for i, row in enumerate(probs.reshape(batch, -1)):
        prefix = f"[{i}] " if batch > 1 else ""
        if row.size == 1:
            print(f"{prefix}{out_name} = {float(output.reshape(batch, -1)[i, 0]):.6g}  "
                  f"(class {int(row[0] > 0.5)}, probability {100 * max(row[0], 1 - row[0]):.1f}%)")
            continue
        best = int(row.argmax())
        print(f"{prefix}predicted class {best} (probability {100 * row[best]:.1f}%)")
        print(prefix + "  " + "  ".join(f"{k}: {100 * p:.1f}%" for k, p in enumerate(row)))
    return 0
