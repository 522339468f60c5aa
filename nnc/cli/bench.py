"""`nnc bench MODEL.nn`: its options and what it prints; the measurement is nnc.train.bench's.

Threads and the optimizer default to what `nnc run` would use: the flag, else the train block's, else every core
this process may use (at most 8); more threads than cores need --oversubscribe. An imported .onnx model has no loss
to train: --loss gives it one, as for `nnc run`.
"""

from __future__ import annotations

import json

from ..errors import NncError
from ..train.bench import ROUNDS, measure
from .options import load_model, loss_option, model_options, optimizer_option, positive_int, threads_options


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time a model's compiled training step on synthetic data")
    model_options(p)
    loss_option(p)
    p.add_argument("--batch", type=positive_int, metavar="N", help="batch size (default: the train block's)")
    threads_options(p)
    optimizer_option(p)
    p.add_argument("--rounds", type=positive_int, default=ROUNDS, metavar="R", help="timed rounds (median)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from ..train.config import threads_of  # loads the trainer: when the command runs, not when nnc builds its parser

    model = load_model(args)
    if not model.graph.losses and str(args.model).endswith(".onnx"):
        raise NncError(f"model '{model.name}' has no loss, so there is no training step to time: an ONNX model "
                       "has outputs but no loss", hint=f"give one: nnc bench {args.model} --loss cross_entropy "
                       "(or --loss mse)")
    batch = args.batch or model.settings["batch"]
    result = measure(model, batch, threads_of(model.settings, args.threads), args.optimizer, rounds=args.rounds)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['model']}: training step, batch {batch}, {result['threads']} thread(s), "
          f"{result['optimizer']}, {result['kernels']} kernels")
    print(f"  compile   {result['compile_seconds']:.3f} s cold, {result['warm_compile_seconds']:.3f} s warm")
    print(f"  speed     {result['samples_per_second']:,.0f} samples/s "
          f"({result['step_seconds'] * 1e3:.3f} ms per step, median of {len(result['rounds'])} rounds)")
    return 0
