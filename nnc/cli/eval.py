"""`nnc eval MODEL.nn`: the forward pass on given (or random) inputs, every output printed; with --data,
the model's metrics on a dataset's test set instead."""

from __future__ import annotations

from ..fileio import save_npz
from ..text import value_text
from .options import (
    FLOAT_DTYPES,
    gather_inputs,
    gather_params,
    gather_random,
    load_model,
    model_options,
    value_options,
    window_option,
)
from .report import evaluation_text


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="run the forward pass and print the outputs (and the loss)")
    model_options(p)
    value_options(p)
    p.add_argument("--out", metavar="OUT.npz", help="write the outputs here")
    p.add_argument("--save-params", metavar="P.npz", help="write the parameters used here")
    p.add_argument("--data", metavar="DATA", help="evaluate on this dataset's test set instead (mnist, FILE.csv, ...)")
    p.add_argument("--target", metavar="COLUMN", help="with --data FILE.csv: the column to predict")
    window_option(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    model = load_model(args)
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
    """nnc eval --data: the data's final part (its test part, a text's validation part, else the training
    set) through the model, with the metrics and the naive baseline nnc run prints."""
    from ..data import load_for_model
    from ..train.evaluator import Evaluator, final_evaluation

    params = gather_params(args, model)
    data = load_for_model(model, data=args.data, target=args.target, val=0.0, seed=args.seed,
                           window=args.window)
    which, result = final_evaluation(Evaluator(model, args.backend or "llvm", params), data)
    print(evaluation_text(which, result, data.describe(), baseline=data.baseline))
    return 0
