"""`nnc export MODEL.nn --params RUN -o model.onnx`: the model as an ONNX file (nnc.onnx.export) for onnxruntime,
Netron and every framework that reads ONNX; its evaluation form, or with --training its training form (batch
statistics, dropout, the loss and the updated running statistics)."""

from __future__ import annotations

import math
from pathlib import Path

from ..text import shape_text
from .options import gather_params, load_model, model_options, params_options, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write the model as an ONNX file (evaluation form, or --training)")
    model_options(p)
    params_options(p, seed_help="seed for --random-params (default 0)")
    p.add_argument("-o", "--output", metavar="FILE.onnx", help="where to write it (default: the model's name .onnx)")
    p.add_argument("--training", action="store_true", help="the training form: batch statistics, dropout, the loss "
                   "and the running statistics after the step (not gradients or the optimizer)")
    p.add_argument("--opset", type=positive_int, metavar="N", help="the ONNX opset (default 17)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..onnx.export import DEFAULT_OPSET, export, require_onnx

    onnx = require_onnx()
    model = load_model(args)
    params = gather_params(args, model)
    path = Path(args.output or f"{model.name}.onnx")
    proto = export(model, params, path, training=args.training, opset=args.opset or DEFAULT_OPSET)
    graph = proto.graph
    print(f"wrote {path}: model '{model.name}' ({'training' if args.training else 'evaluation'} form), "
          f"ONNX opset {proto.opset_import[0].version}, {len(graph.node)} nodes")
    print(f"  inputs   {_values(onnx, graph.input)}")
    print(f"  outputs  {_values(onnx, graph.output)}")
    size = sum(math.prod(t.dims) for t in graph.initializer)
    print(f"  parameters {len(graph.initializer)} initializers, {size:,} numbers")
    return 0


def _values(onnx, infos) -> str:
    return ", ".join(f"{v.name} {_type(onnx, v)}" for v in infos) or "none"


def _type(onnx, v) -> str:
    """`[B, 784]`, `int[B]` (an int64 tensor), `f64[3]`: as nnc writes types."""
    t = v.type.tensor_type
    prefix = {onnx.TensorProto.INT64: "int", onnx.TensorProto.DOUBLE: "f64"}.get(t.elem_type, "")
    return prefix + shape_text(d.dim_param or d.dim_value for d in t.shape.dim)
