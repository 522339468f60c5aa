"""`nnc import model.onnx -o model.nn`: an ONNX model as a readable .nn file and its parameters as an .npz beside
it (nnc.onnx.importer), both written atomically; `nnc eval model.nn --params model.npz` then computes what the ONNX
model computes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import NncError


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="turn an ONNX model into a .nn file and its parameters (.npz)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks")
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX file")
    p.add_argument("-o", "--output", metavar="FILE.nn", help="where to write the model (default: the ONNX file's "
                   "name with .nn); the parameters go beside it, with .npz")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from ..fileio import atomic_write, save_npz
    from ..front import ast
    from ..model import loads
    from ..onnx.importer import import_onnx

    out = Path(args.output or Path(args.model).with_suffix(".nn").name)
    if out.suffix != ".nn":
        raise NncError(f"-o {out}: expected a .nn file name")
    npz = out.with_suffix(".npz")
    if not args.overwrite:
        for path in (out, npz):
            if path.exists():
                raise NncError(f"{path} exists", hint="give another -o, or --overwrite to replace it")
    imported = import_onnx(args.model, params_file=npz.name)
    model = loads(imported.text, str(out))   # it builds: shapes checked before anything is written
    model.file_params = imported.params
    model.complete_params(random_params=False)
    save_npz(npz, imported.params)
    atomic_write(out, lambda f: f.write(imported.text.encode()))
    count = sum(v.size for v in imported.params.values())
    steps = sum(isinstance(s, (ast.Assign, ast.Unpack)) for s in model.ast.body)
    print(f"wrote {out}: model '{model.name}', {steps} statements, outputs {', '.join(model.outputs)}")
    print(f"wrote {npz}: {len(imported.params)} parameters, {count:,} numbers")
    print(f"  nnc eval {out} --params {npz} --random-inputs")
    return 0
