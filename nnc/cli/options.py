"""The options several commands share, declared once, with their argument types and what they give a command.

`model_options` (the model file and --model), `params_options` (--params,
--random-params, --seed) and `value_options` (the inputs, the parameters,
--dtype and --backend: what eval, grad, explain and viz compute with) add
them to a command's parser; `load_model`, `gather_inputs`, `gather_random`
and `gather_params` turn the parsed options into the model, its inputs and
its parameters (`--at` sets both: a name that is a parameter sets that
parameter). The argument types make argparse refuse a bad value with exit
status 2 before any work, and so does `check_threads` (run by nnc.cli.main
once the flags are parsed) for more --threads than cores without
--oversubscribe.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NncError
from ..fileio import load_npz
from ..ir.types import FLOAT_DTYPES, format_shape
from ..specs import OPTIMIZERS, SCHEDULES

if TYPE_CHECKING:
    import numpy as np


def float_dtype(name: str):
    """The NumPy scalar type of a --dtype choice (numpy imported here: declaring the options loads none, so a
    usage mistake is told without it)."""
    import numpy as np

    return np.dtype(name).type


# ---- argument types ------------------------------------------------------------------------


def assignment(text: str) -> tuple[str, np.ndarray]:
    """NAME=VALUE with VALUE a number or a JSON list: x=-2, w=[[1,2],[3,4]]."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    name, _, raw = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    import numpy as np

    try:
        value = json.loads(raw)
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"{name}: expected a number or a list like [1, 2], got {raw!r}") from None
    return name, arr


def positive_int(text: str) -> int:
    v = nonnegative_int(text)
    if v == 0:
        raise argparse.ArgumentTypeError("expected 1 or more, got 0")
    return v


def nonnegative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {v}")
    return v


def val_amount(text: str) -> float:
    """--val: a count of examples (100) or a fraction of the training set (0.1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a fraction, got {text!r}") from None
    if v < 0 or (v >= 1 and not v.is_integer()):
        raise argparse.ArgumentTypeError(f"expected a count (100) or a fraction in [0, 1), got {text}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return v


# ---- the shared options --------------------------------------------------------------------


def model_options(p: argparse.ArgumentParser, optional: bool = False) -> None:
    """--debug, the model file and --model; `optional` for a command that can find the file elsewhere
    (nnc viz --heat: the run folder names its model)."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks")
    p.add_argument("model", metavar="MODEL.nn", nargs="?" if optional else None,
                   help="the model file (.nn, or .onnx to import)")
    p.add_argument("--model", dest="model_name", metavar="NAME", help="which model of the file (default: the first)")


def loss_option(p: argparse.ArgumentParser) -> None:
    """--loss: the loss an imported .onnx model is given (nnc run, grad, bench; `load_model` reads it)."""
    p.add_argument("--loss", choices=("cross_entropy", "mse"), help="an imported .onnx model: this loss of its first "
                   "output, with a target input added (label: int[B] for cross_entropy, target for mse)")


def params_options(p: argparse.ArgumentParser, seed_help: str = "seed for --random-params and --random-inputs "
                   "(default 0)", several: bool = False) -> None:
    """`several`: --params takes one or more sources (nnc eval: an ensemble; see `param_sources`)."""
    p.add_argument("--params", metavar="RUN_DIR", nargs="+" if several else None,
                   help="the parameters: a run folder (what nnc run printed), its checkpoint.npz, or a .npz of "
                   "arrays keyed by parameter name" + ("; several make an ensemble: each member is evaluated "
                                                       "and so is the mean of their predictions" if several else ""))
    p.add_argument("--random-params", action="store_true", help="draw the randomly initialized parameters not "
                   "given by --params (seeded by --seed) instead of refusing to compute with them")
    p.add_argument("--seed", type=nonnegative_int, default=0, help=seed_help)


def backend_option(p: argparse.ArgumentParser, help: str | None = None, default: str | None = None) -> None:
    from ..runtime.execute import BACKENDS

    p.add_argument("--backend", choices=BACKENDS, default=default, help=help)


def optimizer_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimizer", metavar="NAME", choices=tuple(OPTIMIZERS),
                   help=f"{', '.join(OPTIMIZERS)} (default: the train block's)")


def schedule_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", metavar="NAME", choices=tuple(SCHEDULES),
                   help=f"the learning-rate schedule: {', '.join(SCHEDULES)} (default: the train block's)")


def threads_options(p: argparse.ArgumentParser) -> None:
    """--threads (default: the train block's, else nnc.train.config.default_threads) and --oversubscribe, which
    allows more threads than cores (`check_threads`, run by nnc.cli.main once the flags are parsed)."""
    p.add_argument("--threads", type=positive_int, metavar="T", help="threads for the native code (default: the "
                   "train block's, else every core this process may use, at most 8)")
    p.add_argument("--oversubscribe", action="store_true", help="allow --threads above the cores this process may "
                   "use")
    p.set_defaults(validate=check_threads)


def check_threads(args) -> None:
    """More --threads than cores only slows a step down (it waits for its slowest share, and a thread without a
    core is the slowest), so it is refused unless --oversubscribe says it is meant."""
    from ..train.config import usable_cores

    if args.threads is None or args.oversubscribe:
        return
    cores = usable_cores()
    if args.threads > cores:
        raise argparse.ArgumentTypeError(
            f"argument --threads: got {args.threads}, expected at most {cores}, the cores this process may use\n"
            f"hint: use --threads {cores} or fewer, or add --oversubscribe to run {args.threads} threads on "
            f"{cores} core{'s' if cores > 1 else ''} anyway (usually slower)")


def at_option(p: argparse.ArgumentParser, example: str = "--at x=-2 y=5 z=-4 or --at 'w=[[20],[20]]' b=-30") -> None:
    """--at NAME=VALUE ...: input and parameter values (`at_values` sorts them); `example` shows a command's use."""
    p.add_argument("--at", nargs="+", type=assignment, metavar="NAME=VALUE",
                   help=f"input and parameter values, e.g. {example} (numbers or JSON lists; a parameter given here "
                   "overrides --params)")


def value_options(p: argparse.ArgumentParser, several_params: bool = False) -> None:
    """What a command computes with: inputs (given or random), parameters (`several_params`: one or more sets,
    an ensemble), the float precision and the backend."""
    at_option(p)
    p.add_argument("--inputs", metavar="IN.npz", help="input arrays keyed by input name")
    params_options(p, several=several_params)
    p.add_argument("--dtype", choices=FLOAT_DTYPES, default="float32", help="float precision")
    p.add_argument("--random-inputs", type=positive_int, nargs="?", const=4, metavar="BATCH",
                   help="feed random values (batch BATCH, default 4) to inputs not given")
    backend_option(p, "native code (the default for float32) or the NumPy reference interpreter (the default for "
                   "--dtype float64)")


# ---- what the options give a command ---------------------------------------------------------


def load_model(args):
    """The model the model file and --model name (with --loss for an imported .onnx model)."""
    from ..model import load, load_onnx

    loss = getattr(args, "loss", None)
    if loss is not None:
        if not str(args.model).endswith(".onnx"):
            raise NncError(f"--loss {loss} is for an .onnx model; a .nn file declares its loss",
                           hint=f"add `loss {loss}(OUTPUT, TARGET)` to {args.model}")
        return load_onnx(Path(args.model), args.model_name, loss=loss)
    return load(Path(args.model), model=args.model_name)


def gather_inputs(args, model) -> dict:
    """--inputs, then the inputs --at names over it; an input the model does not have is an error."""
    inputs = load_npz(args.inputs, "inputs") if args.inputs else {}
    unknown = sorted(set(inputs) - set(model.inputs))
    if unknown:
        raise NncError(f"model '{model.name}' has no input '{unknown[0]}'",
                       hint=f"its inputs are: {', '.join(model.inputs) or 'none'}")
    inputs.update(at_values(args, model)[0])
    return inputs


def at_values(args, model) -> tuple[dict, dict]:
    """(inputs, parameters) that --at gives; a name that is neither is an error, and so is a parameter value
    of another shape (a single number may give a parameter of one element: b=-30 for b: [1])."""
    inputs, params = {}, {}
    for name, value in getattr(args, "at", None) or []:
        if name in model.inputs:
            inputs[name] = value
        elif name in model.param_types:
            shape = model.param_types[name].shape
            if value.shape != shape and not (value.ndim == 0 and math.prod(shape) == 1):
                raise NncError(f"--at {name}: got shape {format_shape(value.shape)}, expected {format_shape(shape)}, "
                               f"the shape of parameter '{name}'")
            params[name] = value.reshape(shape)
        else:
            raise NncError(f"model '{model.name}' has no input or parameter '{name}'",
                           hint=f"its inputs are: {', '.join(model.inputs) or 'none'}; " +
                           (f"its parameters: {', '.join(model.param_types)}" if model.param_types
                            else "it has no parameters"))
    return inputs, params


def gather_random(args, model, inputs: dict) -> dict:
    """Fill inputs not given with random values when --random-inputs asks for it."""
    batch = args.random_inputs
    if batch is None:
        return inputs
    missing = [n for n in model.inputs if n not in inputs]
    if missing:
        print(f"random inputs (batch {batch}, seed {args.seed}): {', '.join(missing)}")
    return {**model.random_inputs(batch, args.seed, missing), **inputs}


def param_sources(args) -> list:
    """What --params gives, as a list: [None] when absent, one source, or several (nnc eval's ensembles)."""
    given = getattr(args, "params", None)
    return list(given) if isinstance(given, list) else [given]


def gather_params(args, model, source=None) -> dict:
    """--params (a run folder, a checkpoint or a parameter .npz; `source`: one of several, an ensemble's member),
    the parameters --at names over it, and initial values for the parameters they do not give: constant
    initializers always, random ones only with --random-params (said on stdout, as random inputs are); without
    it a randomly initialized parameter left out is an error that names it."""
    from ..model import MissingParams
    from ..runtime.checkpoint import model_params

    if source is None:
        sources = param_sources(args)
        if len(sources) > 1:
            raise NncError(f"--params: got {len(sources)} sets of parameters, expected one here")
        source = sources[0]
    given = model_params(source, model)
    given.update(at_values(args, model)[1])
    missing = [name for name in model.random_param_names() if name not in given]
    if missing and not args.random_params:
        raise MissingParams(model, missing, MissingParams.CLI_HINT)
    if missing:
        print(f"random parameters (seed {args.seed}): {', '.join(missing)}")
    return model.complete_params(given, args.seed)


def window_option(p) -> None:
    """--window: sequence data's steps per window (nnc run, nnc eval --data)."""
    p.add_argument("--window", type=positive_int, metavar="N", help="sequence data: steps per window when the "
                   "model's sequence length is symbolic; a CSV file becomes one series")


def class_list(text: str) -> tuple:
    """--classes 0-4 or 0,2,4: class numbers."""
    try:
        if "-" in text:
            lo, hi = (int(t) for t in text.split("-"))
            return tuple(range(lo, hi + 1))
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class numbers such as 0-4 or 0,2,4, got '{text}'") from None


def classes_option(p) -> None:
    """--classes: a classification's data restricted to some classes (nnc run, nnc eval --data)."""
    p.add_argument("--classes", type=class_list, metavar="0-4", help="only the examples of these classes "
                   "(e.g. 0-4 or 0,2,4); labels keep their numbers")
