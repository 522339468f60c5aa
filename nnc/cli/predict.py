"""`nnc predict`: an image file (any format Pillow reads), a .npy or .npz array, or `--at` values through a trained
model; the top classes with their probabilities (named when the run folder records the data's class names), one
line per example, or the output's values for a model that does not classify (a scalar output, one value for the
whole input batch, is printed as it is). Reading and fitting the input is nnc.data.image_file's.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..data.image_file import as_examples, image_shape, not_an_image, read_image
from ..data.images import IMAGE_SETS
from ..errors import NncError
from ..fileio import load_npz, reading
from ..ir import ops
from ..ir.types import numpy_dtype
from ..runtime.execute import run_graph
from ..runtime.task import task_of
from ..text import value_text
from ..train.metrics import probabilities
from ..train.runfolder import METRICS, SETTINGS, run_folder_of, standardization_for
from .options import (
    at_option,
    at_values,
    backend_option,
    gather_params,
    load_model,
    model_options,
    params_options,
    positive_int,
)


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict the class of an image (PNG, JPEG, BMP, GIF, ...), an array or "
                       "--at values")
    model_options(p)
    params_options(p)
    p.add_argument("--input", metavar="FILE", help="an image (any format Pillow reads: converted, resized to the "
                   "model's input and scaled to [0, 1] as MNIST's and CIFAR's pixels are), a .npy array (one "
                   "example or a batch) or a .npz of arrays named after the model's inputs")
    at_option(p, "a table model's features, one example --at 'x=[3, 70, 2, 1.5]' or a batch --at 'x=[[...], "
              "[...]]'")
    p.add_argument("--invert", action="store_true", help="invert the image's grey levels (a dark digit on light "
                   "paper for a model that learned MNIST's light digits on black)")
    p.add_argument("--top", type=positive_int, default=3, metavar="K",
                   help="show the K most probable classes (default 3), by name when --params is a run folder "
                   "whose data names them")
    backend_option(p, default="llvm")
    p.set_defaults(func=cmd_predict)


def read_inputs(args, model, g, out_node: int) -> tuple[dict, str]:
    """({input name: a batch}, the note on how an image was read, "" for arrays) from --input and --at."""
    if not args.input and not args.at:
        raise NncError("nothing to predict from", hint="give --input FILE (an image, .npy or .npz) or --at NAME=VALUE")
    read = {node: name for name, node in g.inputs.items()}
    reads = [read[n] for n in sorted(g.needed_for([out_node])) if n in read]
    at_inputs = at_values(args, model)[0]
    given, note = {}, ""
    if args.input:
        path = Path(args.input)
        suffix = path.suffix.lower()
        if suffix == ".npz":
            given = load_npz(path, "arrays named after the model's inputs")
            unknown = sorted(set(given) - set(model.inputs))
            if unknown:
                raise NncError(f"array '{unknown[0]}' names no input of model '{model.name}'", filename=str(path),
                               hint=f"its inputs are: {', '.join(model.inputs) or 'none'}")
        else:
            name = _the_input([n for n in reads if n not in at_inputs], model, path)
            if suffix == ".npy":
                given = {name: _load_npy(path)}
            else:
                shape = image_shape(model.inputs[name])
                if shape is None:
                    raise not_an_image(path, name, model.inputs[name])
                given[name], text = read_image(path, shape, args.invert)
                note = f"{path.name}: {text}"
    batches = {}
    for name, array in {**given, **at_inputs}.items():
        t, where = model.inputs[name], "--at" if name in at_inputs else args.input
        array = np.asarray(array)
        if array.dtype.kind not in "biuf":
            raise NncError(f"input '{name}' is {t}: got an array of {array.dtype}, expected numbers", filename=where)
        fraction = array[array != np.round(array)] if not t.is_float and array.dtype.kind == "f" else []
        if len(fraction):
            raise NncError(f"input '{name}' is {t}: got {fraction[0]:g}, expected whole numbers", filename=where)
        batches[name] = as_examples(array, t, name, where).astype(numpy_dtype(t.dtype), copy=False)
    missing = [name for name in reads if name not in batches]
    if missing:
        raise NncError(f"no values for input '{missing[0]}' of model '{model.name}'",
                       hint=f"give a .npz of arrays named {', '.join(reads)}, or --at {missing[0]}=VALUE")
    return batches, note


def _the_input(reads: list[str], model, path: Path) -> str:
    """The one input an image or a .npy array feeds: the one the predicted output reads."""
    if len(reads) == 1:
        return reads[0]
    if not reads:
        raise NncError(f"model '{model.name}' predicts from no input", filename=str(path))
    raise NncError(f"model '{model.name}' predicts from {len(reads)} inputs ({', '.join(reads)}), so one array or "
                   "image cannot feed it", filename=str(path),
                   hint="give a .npz of arrays named after the inputs, or add --at NAME=VALUE for the others")


def _load_npy(path: Path) -> np.ndarray:
    with reading(path, "a .npy array"):
        data = path.read_bytes()
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        raise NncError(f"not a readable .npy array ({err})", filename=str(path)) from None


def class_names(params: str | None) -> tuple[str, ...]:
    """The class names the run folder `params` (or the run folder holding the checkpoint it names) records:
    metrics.json's, else those of the built-in data set settings.json names; () when there are none."""
    folder = run_folder_of(params) if params else None
    if folder is None:
        return ()
    recorded = _json(folder / METRICS).get("class_names")
    if isinstance(recorded, list) and all(isinstance(n, str) for n in recorded):
        return tuple(recorded)
    data = _json(folder / SETTINGS).get("data")
    return IMAGE_SETS[data].class_names if data in IMAGE_SETS else ()


def _json(path: Path) -> dict:
    """A run folder's JSON file; {} when it is missing or damaged (names are then numbers, nothing worse)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def class_label(k: int, names: tuple[str, ...]) -> str:
    """"Trouser (class 1)" with a name, "class 7" without (or when the name is the number, as MNIST's)."""
    return f"{names[k]} (class {k})" if k < len(names) and names[k] != str(k) else f"class {k}"


def cmd_predict(args) -> int:
    model = load_model(args)
    g = model.graph
    task = task_of(g)
    out_name = task.output
    if out_name is None:
        raise NncError(f"model '{model.name}' has no output to predict", hint="add `output NAME`")
    out_node = g.outputs[out_name]
    inputs, note = read_inputs(args, model, g, out_node)
    params = gather_params(args, model)
    if note:
        print(note)
    stats = standardization_for(model, [args.params])   # the run's feature scaling (standardize = true)
    if stats is not None:
        inputs = stats.apply(inputs, args.input or "--at")
        print(f"{', '.join(n for n in stats.mean if n in inputs)} standardized with the run's training statistics")
    output = np.asarray(run_graph(g, inputs, params, [out_node], backend=args.backend)[out_node])
    if output.ndim == 0:
        print(f"{out_name} = {value_text(output)}")
        return 0
    batch = len(output)
    names = class_names(args.params)
    normalized = g.op(out_node) in (ops.softmax, ops.sigmoid)
    for i in range(batch):
        prefix = f"[{i}] " if batch > 1 else ""
        print(prefix + _prediction(output[i], task.classifies, normalized, out_name, names, args.top))
    return 0


def _prediction(row: np.ndarray, classifies: bool, normalized: bool, out_name: str, names: tuple, top: int) -> str:
    """One example's line: its top classes, or its output values when the model does not classify."""
    if not classifies:
        return f"{out_name} = {value_text(row.reshape(()) if row.size == 1 else row)}"
    probs = probabilities(row, normalized)
    if row.ndim > 1:   # a class per position: the most probable at each
        return "predicted classes per position: " + " ".join(
            names[k] if k < len(names) else str(k) for k in probs.argmax(axis=-1).ravel().tolist())
    if row.size == 1:
        p = float(probs[0])
        k = int(p > 0.5)
        return f"{out_name} = {float(row[0]):.6g}  ({class_label(k, names)}, probability {100 * max(p, 1 - p):.1f}%)"
    order = np.argsort(-probs, kind="stable")[:top]
    best, rest = order[0], order[1:]
    line = f"predicted {class_label(int(best), names)}: {100 * probs[best]:.1f}%"
    if len(rest):
        line += "; next " + ", ".join(f"{class_label(int(k), names)}: {100 * probs[k]:.1f}%" for k in rest)
    return line
