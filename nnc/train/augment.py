"""Data augmentation: random transforms of each training batch's images, and test-time augmentation.

`Augmenter` applies the run's `augment` list (nnc.specs.AUGMENTATIONS: flip,
crop, shift, scale, noise, in the order given) to the model's image input
([B, H, W] or [B, C, H, W]) of every gathered training batch, in place: the
engines call it after the rows are gathered and before the step. Each
transform is a few vectorized NumPy operations on the whole batch. Its random
draws come from the step's seed (the run's seed and the global step), so the
same run augments the same way and a resumed run exactly as an uninterrupted
one. Validation, test and `Model.evaluate` never go through it.

Test-time augmentation (`tta`, nnc.specs.TTA) scores a classifier by its
class probabilities averaged over fixed views of each image (the image and its
mirror; the centre and four corner crops), as an ensemble averages its
members' (nnc.train.ensemble.score).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import NncError
from ..ir import ops
from ..specs import image_inputs, no_image_input, specs_text
from .ensemble import score
from .evaluator import final_split
from .metrics import confusion_matrix, precision_recall, predicted_classes, probabilities

AUGMENT_STREAM = 0x617567   # keeps the augmentation's draws apart from anything else seeded by the step's seed


def image_input(graph, task, setting: str = "augment") -> str:
    """The image input that augmentation transforms: the model's one float [B, H, W] or [B, C, H, W] input that
    is not the target of its loss; else an error that names `setting`."""
    names = [n for n in image_inputs(graph) if n != task.target]
    if not names and task.target in image_inputs(graph):
        raise NncError(f"{setting}: the only image input of model '{graph.model}' is {task.target}, the target its "
                       f"loss compares the output with", hint="augmentation transforms the images a model reads, "
                       "not what it is scored against")
    if not names:
        raise no_image_input(setting, graph)
    if len(names) > 1:
        raise NncError(f"{setting}: model '{graph.model}' has {len(names)} image inputs ({', '.join(names)}), "
                       f"expected one to transform")
    return names[0]


def check_moves(graph, name: str, specs, setting: str) -> None:
    """A crop's or shift's pixels must be fewer than the image `name` is high and wide."""
    h, w = graph.type_of(graph.inputs[name]).shape[-2:]
    for spec in specs:
        moved = spec.args.get("pad", spec.args.get("max")) if spec.name != "scale" else None
        if moved is not None and moved >= min(h, w):
            raise NncError(f"{setting}: {spec.name} moves the image by up to {moved} pixels: got {spec}, expected "
                           f"fewer than the {h} x {w} pixels of {name}")


class Augmenter:
    """The run's augmentations (Specs of nnc.specs.AUGMENTATIONS) of the model's image input, an engine's
    `transform`: called with a gathered training batch and its step's seed, it transforms the images in place."""

    def __init__(self, graph, task, specs):
        self.input = image_input(graph, task)
        self.specs = tuple(specs)
        check_moves(graph, self.input, self.specs, "augment")

    def __call__(self, batch: dict, seed: int) -> None:
        images = batch[self.input]
        x = images if images.ndim == 4 else images[:, None]   # [B, C, H, W]
        rng = np.random.default_rng([seed, AUGMENT_STREAM])
        out = x
        for spec in self.specs:
            out = TRANSFORMS[spec.name](out, rng, spec.args)
        if out is not x:
            x[...] = out


# ---- the transforms: [B, C, H, W] -> [B, C, H, W] (changed in place or new) ------------------------------


def flip(x: np.ndarray, rng, args: dict) -> np.ndarray:
    """Each image mirrored left-right with probability p."""
    chosen = rng.random(len(x)) < args["p"]
    x[chosen] = x[chosen, ..., ::-1]
    return x


def crop(x: np.ndarray, rng, args: dict) -> np.ndarray:
    """A random crop of the original size from each image zero-padded by `pad` pixels on every side: the image
    moved by up to `pad` pixels in each direction, zeros moved in."""
    dy, dx = rng.integers(-args["pad"], args["pad"] + 1, size=(2, len(x)))
    return translate(x, dy, dx, edge=False)


def shift(x: np.ndarray, rng, args: dict) -> np.ndarray:
    """Each image moved by up to `max` pixels in each direction, its edge pixels repeated where it moved away."""
    dy, dx = rng.integers(-args["max"], args["max"] + 1, size=(2, len(x)))
    return translate(x, dy, dx, edge=True)


def scale(x: np.ndarray, rng, args: dict) -> np.ndarray:
    """Each image zoomed about its centre by a factor drawn uniformly from [min, max] and resampled bilinearly to
    its size (a factor below 1 shrinks it inside a zero border)."""
    factors = rng.uniform(args["min"], args["max"], size=len(x))
    rows, cols = resampling(x.shape[2], factors, x.dtype), resampling(x.shape[3], factors, x.dtype)
    return rows[:, None] @ x @ cols[:, None].transpose(0, 1, 3, 2)


def noise(x: np.ndarray, rng, args: dict) -> np.ndarray:
    """Gaussian noise of standard deviation `std` added to every pixel (not clipped)."""
    x += args["std"] * rng.standard_normal(x.shape, dtype=x.dtype)
    return x


TRANSFORMS = {"flip": flip, "crop": crop, "shift": shift, "scale": scale, "noise": noise}


def translate(x: np.ndarray, dy: np.ndarray, dx: np.ndarray, edge: bool) -> np.ndarray:
    """Image i moved down by dy[i] and right by dx[i] pixels (negative: up, left); the pixels that come in from
    outside are zeros, or the nearest edge pixel's when `edge`."""
    pad = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    _, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge" if edge else "constant")
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))   # [B, C, 2 pad + 1, 2 pad + 1, h, w]
    return windows[np.arange(len(x)), :, pad - dy, pad - dx]     # one gather: [B, C, h, w]


def resampling(n: int, factors: np.ndarray, dtype) -> np.ndarray:
    """[B, n, n]: the bilinear weights that zoom a length-n axis by factors[b] about its centre (pixel centres
    as in PyTorch's interpolate with align_corners=False); a source outside the axis contributes zeros."""
    source = (np.arange(n) + 0.5 - n / 2) / factors[:, None] + n / 2 - 0.5   # [B, n]: where output i samples
    low = np.floor(source)
    frac = source - low
    low = low.astype(np.int64)
    # column j + 1 holds pixel j's weight; columns 0 and n + 1 take those of sources outside the axis, and are dropped
    weights = np.zeros((len(factors), n, n + 2), dtype)
    b, i = np.arange(len(factors))[:, None], np.arange(n)[None, :]
    weights[b, i, np.clip(low, -1, n) + 1] = 1 - frac
    weights[b, i, np.clip(low + 1, -1, n) + 1] = frac
    return weights[:, :, 1:n + 1]


# ---- test-time augmentation -------------------------------------------------------------------------------


def tta_views(specs) -> list:
    """The views of an image that test-time augmentation averages over, as functions of [N, C, H, W] images: every
    combination of one view of each spec (flip: the image, its mirror; crops(pad): the centre, the four corner
    crops of the image zero-padded by pad), the original images first."""
    views = [lambda x: x]
    for spec in specs:
        if spec.name == "flip":
            more = [lambda x: x, lambda x: x[..., ::-1]]
        else:
            p = spec.args["pad"]
            more = [lambda x: x] + [lambda x, dy=dy, dx=dx: moved(x, dy, dx) for dy in (p, -p) for dx in (p, -p)]
        views = [lambda x, first=first, then=then: then(first(x)) for first in views for then in more]
    return views


def moved(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Every image moved down by dy and right by dx pixels, zeros moved in."""
    h, w = x.shape[-2:]
    out = np.zeros_like(x)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def check_tta(graph, task, specs) -> str:
    """Test-time augmentation `specs` need a classifier (they average class probabilities) with an image input
    larger than their crops: -> that input."""
    if not task.classifies:
        raise NncError(f"tta averages a classifier's class probabilities, but model '{graph.model}' is a "
                       f"{task.kind} (its output {task.output} is not scored by classes)", hint="drop it (--tta none)")
    name = image_input(graph, task, "tta")
    check_moves(graph, name, specs, "tta")
    return name


def evaluate_tta(evaluator, split: dict, specs, detailed: bool = False) -> dict:
    """A classifier's scores on `split` from its class probabilities averaged over the views of each image
    (`tta_views`), scored as an ensemble is (nnc.train.ensemble.score): `loss` is the cross-entropy of the mean
    probabilities, `accuracy` that of their argmax; `detailed` adds the confusion matrix, precision and recall; `tta`
    says how, with the scores of the original images alone."""
    task, g = evaluator.task, evaluator.model.graph
    name = check_tta(g, task, specs)
    normalized = g.op(g.outputs[task.output]) in (ops.softmax, ops.sigmoid)
    images = split[name]
    x = images if images.ndim == 4 else images[:, None]
    predictions = []
    for view in tta_views(specs):
        shown = np.ascontiguousarray(view(x)).reshape(images.shape)
        _, out = evaluator.predict({**split, name: shown})
        predictions.append(probabilities(out, normalized))
    mean = np.mean(np.stack(predictions), axis=0, dtype=np.float64)
    alone, together = score(task, predictions[0], split), score(task, mean, split)
    result = {"loss": together["cross_entropy"], "accuracy": together["accuracy"]}
    if detailed:
        counts = confusion_matrix(task.labels(split[task.target]), predicted_classes(mean), task.classes)
        precision, recall = precision_recall(counts)
        result.update(confusion=counts, precision=precision, recall=recall)
    result["tta"] = {"augment": specs_text(specs), "views": len(predictions), "original_accuracy": alone["accuracy"],
                     "original_cross_entropy": alone["cross_entropy"]}
    return result


def tta_evaluation(evaluator, data, specs) -> tuple[str, dict]:
    """nnc.train.evaluator.final_evaluation with test-time augmentation: the data's final part scored by
    `evaluate_tta` -> (which, result)."""
    which, split = final_split(data)
    return which, evaluate_tta(evaluator, split, specs, detailed=True)


def tta_text(which: str, tta: dict) -> str:
    """The line before a test-time augmented result: how it was made, and the original images' scores alone."""
    return (f"test-time augmentation {tta['augment']}: the class probabilities averaged over {tta['views']} views of "
            f"each image, the loss their cross-entropy (the original images alone: {which} accuracy "
            f"{100 * tta['original_accuracy']:.2f}%, cross-entropy {tta['original_cross_entropy']:.4f})")
