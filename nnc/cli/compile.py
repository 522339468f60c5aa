"""`nnc compile MODEL.nn`: the forward pass compiled to native code; its kernels, graph, LLVM IR or assembly."""

from __future__ import annotations

from pathlib import Path

from .options import load_model, model_options, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="compile the forward pass to native code; show the kernels, IR or assembly")
    model_options(p)
    p.add_argument("--batch", type=positive_int, metavar="N", help="batch size B (default: the train block's, or 1)")
    p.add_argument("--emit", choices=("summary", "graph", "llvm", "asm"), default="summary",
                   help="what to show: summary (default), graph (the fused kernels), llvm (optimized IR), asm")
    p.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead of printing")
    p.set_defaults(func=cmd_compile)


def cmd_compile(args) -> int:
    from ..backend.compiler import compile_report

    model = load_model(args)
    batch = args.batch or model.settings.get("batch") or 1
    text = compile_report(model.graph, {"B": batch}, args.emit)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0
