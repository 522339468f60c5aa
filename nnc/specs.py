"""The named choices of a training run: optimizers, schedules, augmentations and test-time augmentations with
their default arguments.

A train block (`optimizer = adam(lr=0.01)`, `augment = [flip, crop(pad=4)]`), a
flag (`--optimizer adam`, `--augment flip,crop(pad=2)`), the optimizer pass and
the learning-rate schedule all read these tables, and a name is checked in one
place (`optimizer_spec`, `schedule_spec`, `check_name`; an augmentation's
arguments by `argument_problem` and `spec_problem`, the inputs it transforms by
`image_inputs`). A choice with its arguments is a `Spec`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import Loc, NncError, closest

OPTIMIZERS = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False},
    "momentum": {"lr": 0.01, "momentum": 0.9, "nesterov": False},
    "rmsprop": {"lr": 0.001, "rho": 0.9, "eps": 1e-8},
    "adagrad": {"lr": 0.01, "lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
    "adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "adamw": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
}
SCHEDULES = {
    "constant": {},
    "step": {"every": 1, "gamma": 0.1},
    "exponential": {"gamma": 0.95},
    "cosine": {"min_lr": 0.0},
    "warmup": {"epochs": 1, "then": "constant", "start": 0.0},
    "cyclic": {"low": 0.0001, "high": 0.01, "period": 2},
    "plateau": {"factor": 0.1, "patience": 10, "min_lr": 0.0, "threshold": 0.0001},
}

# what nnc.train.augment does to each training batch's images, in the order listed
AUGMENTATIONS = {
    "flip": {"p": 0.5},                 # mirror left-right, each image with probability p
    "crop": {"pad": 4},                 # a random crop of the original size from the image zero-padded by pad
    "shift": {"max": 2},                # a random translation by up to max pixels, the edge pixels repeated
    "scale": {"min": 0.9, "max": 1.1},  # a random zoom about the centre, bilinear, zeros outside the image
    "noise": {"std": 0.05},             # Gaussian noise added to every pixel
}
# test-time augmentation: the views of each image whose predicted probabilities are averaged
TTA = {
    "flip": {},                         # the image and its mirror
    "crops": {"pad": 4},                # the centre and the four corner crops of the image zero-padded by pad
}
_PIXELS = ("a whole number of pixels, 0 or more", lambda v: float(v).is_integer() and v >= 0)
_ARGUMENT_RULES = {   # (choice, argument): (what a value must be, the test it passes)
    ("flip", "p"): ("a probability from 0 to 1", lambda v: 0 <= v <= 1),
    ("crop", "pad"): _PIXELS,
    ("crops", "pad"): _PIXELS,
    ("shift", "max"): _PIXELS,
    ("scale", "min"): ("a factor above 0", lambda v: v > 0),
    ("scale", "max"): ("a factor above 0", lambda v: v > 0),
    ("noise", "std"): ("a number of 0 or more", lambda v: v >= 0),
}


@dataclass(frozen=True)
class Spec:
    name: str
    args: dict = field(default_factory=dict)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name}({inner})"


def check_name(table: dict, name: str, what: str, loc: Loc | None = None) -> str:
    """`name` if `table` has it; else an NncError naming the choices (and the closest one)."""
    if name in table:
        return name
    close = closest(name, table)
    raise NncError(f"unknown {what} '{name}'", loc,
                   hint=f"did you mean '{close}'?" if close else f"choose one of {', '.join(table)}")


def optimizer_spec(name: str, **args) -> Spec:
    """The optimizer `name` with its defaults, overridden by `args`."""
    return Spec(check_name(OPTIMIZERS, name, "optimizer"), {**OPTIMIZERS[name], **args})


def schedule_spec(name: str, **args) -> Spec:
    """The learning-rate schedule `name` with its defaults, overridden by `args`."""
    return Spec(check_name(SCHEDULES, name, "schedule"), {**SCHEDULES[name], **args})


def argument_problem(name: str, param: str, value) -> str | None:
    """What is wrong with `value` as the argument `param` of the augmentation `name` (AUGMENTATIONS, TTA), or None."""
    what, fits = _ARGUMENT_RULES[(name, param)]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not fits(value):
        shown = str(value).lower() if isinstance(value, bool) else value
        return f"{name}: {param} must be {what}, got {shown}"
    return None


def argument_value(name: str, param: str, value):
    """An augmentation's argument as it is used: pixels as an int (pad=4.0 is 4)."""
    return int(value) if _ARGUMENT_RULES[(name, param)] is _PIXELS else value


def spec_problem(spec: Spec) -> str | None:
    """What is wrong with an augmentation's arguments together, or None."""
    if spec.name == "scale" and spec.args["min"] > spec.args["max"]:
        return f"scale: min must be at most max, got min={spec.args['min']}, max={spec.args['max']}"
    return None


def image_inputs(graph) -> list[str]:
    """The inputs of a model's `graph` (nnc.ir.Graph) that hold images, which augmentation transforms: float
    [B, H, W] or [B, C, H, W] with sizes that are numbers (a sequence's symbolic T is not an image's height)."""
    return [name for name, node in graph.inputs.items() for t in [graph.type_of(node)]
            if t.is_float and len(t.shape) in (3, 4) and all(isinstance(d, int) for d in t.shape[1:])]


def no_image_input(setting: str, graph, loc=None) -> NncError:
    """The error for augmentation (`setting`: augment or tta, or their flags) on a model without an image input."""
    inputs = ", ".join(f"{n} {graph.type_of(node)}" for n, node in graph.inputs.items()) or "no inputs"
    return NncError(f"{setting}: model '{graph.model}' has no image input: got {inputs}, expected an input "
                    f"[B, H, W] or [B, C, H, W] of floats", loc,
                    hint="augmentation transforms images; declare the input as images (input image: [B, 1, 28, 28]) "
                         "and flatten it in the model for dense layers")


def specs_text(specs) -> str:
    """Augmentations as the flag takes them: flip(p=0.5),crop(pad=4); `none` for none."""
    return ",".join(s.name if not s.args else str(s).replace(", ", ",") for s in specs) or "none"


def parse_specs(text: str, table: dict, noun: str) -> tuple[Spec, ...]:
    """The augmentations (`table` AUGMENTATIONS) or test-time augmentations (TTA) that a flag's value names: names
    and calls separated by commas, `flip,crop(pad=2)` or `crop(2)`; `none` for none. A mistake is an NncError (an
    unknown name says it is no such `noun`, with a did-you-mean)."""
    if text.strip().lower() == "none":
        return ()
    specs = []
    for item in re.split(r",(?![^(]*\))", text):   # the commas outside parentheses
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(?:\(([^()]*)\))?\s*", item)
        if not m:
            example = specs_text(Spec(n, a) for n, a in list(table.items())[:2])
            raise NncError(f"cannot read {item.strip() or text!r}, expected names and calls separated by "
                           f"commas, such as {example}")
        name = check_name(table, m.group(1), noun)
        params, given = list(table[name]), {}
        for i, arg in enumerate(a.strip() for a in (m.group(2) or "").split(",") if a.strip()):
            key, _, raw = arg.rpartition("=")
            key = key.strip() or (params[i] if i < len(params) else "")
            if not key:
                raise NncError(f"{name}: too many arguments: got {arg!r}, expected at most {len(params)} "
                               f"({', '.join(params)})" if params else f"{name} takes no arguments, got {arg!r}")
            if key not in table[name]:
                near = closest(key, table[name])
                raise NncError(f"{name}: unknown argument '{key}'",
                               hint=f"did you mean '{near}'?" if near else
                               f"{name} takes ({', '.join(params)})" if params else f"{name} takes no arguments")
            value = _number(raw.strip())
            problem = argument_problem(name, key, value)
            if problem:
                raise NncError(problem)
            given[key] = argument_value(name, key, value)
        spec = Spec(name, {**table[name], **given})
        problem = spec_problem(spec) or (f"{name} given twice" if any(s.name == name for s in specs) else None)
        if problem:
            raise NncError(problem)
        specs.append(spec)
    return tuple(specs)


def _number(text: str):
    """A flag's argument value: an int, a float, true or false, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
