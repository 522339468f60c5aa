"""ONNX import: an ONNX file becomes a readable `.nn` model and its parameters.

`import_onnx(path)` reads the proto, runs ONNX shape inference, replaces each node that has no translator but an
ONNX function definition (Attention, GroupNormalization, ...) by the function's body, folds with NumPy every node
whose inputs are known at import time (the shape arithmetic a PyTorch export wraps around `view` and `flatten`:
Shape, Gather, Concat, Unsqueeze, Cast, ConstantOfShape, Range, ...; a shape holding the symbolic batch dim folds to
a list such as [B, -1]), fuses a MatMul with the Add of its bias into one `dense`, and then calls one translator per
node (`translators.py`: ops_nn.py and ops_math.py register them). Each node becomes one statement named after its
ONNX node or value, with its shape in a comment; graph initializers become parameters (named after the initializer,
or `LAYER.weight` and the like where a layer function such as `conv2d` holds them), their values converted to nnc's
layouts where they differ. Any op with no translator fails the import with one error that lists every such op of the
file. A bool input is a float input of 0.0 / 1.0 (nnc's masks), and a constant holding infinities is computed
(`log(0.0)` is −inf). The result is `Imported`: the `.nn` text and the parameter arrays, which `nnc import` writes
to disk and `nnc.load("model.onnx")` builds in memory.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..front.builder import INIT_FUNCTIONS, INIT_NAMES
from ..front.layers import FUNCTIONS
from .names import fresh_name
from .translators import TRANSLATORS, Const, Node, Several, Value, fmt

INSTALL_HINT = "pip install -e '.[onnx]'"
KEYWORDS = {"model", "def", "input", "param", "output", "loss", "return", "train", "trains", "true", "false",
            "True", "False", "B"}
RESERVED = KEYWORDS | set(FUNCTIONS) | INIT_NAMES | INIT_FUNCTIONS
LITERAL_LIMIT = 64      # constants up to this many values are written out; larger ones become parameters
BATCH = "B"
LOSSES = (None, "cross_entropy", "mse")   # what --loss adds to an imported model
# ONNX element types as .nn dtypes (onnx.TensorProto: FLOAT=1, UINT8=2, INT8=3, INT16=5, INT32=6, INT64=7,
# BOOL=9, FLOAT16=10, DOUBLE=11, BFLOAT16=16)
DTYPES = {1: "float", 11: "f64", 2: "int", 3: "int", 4: "int", 5: "int", 6: "int", 7: "int", 12: "int", 13: "int",
          9: "bool", 10: "f16", 16: "bf16"}
SYMBOLIC_FOLDS = {"Shape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast", "Identity", "Reshape"}
SHAPE_ONLY = {"RandomNormalLike", "RandomUniformLike", "Shape", "Size"}   # ops that read only the input's shape
NOT_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


@dataclass
class Imported:
    """An imported model: its `.nn` source and the parameter values, under the names the source gives them."""

    name: str
    text: str
    params: dict = field(default_factory=dict)


def load_translators() -> dict:
    """Every registered translator: ops_nn.py's and ops_math.py's (no op type has two)."""
    from . import ops_math, ops_nn  # noqa: F401

    return TRANSLATORS


def onnx_module():
    try:
        import onnx
    except ImportError:
        raise NncError("reading ONNX files needs the onnx package", hint=INSTALL_HINT) from None
    return onnx


def import_onnx(source, name: str | None = None, params_file: str | None = None, loss: str | None = None) -> Imported:
    """Import an ONNX model (a path or a ModelProto) as .nn text and parameters; `params_file`: the .npz the
    parameters will be written to, named in the text's header comment; `loss` ("cross_entropy" or "mse") adds a
    target input (`label: int[B]`, or `target` shaped like the output) and that loss of the first output, so
    that the model can be trained (fine-tuned)."""
    onnx = onnx_module()
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise NncError(f"no such file: {path}" if not path.exists() else f"{path} is not a file")
        try:
            proto = onnx.load(str(path))
        except Exception as e:   # a protobuf decode error, a truncated file
            raise NncError(f"{path}: not an ONNX model ({type(e).__name__}: {e})",
                           hint="export one with torch.onnx.export or tf2onnx") from None
        name = name or path.stem
    else:
        proto = source
        name = name or proto.graph.name or "imported"
    if loss not in LOSSES:
        raise NncError(f"loss: got '{loss}', expected one of {', '.join(k for k in LOSSES if k)}")
    return _Importer(proto, sanitize(name) or "imported", params_file).run(loss)


def sanitize(name: str) -> str:
    """An ONNX name as a .nn name: letters, digits and _, not starting with a digit."""
    s = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    return "v" + s if s and s[0].isdigit() else s


def layer_path(name: str) -> str:
    """An initializer's module path as a layer name=: "layer1.0.conv1" -> "layer1_0.conv1"."""
    parts = []
    for p in name.split("."):
        p = re.sub(r"[^A-Za-z0-9_]+", "_", p).strip("_")
        if not p:
            continue
        if (p[0].isdigit() or p in KEYWORDS) and parts:
            parts[-1] += "_" + p
        else:
            parts.append(p if not p[0].isdigit() else "v" + p)
    return ".".join(parts)


def node_label(node, inits: dict) -> str:
    """A readable statement name for a node. PyTorch names a node by its module path and op type: a node holding
    its module's weights is named after the module ("/layer1/layer1.0/conv1/Conv" with layer1.0.conv1.weight:
    "layer1_0_conv1"), another after the module and its op ("/layer1/layer1.0/Relu": "layer1_0_relu"; a ReLU
    module's "/relu/Relu": "relu"). A node without such a name is named after its first output."""
    parts = [p for p in node.name.split("/") if p]
    if not (node.name.startswith("/") and parts and parts[-1].split("_")[0] == node.op_type):
        output = node.output[0] if node.output else ""
        if re.fullmatch(r"[A-Za-z_]\w*", output):   # a value with a name of its own: nnc's statements, `h1`
            return output
        made_by_nnc = re.fullmatch(r"([A-Za-z_]\w*)/([a-z_]+?)_\d+:\w+", node.name)   # nnc export: h1/matmul_4:MatMul
        if made_by_nnc:
            return f"{made_by_nnc.group(1)}_{made_by_nnc.group(2)}"
        return sanitize(node.name or output) or sanitize(node.op_type.lower())
    merged = []
    for p in parts[:-1]:
        if merged and p.startswith(merged[-1] + "."):
            merged[-1] = p
        else:
            merged.append(p)
    path = "_".join(merged)
    op = node.op_type.lower()
    module = merged[-1] if merged else ""
    holds = any(i in inits and (i.rsplit(".", 1)[0] + ".").endswith("." + module + ".") or
                i.rsplit(".", 1)[0] == module for i in node.input)
    return sanitize(path if path and (holds or op in module.lower().replace("_", "")) else f"{path}_{op}".strip("_"))


class _Importer:
    def __init__(self, proto, name: str, params_file: str | None):
        self.onnx = onnx_module()
        self.name = name
        self.params_file = params_file
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 17)
        proto = self.infer(proto)
        expanded = self.expand_functions(proto)
        if expanded is not None:
            proto = self.infer(expanded)
        self.proto = proto
        self.graph = proto.graph
        self.values: dict[str, Value] = {}
        self.params: dict[str, np.ndarray] = {}
        self.lines: list[str] = []
        self.used: set[str] = set()
        self.layers: set[str] = set()
        self.symbols: dict[str, str] = {}

    def infer(self, proto):
        try:
            return self.onnx.shape_inference.infer_shapes(proto, data_prop=True)
        except Exception:   # shape inference is a help: the translators ask for what they need
            return proto

    # ---- operators defined as ONNX functions ----------------------------------------------------------------

    def expand_functions(self, proto):
        """The model with each node that has no translator but an ONNX function definition (Attention,
        CenterCropPad, ...) replaced by the function's body, recursively; None when there is none."""
        translators = load_translators()
        graph = proto.graph
        types = {vi.name: vi.type for vi in list(graph.input) + list(graph.value_info) + list(graph.output)}
        for t in graph.initializer:
            types[t.name] = self.onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims))
        changed = False

        def expand(nodes, depth=0):
            nonlocal changed
            out = []
            for k, node in enumerate(nodes):
                body = None
                if node.domain in ("", "ai.onnx") and node.op_type not in translators and depth < 4:
                    body = self.function_body(node, types, f"{sanitize(node.name or node.output[0])}_{k}_")
                body = expand(body, depth + 1) if body is not None else None
                if body is None or any(a.g.node or a.graphs for n in body for a in n.attribute):
                    out.append(node)   # a Loop or an If, which nnc has not: the node itself may still fold
                else:
                    changed = True
                    out += body
            return out

        nodes = expand(list(graph.node))
        if not changed:
            return None
        model = self.onnx.ModelProto()
        model.CopyFrom(proto)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        return model

    def function_body(self, node, types: dict, prefix: str):
        """The nodes of the node's ONNX function (the version of the model's opset), or None: no such function, or
        one that depends on an input's type nnc does not know."""
        onnx = self.onnx
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opset)
        except Exception:   # no such operator in this opset
            return None
        node_ = onnx.NodeProto()
        node_.CopyFrom(node)
        given = {a.name for a in node.attribute}
        node_.attribute.extend(a.default_value for name, a in schema.attributes.items()
                               if name not in given and a.default_value.name)
        fn = onnx.FunctionProto()
        plain = [v for v in schema.function_opset_versions if v <= self.opset]
        dependent = [v for v in schema.context_dependent_function_opset_versions if v <= self.opset]
        if plain:
            fn.ParseFromString(schema.get_function_with_opset_version(max(plain)))
        elif dependent:
            if any(i and i not in types for i in node.input):
                return None
            try:
                fn.ParseFromString(schema.get_context_dependent_function_with_opset_version(
                    max(dependent), node_.SerializeToString(),
                    [types[i].SerializeToString() if i else onnx.TypeProto().SerializeToString() for i in node.input]))
            except Exception:   # the function cannot be built for these inputs
                return None
        else:
            return None
        if not fn.node:
            return None
        from onnx.backend.test.case.node import function_expand_helper  # the renaming onnx's tests expand with

        return function_expand_helper(node_, fn, prefix)

    # ---- the values ---------------------------------------------------------------------------------------

    def dims(self, ttype, first: bool = False):
        """A type's dims: numbers, and symbols for ONNX's named dims. An input's (`first`) first dim is the batch
        `B` (the first one named, and every unnamed one); its other named dims keep their names; a dim inference
        left unknown is "?"."""
        if not ttype.HasField("shape"):
            return None
        out = []
        for i, d in enumerate(ttype.shape.dim):
            if d.HasField("dim_value"):
                out.append(int(d.dim_value))
            elif d.dim_param and d.dim_param in self.symbols:
                out.append(self.symbols[d.dim_param])
            elif first and i == 0 and (not d.dim_param or BATCH not in self.symbols.values()):
                if d.dim_param:
                    self.symbols[d.dim_param] = BATCH
                out.append(BATCH)
            elif first and d.dim_param:
                sym = sanitize(d.dim_param) or f"D{len(self.symbols)}"
                self.symbols[d.dim_param] = sym[0].upper() + sym[1:]
                out.append(self.symbols[d.dim_param])
            else:
                out.append("?")
        return tuple(out)

    def value_of(self, vi, first: bool = False) -> Value:
        t = vi.type.tensor_type
        return Value(vi.name, shape=self.dims(t, first), dtype=DTYPES.get(t.elem_type, f"type{t.elem_type}"))

    def unique(self, base: str) -> str:
        """`base`, or base_2, base_3, ... when taken; a function's or keyword's name is numbered from 1
        (relu1, relu2: a statement named `relu` would hide the function)."""
        base = base or "v"
        if base in RESERVED:
            return fresh_name(base, self.used, sep="", first=1)
        return fresh_name(base, self.used)

    # ---- the walk -----------------------------------------------------------------------------------------

    def run(self, loss: str | None = None) -> Imported:
        numpy_helper = self.onnx.numpy_helper
        inits = self.inits = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        for vi in self.graph.input:
            if vi.name in inits:
                continue
            v = self.value_of(vi, first=True)
            if v.shape is None or "?" in v.shape:
                raise NncError(f"ONNX input '{vi.name}' has a shape nnc cannot read: {v.shape}",
                               hint="give the input's dims in the export (dynamic ones by name)")
            if v.dtype not in ("float", "f64", "int", "bool"):
                raise NncError(f"ONNX input '{vi.name}' holds {v.dtype} values, expected float, double, bool or "
                               f"integers")
            v.text = self.unique(sanitize(vi.name) or "x")
            self.values[vi.name] = v
            t = "" if v.dtype in ("float", "bool") else v.dtype   # a bool input: a 0.0 / 1.0 mask
            self.lines.append(f"  input {v.text}: {t}{fmt(list(v.shape))}")
        inputs_end = len(self.lines)
        for k, arr in inits.items():
            self.values[k] = Value(k, shape=arr.shape, dtype=DTYPES.get(_elem(arr), "float"), const=arr,
                                   initializer=True)
        for vi in list(self.graph.value_info) + list(self.graph.output):
            if vi.name not in self.values:
                self.values[vi.name] = self.value_of(vi)
        nodes = self.fuse(list(self.graph.node))
        live = self.prune(self.fold(nodes))
        self.check_supported(live)
        outputs = {o.name for o in self.graph.output}
        translators = load_translators()
        for node in live:
            consts = self.fold_node(node) if node.op_type not in SHAPE_ONLY else None
            if consts is not None:   # known now: a translator gave a constant (the shape nnc inferred) it reads
                for out, c in zip(node.output, consts):
                    v = self.values.setdefault(out, Value(out))
                    v.const, v.shape = c, tuple(c.shape)
                continue
            self.translate(node, translators[node.op_type], outputs)
        names = []
        for o in self.graph.output:
            v = self.values[o.name]
            if v.text is None or v.text in self.params:   # a constant, or a parameter given out as it is
                if v.const is None:
                    raise NncError(f"ONNX output '{o.name}' is computed by no node")
                expr = self.operand(v)
                if v.text is None and v.const.size == 0:
                    raise NncError(f"ONNX output '{o.name}' is an empty tensor; nnc has no empty tensors")
                if v.text is None:   # a literal (a folded Shape, Size, Range): a tensor of its shape, not a list
                    expr = f"broadcast_to({expr}, {fmt(list(v.const.shape))})"
                v.text = self.unique(sanitize(o.name) or "out")
                self.lines.append(f"  {v.text} = {expr}")
            names.append(v.text)
        self.complete_comments(names)
        self.lines.append(f"  output {', '.join(names)}")
        if loss:
            self.add_loss(loss, self.values[self.graph.output[0].name], inputs_end)
        header = [f"# imported from ONNX (opset {self.opset}, producer "
                  f"{(self.proto.producer_name + ' ' + self.proto.producer_version).strip() or 'unknown'})",
                  f"# parameters: {self.params_file} (nnc eval {Path(self.params_file).with_suffix('.nn')} "
                  f"--params {self.params_file})" if self.params_file else
                  "# parameters: the ONNX initializers",
                  f"model {self.name} {{"]
        return Imported(self.name, "\n".join(header + self.lines + ["}"]) + "\n", self.params)

    def add_loss(self, loss: str, out: Value, at: int) -> None:
        """The target input, declared with the others, and the loss of the first output."""
        shape = out.shape
        if shape is None or "?" in shape or not shape or shape[0] != BATCH:
            raise NncError(f"--loss: the output '{out.name}' has shape {_shape_text(shape)}, expected [B, ...] "
                           f"with the batch first")
        if out.dtype != "float":
            raise NncError(f"--loss: the output '{out.name}' holds {out.dtype} values, expected floats")
        if loss == "cross_entropy":
            target, typ = self.unique("label"), f"int{fmt(list(shape[:-1]))}"
        else:
            target, typ = self.unique("target"), fmt(list(shape))
        self.lines.insert(at, f"  input {target}: {typ}")
        self.lines.append(f"  loss {loss}({out.text}, {target})")

    def fuse(self, nodes: list) -> list:
        """MatMul(x, W) then Add(·, b), W and b initializers: one node, a `dense` layer."""
        consumers = Counter(i for n in nodes for i in n.input)
        outputs = {o.name for o in self.graph.output}
        by_input = {}
        for n in nodes:
            for i in n.input:
                by_input.setdefault(i, []).append(n)
        fused, drop = [], set()
        helper = self.onnx.helper
        for n in nodes:
            if id(n) in drop:
                continue
            if n.op_type == "MatMul" and consumers[n.output[0]] == 1 and n.output[0] not in outputs:
                w = self.values.get(n.input[1])
                add = by_input.get(n.output[0], [None])[0]
                if (w is not None and w.initializer and len(w.shape) == 2 and add is not None and add.op_type == "Add"):
                    other = add.input[1] if add.input[0] == n.output[0] else add.input[0]
                    b = self.values.get(other)
                    if b is not None and b.initializer and b.const.shape == (w.shape[1],):
                        drop.add(id(add))
                        fused.append(helper.make_node("MatMulAdd", [n.input[0], n.input[1], other], [add.output[0]],
                                                      name=n.name or add.name))
                        continue
            fused.append(n)
        return fused

    def fold(self, nodes: list) -> list:
        """Fold every node known at import time; the nodes left to translate. An If whose condition is known (a
        rank or size test PyTorch's export wraps around `tile`) is the nodes of the branch it takes."""
        live = []
        nodes = list(nodes)
        while nodes:
            node = nodes.pop(0)
            branch = self.taken_branch(node)
            if branch is not None:
                nodes[:0] = branch
                continue
            consts = self.fold_node(node)
            if consts is None:
                live.append(node)
                continue
            for out, c in zip(node.output, consts):
                v = self.values.setdefault(out, Value(out))
                v.const = c
                v.shape = tuple(c.shape)
        return live

    def taken_branch(self, node):
        """The nodes of the branch an If takes when its condition is known, its outputs renamed to the If's."""
        if node.op_type != "If" or node.domain not in ("", "ai.onnx"):
            return None
        cond = self.values.get(node.input[0])
        if cond is None or cond.const is None or cond.const.dtype == object or cond.const.size != 1:
            return None
        name = "then_branch" if bool(cond.const.reshape(-1)[0]) else "else_branch"
        graph = next(a.g for a in node.attribute if a.name == name)
        for vi in list(graph.value_info) + list(graph.output):
            if vi.name not in self.values:
                self.values[vi.name] = self.value_of(vi)
        helper = self.onnx.helper
        return list(graph.node) + [helper.make_node("Identity", [o.name], [out], name=out)
                                   for o, out in zip(graph.output, node.output)]

    def fold_node(self, node):
        if node.op_type in NOT_FOLDED or node.domain not in ("", "ai.onnx"):
            return None
        ins = [self.values.get(i) if i else None for i in node.input]
        if node.op_type == "Shape":
            shape = ins[0].shape if ins[0] is not None else None
            if shape is None or "?" in shape:
                return None
            attrs = _attrs(node, self.onnx)
            shape = shape[attrs.get("start", 0):attrs.get("end", len(shape))]
            return [_shape_array(shape)]
        if node.op_type == "ConstantOfShape" and ins[0] is not None and ins[0].const is not None \
                and ins[0].const.dtype == object:   # zeros of the batch size: a recurrent layer's initial state
            value = _attrs(node, self.onnx).get("value")
            v = self.values.setdefault(node.output[0], Value(node.output[0]))
            v.shape, v.fill = tuple(ins[0].const.tolist()), float(np.asarray(value).reshape(-1)[0]) \
                if value is not None else 0.0
            return []
        if node.op_type == "Size":
            shape = ins[0].shape if ins[0] is not None else None
            if shape is None or any(isinstance(d, str) for d in shape):
                return None
            return [np.array(int(np.prod(shape)), dtype=np.int64)]
        if any(v is None or v.const is None or (v.initializer and v.const.dtype.kind == "f")
               for v, i in zip(ins, node.input) if i):
            return None   # computed at run time, or from a parameter (whose value training changes)
        arrays = [v.const if v is not None else None for v in ins]
        if any(a is not None and a.dtype == object for a in arrays):
            out = self.fold_symbolic(node, arrays) if node.op_type in SYMBOLIC_FOLDS else None
            return None if out is None else [_shape_array(np.asarray(r, dtype=object).reshape(-1)).reshape(np.shape(r))
                                             for r in out]
        try:
            from onnx.reference import ReferenceEvaluator

            ev = ReferenceEvaluator(node, opsets={"": self.opset})
            feeds = {i: a for i, a in zip(node.input, arrays) if i}
            return [np.asarray(r) for r in ev.run(None, feeds)]
        except Exception:
            return None

    def fold_symbolic(self, node, arrays):
        """Shape arithmetic on a shape that holds symbolic dims (an object array such as ['B', 16, 5, 5])."""
        a = self.onnx.helper
        attrs = {x.name: a.get_attribute_value(x) for x in node.attribute}
        x = arrays[0]
        op = node.op_type
        if op in ("Identity", "Cast"):
            return [x]
        if op == "Gather":
            return [np.take(x, arrays[1].astype(np.int64), axis=attrs.get("axis", 0))]
        if op == "Concat":
            return [np.concatenate([np.asarray(v, dtype=object) for v in arrays], axis=attrs.get("axis", 0))]
        if op in ("Unsqueeze", "Squeeze"):
            axes = attrs.get("axes") if len(arrays) < 2 else arrays[1].tolist()
            if op == "Unsqueeze":
                out = x
                for ax in sorted(int(v) % (x.ndim + len(axes)) for v in axes):
                    out = np.expand_dims(out, ax)
                return [out]
            return [np.squeeze(x, axis=tuple(int(v) % x.ndim for v in axes)) if axes else np.squeeze(x)]
        if op == "Slice" and x.ndim == 1:
            starts, ends = arrays[1].tolist(), arrays[2].tolist()
            steps = arrays[4].tolist() if len(arrays) > 4 and arrays[4] is not None else [1]
            return [x[slice(int(starts[0]), int(min(ends[0], 2 ** 31)), int(steps[0]))]]
        return None

    def prune(self, nodes: list) -> list:
        """The nodes the outputs need. A node such as RandomNormalLike reads only its input's shape: when that is
        known, the input's node is not needed for it (a ConstantOfShape of the batch size, for one)."""
        needed = {o.name for o in self.graph.output}
        kept = []
        for node in reversed(nodes):
            if not any(o in needed for o in node.output):
                continue
            kept.append(node)
            for o in node.output:
                if o in self.values:
                    self.values[o].used = o in needed
            for i in node.input:
                v = self.values.get(i)
                if not (node.op_type in SHAPE_ONLY and v is not None and v.shape is not None and "?" not in v.shape):
                    needed.add(i)
        return kept[::-1]

    def check_supported(self, live: list) -> None:
        translators = load_translators()
        missing = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                          for n in live if n.op_type not in translators or n.domain not in ("", "ai.onnx"))
        if missing:
            listed = ", ".join(f"{op} ×{k}" if k > 1 else op for op, k in sorted(missing.items()))
            raise NncError(f"the ONNX model uses {sum(missing.values())} node(s) of {len(missing)} operator(s) nnc "
                           f"cannot import: {listed}",
                           hint="docs/onnx.md lists the operators nnc imports")

    # ---- one node -----------------------------------------------------------------------------------------

    def translate(self, node, translator, outputs: set) -> None:
        ins = [self.values.setdefault(i, Value(i)) if i else None for i in node.input]
        outs = [self.values.setdefault(o, Value(o)) for o in node.output]
        first = node.output[0]
        base = sanitize(first) if first in outputs else node_label(node, self.inits)
        label = self.unique(base)
        n = Node(node.op_type, node.name or first, ins, outs, _attrs(node, self.onnx), operand=self.operand,
                 binder=self.bind, namer=self.layer_name, resolver=self.resolve, label=label, opset=self.opset)
        try:
            result = translator(n)
        except NncError as e:
            if e.loc is None and not e.message.startswith("ONNX node"):
                e.message = f"ONNX node '{n.name}' ({n.op_type}): {e.message}"
                e.args = (e.message,)
            raise
        for name, expr in n.extra:
            self.used.add(name)
            self.lines.append(f"  {name} = {expr}")
        if isinstance(result, Several):
            labels = [label] + [self.unique(sanitize(o) if o in outputs else f"{label}_{k + 1}")
                                for k, o in enumerate(node.output[1:], 1)]
            shapes = "; ".join(_shape_text(v.shape) for v in outs)
            self.lines.append(f"  {', '.join(labels)} = {result.expr}   # {shapes}")
            for v, lab in zip(outs, labels):
                v.text = lab
            return
        results = result if isinstance(result, list) else [result]
        for k, (v, r) in enumerate(zip(outs, results)):
            if isinstance(r, Const):
                v.const, v.shape = r.value, tuple(r.value.shape)
                continue
            if r == "":   # an output nothing reads
                if k == 0:
                    self.used.discard(label)
                continue
            lab = label if k == 0 else self.unique(sanitize(node.output[k]) if node.output[k] in outputs
                                                    else f"{label}_{k + 1}")
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", r) and r in self.used and node.output[k] not in outputs:
                v.text = r   # Identity and the like: the same value under its name
                self.used.discard(lab)
                continue
            v.text = lab
            comment = f"   # {_shape_text(v.shape)}" if v.shape is not None else ""
            self.lines.append(f"  {lab} = {r}{comment}")

    def built(self, outputs: list[str]):
        """The statements so far built by nnc's front end (shapes checked), with these outputs."""
        from ..front.builder import build
        from ..front.syntax import parse

        text = "\n".join([f"model {self.name} {{", *self.lines, f"  output {', '.join(outputs)}", "}"])
        program = parse(text, "<import>")
        return build(program, program.models[0])

    def resolve(self, v: Value) -> tuple:
        g = self.built([v.text])
        return tuple(g.type_of(g.outputs[v.text]).shape)

    def complete_comments(self, outputs: list[str]) -> None:
        """The shape comments where ONNX's shape inference lost a dim ('?'), from nnc's shapes (one build)."""
        unknown = [i for i, line in enumerate(self.lines) if "   # [" in line and "?" in line.rsplit("   # [", 1)[1]]
        if not unknown:
            return
        g = self.built(outputs)
        for i in unknown:
            code = self.lines[i].rsplit("   # [", 1)[0]
            node = g.values.get(code.split("=", 1)[0].strip())
            if node is not None:
                self.lines[i] = f"{code}   # {_shape_text(g.type_of(node).shape)}"

    def operand(self, v: Value) -> str:
        if v.text is not None:
            return v.text
        c = v.const
        if v.fill is not None:
            raise NncError(f"the value '{v.name}', {_shape_text(v.shape)} filled with {v.fill:g} (a ConstantOfShape "
                           f"of the batch size), is used as a tensor; nnc imports it only as a recurrent layer's "
                           f"initial state of zeros")
        if c is None:
            raise NncError(f"the value '{v.name}' is used before it is computed")
        if c.dtype == object:
            raise NncError(f"the value '{v.name}' is a shape holding the symbolic batch dim, used as a tensor",
                           hint="export with a fixed batch size, or without computing on the batch size")
        if c.dtype.kind == "f" and not v.initializer and not np.all(np.isfinite(c)):
            return self.nonfinite(v, c)
        big = c.size > LITERAL_LIMIT or (v.initializer and c.dtype.kind == "f")   # an initializer: trained
        if big and c.dtype.kind == "f":
            v.text = self.unique(sanitize(v.name) or "const")
            self.params[v.text] = c.astype(np.float64 if c.dtype == np.float64 else np.float32)
            t = "f64" if c.dtype == np.float64 else ""
            self.lines.append(f"  param {v.text}: {t}{fmt(list(c.shape))}")
            return v.text
        if big:
            raise NncError(f"the constant '{v.name}' ({c.dtype}, {c.size} values) is too large to write out")
        if c.dtype.kind == "b":
            c = c.astype(np.int32)
        text = fmt(c.item() if c.ndim == 0 else c)
        return f"({text})" if text.startswith("-") else text

    def nonfinite(self, v: Value, c: np.ndarray) -> str:
        """A constant holding infinities or NaNs (an attention mask's −inf), which a .nn number cannot write: one
        statement computing them (log(0) is −inf, log(−1) NaN), chosen by `where` over the finite values."""
        name = self.unique(sanitize(v.name) or "const")
        kinds = [(np.isneginf(c), "log(0.0)"), (np.isposinf(c), "-log(0.0)"), (np.isnan(c), "log(-1.0)")]
        if c.ndim == 0:
            expr = next(e for mask, e in kinds if mask)
        else:
            finite = np.where(np.isfinite(c), c, 0)
            expr = fmt(float(finite.flat[0])) if np.all(finite == finite.flat[0]) else \
                self.operand(Value(f"{v.name}_finite", shape=c.shape, const=finite))   # (one number: no tensor)
            for k, (mask, e) in enumerate(kinds):
                if mask.any():
                    m = self.operand(Value(f"{v.name}_mask{k}", shape=c.shape, const=mask.astype(c.dtype)))
                    expr = f"where({m}, {e}, {expr})"
        v.text = name
        self.lines.append(f"  {name} = {expr}   # {_shape_text(c.shape)}")
        return name

    def layer_name(self, node: Node, inits: list) -> str:
        """A layer's name=: the module path of its first initializer (PyTorch's "conv1.weight" -> "conv1"),
        else the statement's name; unique."""
        base = ""
        if inits and inits[0].initializer and "." in inits[0].name:
            base = layer_path(inits[0].name.rsplit(".", 1)[0])
        if not base or base in self.layers or base in self.used:
            base = node.label
        return fresh_name(base, self.layers)

    def bind(self, layer: str, arrays: dict) -> None:
        for suffix, arr in arrays.items():
            arr = np.asarray(arr)
            self.params[f"{layer}.{suffix}"] = arr.astype(np.float64 if arr.dtype == np.float64 else np.float32)


def _attrs(node, onnx) -> dict:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        elif hasattr(v, "dims") and hasattr(v, "data_type"):   # a TensorProto
            v = onnx.numpy_helper.to_array(v)
        out[a.name] = v
    return out


def _elem(arr: np.ndarray) -> int:
    return {np.dtype(np.float32): 1, np.dtype(np.float64): 11, np.dtype(np.int32): 6, np.dtype(np.int64): 7,
            np.dtype(np.bool_): 9, np.dtype(np.float16): 10}.get(arr.dtype, 7 if arr.dtype.kind in "iu" else 1)


def _shape_array(shape) -> np.ndarray:
    if any(isinstance(d, str) for d in shape):
        return np.array(list(shape), dtype=object)
    return np.array(list(shape), dtype=np.int64)


def _shape_text(shape) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape else "[] scalar"
