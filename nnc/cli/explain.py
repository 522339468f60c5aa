"""`nnc explain MODEL.nn`: the chain rule walked node by node, with the values (nnc.runtime.explain)."""

from __future__ import annotations

from .options import float_dtype, gather_inputs, gather_params, gather_random, load_model, model_options, value_options


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="print the chain rule walked node by node, with values")
    model_options(p)
    value_options(p)
    p.add_argument("--of", metavar="NAME", help="the scalar to differentiate (default: the loss, or the single output)")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args) -> int:
    from ..runtime.explain import explain_text

    model = load_model(args)
    params = gather_params(args, model)
    inputs = gather_random(args, model, gather_inputs(args, model))
    print(explain_text(model, inputs, params, of=args.of, seed=args.seed, backend=args.backend,
                       float_dtype=float_dtype(args.dtype)))
    return 0
