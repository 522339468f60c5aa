"""`nnc check MODEL.nn`: parse, build and shape-check a model file; print each model's summary (its layers with
their shapes, parameters and multiply-adds), or with --json the same as one JSON object for scripts."""

from __future__ import annotations

import json

from ..errors import NncError
from .options import model_options


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="parse, build and shape-check a model; print its layers, parameters and MACs")
    model_options(p)
    p.add_argument("--json", action="store_true",
                   help='print {"models": [...]}: each model\'s layers (name, op, output shape, params, MACs) '
                        "and totals")
    p.add_argument("--train", action="store_true", help="the training form: dropout and batch statistics as "
                   "training computes them")
    p.set_defaults(func=cmd_check, brief=True)  # nnc.cli.main.run_brief: the cycle collector paused


def cmd_check(args) -> int:
    from ..model import load_all
    from ..summary import summary_json, summary_text

    models = load_all(args.model)
    if args.model_name:
        models = [m for m in models if m.name == args.model_name]
        if not models:
            raise NncError(f"{args.model} has no model '{args.model_name}'")
    if args.json:
        print(json.dumps({"models": [summary_json(m) for m in models]}, indent=2, ensure_ascii=False))
        return 0
    for i, m in enumerate(models):
        if i:
            print()
        print(summary_text(m, training=args.train))
    return 0
