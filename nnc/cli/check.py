"""`nnc check MODEL.nn`: parse, build and shape-check a model file; print each model's summary."""

from __future__ import annotations

from ..errors import NncError
from .options import model_options


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="parse, build and shape-check a model; print its summary")
    model_options(p)
    p.set_defaults(func=cmd_check)


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
