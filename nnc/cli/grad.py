"""`nnc grad MODEL.nn`: the gradient of the loss (or --of NAME) with respect to every parameter and input,
and with --check a comparison with central finite differences in float64."""

from __future__ import annotations

import sys

import numpy as np

from ..fileio import save_npz
from ..text import value_text
from .options import (
    float_dtype,
    gather_inputs,
    gather_params,
    gather_random,
    load_model,
    loss_option,
    model_options,
    positive_int,
    value_options,
)


def add_parser(sub) -> None:
    p = sub.add_parser("grad", help="differentiate the loss (or --of NAME) and print every gradient")
    model_options(p)
    loss_option(p)
    value_options(p)
    p.add_argument("--of", metavar="NAME", help="the scalar to differentiate (default: the loss, or the single output)")
    p.add_argument("--wrt", metavar="NAMES", help="comma-separated inputs / parameters (default: all trainable "
                   "parameters and float inputs)")
    p.add_argument("--out", metavar="GRADS.npz", help="write the gradients here, keyed by name")
    p.add_argument("--check", action="store_true", help="compare with central finite differences in float64")
    p.add_argument("--check-entries", type=positive_int, default=32, metavar="N",
                   help="entries checked per tensor; larger tensors are sampled (default 32)")
    p.set_defaults(func=cmd_grad)


def cmd_grad(args) -> int:
    from ..runtime.gradcheck import TOLERANCE, finite_difference_check

    model = load_model(args)
    params = gather_params(args, model)
    inputs = gather_random(args, model, gather_inputs(args, model))
    wrt = args.wrt.split(",") if args.wrt else None
    result = model.grad(inputs, params, of=args.of, wrt=wrt, seed=args.seed,
                        float_dtype=float_dtype(args.dtype), intermediates=True, backend=args.backend)
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
