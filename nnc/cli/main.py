"""The `nnc` command: argument parsing, subcommands and error reporting.

User mistakes print one located message and exit 1; bad flags exit 2
(argparse); a traceback appears only with --debug.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import NncError
from ..fileio import load_npz, save_npz
from ..text import value_text

FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}


# ---- value formatting ---------------------------------------------------------------

# ---- argument types --------------------------------------------------------------------


def assignment(text: str) -> tuple[str, np.ndarray]:
    """NAME=VALUE with VALUE a number or a JSON list: x=-2, w=[[1,2],[3,4]]."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    name, _, raw = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
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


# ---- commands --------------------------------------------------------------------------


def cmd_check(args) -> int:
    from ..model import load_all

    models = load_all(args.model)
    if args.model_name:
        models = [m for m in models if m.name == args.model_name]
        if not models:
            raise NncError(f"{args.model} has no model '{args.model_name}'")
    for i, m in enumerate(models):
        if i:
            print()
        print(m.summary())
    return 0


def _load_model(args):
    from ..model import load

    return load(Path(args.model), model=args.model_name)


def gather_inputs(args, model) -> dict:
    inputs = load_npz(args.inputs, "inputs") if getattr(args, "inputs", None) else {}
    for name, value in getattr(args, "at", None) or []:
        inputs[name] = value
    unknown = sorted(set(inputs) - set(model.inputs))
    if unknown:
        raise NncError(f"model '{model.name}' has no input '{unknown[0]}'",
                       hint=f"its inputs are: {', '.join(model.inputs) or 'none'}")
    return inputs


def gather_random(args, model, inputs: dict) -> dict:
    """Fill inputs not given with random values when --random-inputs asks for it."""
    batch = getattr(args, "random_inputs", None)
    if batch is None:
        return inputs
    missing = [n for n in model.inputs if n not in inputs]
    if missing:
        print(f"random inputs (batch {batch}, seed {args.seed}): {', '.join(missing)}")
    return {**model.random_inputs(batch, args.seed, missing), **inputs}


def gather_params(args, model) -> dict:
    """--params (a run folder, a checkpoint or a parameter .npz) and initial values for the parameters it does
    not give: constant initializers always, random ones only with --random-params (said on stdout, as random
    inputs are); without it a randomly initialized parameter left out is an error that names it."""
    from ..model import MissingParams
    from ..runtime.checkpoint import model_params

    given = model_params(getattr(args, "params", None), model)
    missing = [name for name in model.random_param_names() if name not in given]
    if missing and not args.random_params:
        raise MissingParams(model, missing, MissingParams.CLI_HINT)
    if missing:
        print(f"random parameters (seed {args.seed}): {', '.join(missing)}")
    return model.complete_params(given, args.seed)


def cmd_eval(args) -> int:
    model = _load_model(args)
    if args.data:
        return eval_on_data(args, model)
    params = gather_params(args, model)
    inputs = gather_random(args, model, gather_inputs(args, model))
    dtype = FLOAT_DTYPES[args.dtype]
    result = model.eval(inputs, params, seed=args.seed, float_dtype=dtype, backend=args.backend)
    for name, value in result.items():
        print(f"{name} = {value_text(value)}")
    if args.out:
        save_npz(args.out, result)
        print(f"wrote {args.out}")
    if args.save_params:
        save_npz(args.save_params, params)
        print(f"wrote {args.save_params}")
    return 0


def eval_on_data(args, model) -> int:
    """nnc eval --data: the test set through the model, with the metrics nnc run prints."""
    from ..data import load_for_model
    from ..train.evaluator import Evaluator
    from .run import confusion_text

    params = gather_params(args, model)
    data = load_for_model(model, data=args.data, target=args.target, val=0.0, seed=args.seed)
    split = data.test if data.test is not None else data.train
    evaluator = Evaluator(model, args.backend or "llvm", params)
    result = evaluator.evaluate(split, detailed=evaluator.task.classifies)
    which = "test" if data.test is not None else "training"
    if "accuracy" in result:
        print(f"{which} loss {result['loss']:.4f}  {which} accuracy {100 * result['accuracy']:.2f}% "
              f"({data.describe()})")
        print(confusion_text(result))
    else:
        print(f"{which} loss {result['loss']:.6g}" + "".join(
            f"  {k.upper()} {result[k]:.6g}" for k in ("mse", "mae", "rmse") if k in result))
    return 0


def cmd_grad(args) -> int:
    from ..runtime.gradcheck import TOLERANCE, finite_difference_check

    model = _load_model(args)
    params = gather_params(args, model)
    inputs = gather_random(args, model, gather_inputs(args, model))
    wrt = args.wrt.split(",") if args.wrt else None
    result = model.grad(inputs, params, of=args.of, wrt=wrt, seed=args.seed,
                        float_dtype=FLOAT_DTYPES[args.dtype], intermediates=True, backend=args.backend)
    of = result.of
    print(f"{of} = {value_text(result.value)}")
    for name, value in result.grads.items():
        print(f"d{of}/d{name} = {value_text(value)}")
    shown = set(result.grads) | {of}
    for name, value in result.intermediates.items():
        if name not in shown:
            print(f"d{of}/d{name} = {value_text(value)}")
    if args.out:
        save_npz(args.out, result.grads)
        print(f"wrote {args.out}")
    if not args.check:
        return 0
    g = model.training_graph
    exact = model.grad(inputs, params, of=args.of, wrt=wrt, seed=args.seed, float_dtype=np.float64)
    checks = finite_difference_check(g, model.resolve(args.of, g)[1], inputs, params, exact.grads, args.seed,
                                     args.check_entries)
    print(f"gradient check: central differences in float64 (step 1e-6), tolerance {TOLERANCE:g}")
    width = max((len(c.name) for c in checks), default=4)
    for c in checks:
        sampled = f"{c.checked}/{c.size} entries" if c.checked < c.size else f"{c.size} entries"
        print(f"  {c.name:<{width}}  {sampled:>16}  max relative error {c.max_rel_error:.2e}  "
              f"{'ok' if c.ok else 'FAIL'}")
    failed = [c.name for c in checks if not c.ok]
    if failed:
        print(f"nnc: gradient check failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_explain(args) -> int:
    from ..runtime.explain import explain_text

    model = _load_model(args)
    params = gather_params(args, model)
    inputs = gather_random(args, model, gather_inputs(args, model))
    print(explain_text(model, inputs, params, of=args.of, seed=args.seed, backend=args.backend,
                       float_dtype=FLOAT_DTYPES[args.dtype]))
    return 0


def cmd_compile(args) -> int:
    from ..backend.compiler import compile_report

    model = _load_model(args)
    batch = args.batch or model.settings.get("batch") or 1
    text = compile_report(model.graph, {"B": batch}, args.emit)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def cmd_run(args) -> int:
    from .run import cmd_run as run

    return run(args)


def cmd_predict(args) -> int:
    from .predict import cmd_predict as predict

    return predict(args)


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


# ---- parser -------------------------------------------------------------------------------


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks")
    p.add_argument("model", metavar="MODEL.nn", help="the model file")
    p.add_argument("--model", dest="model_name", metavar="NAME", help="which model of the file (default: the first)")


def _params_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", metavar="RUN_DIR", help="the parameters: a run folder (what nnc run printed), its "
                   "checkpoint.npz, or a .npz of arrays keyed by parameter name")
    p.add_argument("--random-params", action="store_true", help="draw the randomly initialized parameters not "
                   "given by --params (seeded by --seed) instead of refusing to compute with them")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed for --random-params and --random-inputs "
                   "(default 0)")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--at", nargs="+", type=assignment, metavar="NAME=VALUE",
                   help="input values, e.g. --at x=-2 y=5 z=-4 (numbers or JSON lists)")
    p.add_argument("--inputs", metavar="IN.npz", help="input arrays keyed by input name")
    _params_args(p)
    p.add_argument("--dtype", choices=sorted(FLOAT_DTYPES), default="float32", help="float precision")
    p.add_argument("--random-inputs", type=positive_int, nargs="?", const=4, metavar="BATCH",
                   help="feed random values (batch BATCH, default 4) to inputs not given")
    p.add_argument("--backend", choices=["llvm", "reference"], help="native code (the default for float32) or "
                   "the NumPy reference interpreter (the default for --dtype float64)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnc", description="nnc: compile declarative .nn neural-network models, run them and see them learn.")
    parser.add_argument("--version", action="version", version=f"nnc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("check", help="parse, build and shape-check a model; print its summary")
    _model_args(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("eval", help="run the forward pass and print the outputs (and the loss)")
    _model_args(p)
    _run_args(p)
    p.add_argument("--out", metavar="OUT.npz", help="write the outputs here")
    p.add_argument("--save-params", metavar="P.npz", help="write the parameters used here")
    p.add_argument("--data", metavar="DATA", help="evaluate on this dataset's test set instead (mnist, FILE.csv, ...)")
    p.add_argument("--target", metavar="COLUMN", help="with --data FILE.csv: the column to predict")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="predict the class of one input (a .png image, .npy or .npz)")
    _model_args(p)
    _params_args(p)
    p.add_argument("--input", required=True, metavar="FILE", help="a .png image, .npy array or .npz of inputs")
    p.add_argument("--backend", choices=["llvm", "reference"], default="llvm")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("grad", help="differentiate the loss (or --of NAME) and print every gradient")
    _model_args(p)
    _run_args(p)
    p.add_argument("--of", metavar="NAME", help="the scalar to differentiate (default: the loss, or the single output)")
    p.add_argument("--wrt", metavar="NAMES", help="comma-separated inputs / parameters (default: all trainable "
                   "parameters and float inputs)")
    p.add_argument("--out", metavar="GRADS.npz", help="write the gradients here, keyed by name")
    p.add_argument("--check", action="store_true", help="compare with central finite differences in float64")
    p.add_argument("--check-entries", type=positive_int, default=32, metavar="N",
                   help="entries checked per tensor; larger tensors are sampled (default 32)")
    p.set_defaults(func=cmd_grad)

    p = sub.add_parser("run", help="train a model on a dataset, evaluate it and record the run")
    _model_args(p)
    p.add_argument("--data", metavar="DATA", help="mnist, fashion-mnist, and, or, xor, spiral, FILE.csv or FILE.npz "
                   "(default: the train block's data)")
    p.add_argument("--target", metavar="COLUMN", help="the CSV column to predict")
    p.add_argument("--epochs", type=positive_int, help="passes over the training set")
    p.add_argument("--batch", type=positive_int, help="examples per training step")
    p.add_argument("--lr", type=positive_float, help="learning rate")
    p.add_argument("--optimizer", metavar="NAME", help="sgd, momentum, rmsprop, adam or adamw")
    p.add_argument("--schedule", metavar="NAME", help="constant, step, exponential, cosine, warmup or cyclic")
    p.add_argument("--weight-decay", type=float, metavar="L", help="L2 weight decay (decoupled for adamw)")
    p.add_argument("--clip", type=positive_float, metavar="NORM", help="clip gradients to this global norm")
    p.add_argument("--val", type=val_amount, metavar="N", help="validation examples taken from the training "
                   "set: a count or a fraction")
    p.add_argument("--seed", type=nonnegative_int, help="makes the run reproducible")
    p.add_argument("--threads", type=positive_int, help="threads for the native code (default: the train "
                   "block's, else every core this process may use, at most 8)")
    p.add_argument("--backend", choices=["llvm", "reference"],
                   help="native code (default) or the NumPy reference interpreter")
    p.add_argument("--out", metavar="DIR", help="the run folder, new or empty (default runs/<model>-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="with --out: clear the earlier run in DIR first")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR with the settings it recorded "
                   "(a larger --epochs extends it)")
    p.add_argument("--metrics-json", metavar="FILE", help="also write the final metrics here")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")
    p.add_argument("--check-numerics", action="store_true", help="stop at the first NaN or infinity in any output "
                   "(the loss is always checked) and name the node that produced it")
    p.add_argument("--grad-stats", action="store_true", help="record each layer's gradient norm every epoch in "
                   "grad_stats.csv (see nnc viz --heat)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("explain", help="print the chain rule walked node by node, with values")
    _model_args(p)
    _run_args(p)
    p.add_argument("--of", metavar="NAME", help="the scalar to differentiate (default: the loss, or the single output)")
    p.set_defaults(func=cmd_explain)

    from .viz import add_parser as add_viz_parser  # nnc viz: diagrams with values and gradients
    add_viz_parser(sub)

    p = sub.add_parser("compile", help="compile the forward pass to native code; show the kernels, IR or assembly")
    _model_args(p)
    p.add_argument("--batch", type=positive_int, metavar="N", help="batch size B (default: the train block's, or 1)")
    p.add_argument("--emit", choices=("summary", "graph", "llvm", "asm"), default="summary",
                   help="what to show: summary (default), graph (the fused kernels), llvm (optimized IR), asm")
    p.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead of printing")
    p.set_defaults(func=cmd_compile)

    from .bench import add_parser as add_bench_parser  # nnc bench: the training step's speed
    add_bench_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NncError as err:
        if args.debug:
            raise
        print(err.format(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (nnc ... | head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail
        return 141
    except Exception as err:  # a bug in nnc: say so plainly
        if args.debug:
            raise
        print(f"nnc: internal error: {type(err).__name__}: {err}\n"
              f"hint: this is a bug in nnc; rerun with --debug for the traceback and report it", file=sys.stderr)
        return 3
