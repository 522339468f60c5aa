"""`nnc eval MODEL.nn`: the forward pass on given (or random) inputs, every output printed; with --data,
the model's metrics on a dataset's test set instead. `--params A B C` evaluates an ensemble: each member
and the mean of their predictions on the data (nnc.train.ensemble), or each output averaged over the
members without data. With --data, parameters from a run are scored on the data as the run saw it: its
features standardized with the statistics the run kept, and the test part the run held out (`test`, with the
run's seed) unless --test says otherwise. `--tta` (else the train block's `tta`) scores one set of parameters by
its class probabilities averaged over views of each image (nnc.train.augment)."""

from __future__ import annotations

from ..errors import NncError
from ..fileio import save_npz
from ..text import value_text
from .options import (
    classes_option,
    float_dtype,
    gather_inputs,
    gather_params,
    gather_random,
    load_model,
    model_options,
    param_sources,
    val_amount,
    value_options,
    window_option,
)
from .report import evaluation_text
from .run import tta_option


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="run the forward pass and print the outputs (and the loss)")
    model_options(p, optional=True)  # required, but it may come after --params A B (see model_after_params)
    value_options(p, several_params=True)
    p.add_argument("--out", metavar="OUT.npz", help="write the outputs here")
    p.add_argument("--save-params", metavar="P.npz", help="write the parameters used here")
    p.add_argument("--data", metavar="DATA", help="evaluate on this dataset's test set instead (mnist, FILE.csv, ...)")
    p.add_argument("--target", metavar="COLUMN", help="with --data FILE.csv: the column to predict")
    window_option(p)
    classes_option(p)
    tta_option(p)
    p.add_argument("--test", type=val_amount, metavar="N", help="with --data: a table's test examples held out at "
                   "random, a count or a fraction (default: the run's, else the train block's)")
    p.set_defaults(func=cmd_eval, eval_parser=p)


def model_after_params(args) -> None:
    """`nnc eval --params RUN MODEL.nn`: argparse hands the model file to --params (it takes one or more values)
    and leaves the model unset; take it back, the last value, so that order works as with one --params."""
    if args.model is None and isinstance(args.params, list) and len(args.params) > 1:
        args.model = args.params.pop()
    if args.model is None:
        args.eval_parser.error("the following arguments are required: MODEL.nn")


def cmd_eval(args) -> int:
    model_after_params(args)
    model = load_model(args)
    if len(param_sources(args)) > 1 and args.save_params:
        raise NncError(f"--save-params writes one set of parameters: got {len(param_sources(args))} with --params",
                       hint="give one --params to save it, or save each member on its own")
    members = gather_members(args, model)
    if args.data:
        return eval_on_data(args, model, members)
    inputs = gather_random(args, model, gather_inputs(args, model))
    dtype = float_dtype(args.dtype)
    results = [model.eval(inputs, params, seed=args.seed, float_dtype=dtype, backend=args.backend)
               for _, params in members]
    result = results[0]
    if len(members) > 1:
        from ..train.ensemble import mean_outputs

        print(f"each value is the mean over the {len(members)} members ({', '.join(s for s, _ in members)}):")
        result = mean_outputs(results)
    for name, value in result.items():
        print(f"{name} = {value_text(value)}")
    if args.out:
        save_npz(args.out, result)
        print(f"wrote {args.out}")
    if args.save_params:
        save_npz(args.save_params, members[0][1])
        print(f"wrote {args.save_params}")
    return 0


def gather_members(args, model) -> list[tuple[str, dict]]:
    """[(source, parameters)] for each --params source; a member's mistake is one error that names it."""
    sources = param_sources(args)
    if len(sources) == 1:
        return [(sources[0], gather_params(args, model))]
    members = []
    for i, source in enumerate(sources, 1):
        try:
            members.append((source, gather_params(args, model, source)))
        except NncError as err:
            named = NncError(f"member {i} of the ensemble ({source}): {err.message}", loc=err.loc, hint=err.hint)
            named.notes = err.notes
            raise named from None
    return members


def eval_on_data(args, model, members: list[tuple[str, dict]]) -> int:
    """nnc eval --data: the data's final part (its test part, a text's validation part, else the training
    set) through the model, with the metrics and the naive baseline nnc run prints; with several members,
    each member's scores and the ensemble's."""
    from ..data import load_for_model
    from ..specs import specs_text
    from ..train.augment import tta_evaluation, tta_text
    from ..train.ensemble import evaluate_ensemble
    from ..train.evaluator import Evaluator, final_evaluation, final_split
    from ..train.runfolder import standardization_for

    test, seed = held_out_test(args)
    data = load_for_model(model, data=args.data, target=args.target, val=0.0, test=test, seed=seed,
                          window=args.window, classes=args.classes,
                          statistics=standardization_for(model, param_sources(args)))
    backend = args.backend or "llvm"
    tta = args.tta if args.tta is not None else model.settings["tta"] or ()
    if len(members) == 1:
        evaluator = Evaluator(model, backend, members[0][1])
        which, result = tta_evaluation(evaluator, data, tta) if tta else final_evaluation(evaluator, data)
        if tta:
            print(tta_text(which, result["tta"]))
        print(evaluation_text(which, result, data.describe(), baseline=data.baseline, class_names=data.class_names))
        return 0
    if args.tta:
        raise NncError(f"--tta {specs_text(args.tta)} with an ensemble of {len(members)}: an ensemble is scored on "
                       "the original images", hint="drop --tta, or evaluate each member alone with it")
    which, split = final_split(data)
    scored, together = evaluate_ensemble(model, [params for _, params in members], split, backend,
                                         perplexity=bool(data.vocabulary))
    print(data.describe())
    for i, ((source, _), result) in enumerate(zip(members, scored), 1):
        print(f"member {i} ({source}): {scores_text(which, result)}")
    mean_of = "probabilities" if "accuracy" in together else "outputs"
    print(f"ensemble of {len(members)} (mean of the {mean_of}): {scores_text(which, together)}")
    if data.baseline is not None:
        print(data.baseline.text())
    return 0


def held_out_test(args) -> tuple:
    """(test, seed) of the data split: --test with --seed; else the test split the run of --params recorded, with
    its seed; else (None: the train block's, --seed)."""
    from ..train.runfolder import SETTINGS, read_settings, run_folder_of

    if args.test is not None:
        return args.test, args.seed
    folders = {run_folder_of(s) for s in param_sources(args) if s is not None and "+" not in str(s)}
    folder = folders.pop() if len(folders) == 1 else None
    if folder is not None and (folder / SETTINGS).exists():
        recorded = read_settings(folder)
        if recorded.get("test"):
            return recorded["test"], recorded["seed"]
    return None, args.seed


def scores_text(which: str, result: dict) -> str:
    """A member's or an ensemble's scores (nnc.train.ensemble.score) on one line."""
    if "accuracy" not in result:
        return f"{which} MSE {result['mse']:.6g}, MAE {result['mae']:.6g}, RMSE {result['rmse']:.6g}"
    text = f"{which} accuracy {100 * result['accuracy']:.2f}%, cross-entropy {result['cross_entropy']:.4f}"
    if "perplexity" in result:
        text += f", perplexity {result['perplexity']:.4g} per character"
    return text
