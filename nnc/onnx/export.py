"""ONNX export: a model's evaluation form (or, with `training=True`, its training form) as an ONNX graph.

    from nnc.onnx.export import to_onnx, export
    proto = to_onnx(model, "runs/mnist_mlp")        # an onnx.ModelProto
    export(model, params, "model.onnx")             # written atomically

The graph exported is the one `nnc eval` runs, after the forward pipeline (shapes, simplify): op by op,
each nnc op through one entry of `EMIT` (`rule(e, site)`, emitting ONNX nodes), like the backend's lowering
tables. Names are kept: inputs by their names, parameters as initializers by theirs (`h1.weight`), outputs
by the model's output names, intermediate values by their statement (`h1`, `h1/add_7`); a symbolic dim
(`B`) becomes a dynamic dim of that name, its size read from an input that has it where a shape needs it.
nnc's int tensors (labels, ids) are int64 in ONNX. An op with no ONNX counterpart (`UNSUPPORTED`, or one
neither table knows) is one NncError at its statement's source line.

The loops of nnc's recurrent layers (nnc/front/recurrent.py: `rnn`, `lstm`, `gru`, found by the `layer` their
scan node records) become ONNX's own RNN, LSTM and GRU operators, both directions of a bidirectional layer one
node, their weights converted to ONNX's layouts and gate orders under the layer's name (`h.W`, `h.R`, `h.B`);
the state after the last step is the operator's Y_h. Any other loop is an ONNX Scan with a body subgraph.

The training form adds the losses (as outputs named like the losses) and the running statistics after the
step (`updated/<name>`), with dropout as ONNX's Dropout in training mode and batch normalization using the
batch's statistics (both are ops nnc's training graph already spells out). Gradients and the optimizer step
are not exported: an ONNX inference graph has no place for them.

The `onnx` package is optional (`pip install -e '.[onnx]'`): imported only inside functions here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NncError
from ..fileio import atomic_write
from ..ir import ops
from ..ir.types import TensorType
from ..passes import pipeline
from .names import fresh_name

DEFAULT_OPSET = 17   # LayerNormalization's opset; every rule below is written for 17 and later
INSTALL_HINT = "install the ONNX extra: pip install -e '.[onnx]'"
INT64_MIN = -(2**63)
PROTOBUF_LIMIT = 2**31 - 1   # bytes in one serialized message


def require_onnx():
    """The `onnx` module, or one NncError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise NncError("ONNX export needs the 'onnx' package, which is not installed", hint=INSTALL_HINT) from None
    return onnx


def to_onnx(model, params=None, *, training: bool = False, opset: int = DEFAULT_OPSET):
    """The model's evaluation form (training form with `training`) as an `onnx.ModelProto` at `opset`.
    `params`: a run folder, a checkpoint or parameter .npz, or a dict of arrays (None: what the model was
    given by `load_params`); every randomly initialized parameter must be among them (MissingParams)."""
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not DEFAULT_OPSET <= opset <= newest:
        raise NncError(f"ONNX opset: got {opset}, expected {DEFAULT_OPSET} to {newest}",
                       hint=f"opset {DEFAULT_OPSET} is the default and what most tools read")
    values = model.complete_params(params, random_params=False)
    g = pipeline.forward(model.training_graph if training else model.graph)
    graph = _Exporter(onnx, g, values, opset, model.name, training).graph()
    proto = onnx.helper.make_model(graph, producer_name="nnc", opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   doc_string=f"model '{model.name}' ({'training' if training else 'evaluation'} "
                                              "form), exported by nnc")
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    return proto


def export(model, params, path, *, training: bool = False, opset: int = DEFAULT_OPSET):
    """Write `to_onnx(model, params, ...)` to `path` atomically; returns the ModelProto."""
    proto = to_onnx(model, params, training=training, opset=opset)
    size = proto.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise NncError(f"model '{model.name}' takes {size / 1e9:.1f} GB as ONNX, over the 2 GB protobuf allows in "
                       "one file", hint="nnc does not write ONNX's external data files")
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
    return proto


# ---- the exporter ------------------------------------------------------------------------------------------


@dataclass
class Site:
    """What a rule sees of one nnc node: its attributes, operand types and ONNX names, its type, the name its
    result must get, and the node id (for messages)."""

    node: int
    attrs: dict
    in_types: list
    xs: list
    type: TensorType
    out: str


class _Exporter:
    """Walks the graph in topological order and collects ONNX nodes, initializers and value names."""

    def __init__(self, onnx, g, params: dict, opset: int, model_name: str, training: bool, taken=None):
        self.onnx, self.h, self.g, self.params, self.opset = onnx, onnx.helper, g, params, opset
        self.model_name, self.training = model_name, training
        self.nodes: list = []
        self.initializers: list = []
        self.names: dict[int, str] = {}         # nnc node -> its ONNX value name
        self.taken: set[str] = set() if taken is None else taken   # a loop's body shares its model's names
        self.results: dict[str, list] = {}      # a loop's value name -> the ONNX names of its results (for item)
        self.dims: dict[str, str] = {}          # symbolic dim -> a 1-D int64 tensor holding its size
        self.used_inputs: set[int] = set()
        self.current: int | None = None         # the nnc node being emitted (for node names)
        self.layers: dict = {}                  # scan node -> the Recurrent layer it is a direction of
        self.last_steps: dict = {}              # slice node -> its scan: a recurrent direction's last state
        self.done: set[int] = set()             # nodes a rule wrote along with another one's
        self.needed: set[int] = set()           # the nodes the targets need (needed_for)

    # ---- names and small emitters ----------------------------------------------------------------------

    def fresh(self, stem: str) -> str:
        return fresh_name(stem, self.taken)

    def tmp(self) -> str:
        data = self.g.nodes[self.current] if self.current is not None else {}
        return self.fresh(f"{data.get('stmt') or 'graph'}/{data['op'].name}_{self.current}" if data else "graph/tmp")

    def add(self, op_type: str, inputs, out: str | None = None, *, outputs=None, **attrs) -> str:
        """An ONNX node `op_type(inputs)` writing `out` (a fresh name when None); returns that name."""
        outputs = list(outputs) if outputs is not None else [out or self.tmp()]
        data = self.g.nodes[self.current] if self.current is not None else {}
        node = self.h.make_node(op_type, list(inputs), outputs, name=self.fresh(f"{outputs[0]}:{op_type}"), **attrs)
        if data.get("loc") is not None:
            node.doc_string = f"{data['loc']} ({data.get('layer') or data['op'].name})"
        self.nodes.append(node)
        return outputs[0]

    def constant(self, value, dtype) -> str:
        return self.add("Constant", [], value=self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype)))

    def ints(self, values) -> str:
        """A 1-D int64 constant (axes, shapes, pads)."""
        return self.constant(np.asarray(list(values), dtype=np.int64).reshape(-1), np.int64)

    def scalar(self, value, nnc_dtype: str) -> str:
        return self.constant(value, onnx_numpy(nnc_dtype))

    def cast(self, x: str, nnc_dtype: str, out: str | None = None) -> str:
        return self.add("Cast", [x], out, to=onnx_type(self.onnx, nnc_dtype))

    def dim(self, name: str) -> str:
        """A 1-D int64 tensor [size of the symbolic dim `name`], read from an input that has it."""
        if name not in self.dims:
            for node in self.g.inputs.values():
                shape = self.g.type_of(node).shape
                if name in shape:
                    axis = shape.index(name)
                    self.used_inputs.add(node)
                    saved, self.current = self.current, None
                    self.dims[name] = self.add("Shape", [self.names[node]], self.fresh(f"{name}/size"),
                                               start=axis, end=axis + 1)
                    self.current = saved
                    break
            else:
                raise NncError(f"cannot export model '{self.model_name}' to ONNX: no input has the symbolic dim "
                               f"{name} that a shape needs")
        return self.dims[name]

    def shape(self, dims) -> str:
        """A 1-D int64 tensor holding `dims` (symbolic dims read at run time)."""
        if all(isinstance(d, int) for d in dims):
            return self.ints(dims)
        pieces = [self.dim(d) if isinstance(d, str) else self.ints([d]) for d in dims]
        return self.add("Concat", pieces, axis=0)

    def axes_input(self, op_type: str, x: str, axes, out: str | None = None, **attrs) -> str:
        """A reduction over `axes` (None: all): axes an input of ReduceSum (13+) and of the rest from opset 18,
        an attribute before."""
        if axes is None:
            return self.add(op_type, [x], out, **attrs)
        if op_type == "ReduceSum" or self.opset >= 18:   # ReduceSum's moved at 13, the others' at 18
            return self.add(op_type, [x, self.ints(axes)], out, **attrs)
        return self.add(op_type, [x], out, axes=list(axes), **attrs)

    # ---- the walk -----------------------------------------------------------------------------------------

    def targets(self) -> dict:
        """{output name: node}: the model's outputs (its losses when it has none); in the training form also
        the losses and the state updates (`updated/<name>`)."""
        g = self.g
        out = dict(g.outputs)
        if self.training or not out:
            out.update({name: n for name, n in g.losses.items() if name not in out})
        if self.training:
            out.update({f"updated/{name}": n for name, n in g.updates.items()})
        if not out:
            raise NncError(f"model '{self.model_name}' has no outputs and no loss to export to ONNX")
        return out

    def graph(self):
        g, h = self.g, self.h
        targets = self.targets()
        self.layers, self.last_steps = recurrent_layers(g)
        needed = self.needed = self.needed_for(targets.values())
        self.taken.update(g.inputs)
        self.taken.update(name for name, n in g.params.items() if n in needed)
        for name, n in g.inputs.items():
            self.names[n] = name
        for name, n in g.params.items():
            self.names[n] = name
        named_outputs = {}
        for name, n in targets.items():   # an op's result takes its first output's name
            if name in self.taken and self.names.get(n) != name:
                raise NncError(f"cannot export model '{self.model_name}' to ONNX: its output '{name}' has the name "
                               "of an input or parameter, and ONNX names each value once",
                               hint=f"rename the output, e.g. `{name}_out = {name}`")
            if n not in self.names and n not in named_outputs.values() and g.op(n).arity != 0:
                named_outputs[name] = n
                self.names[n] = name
        self.taken.update(targets)
        for n in g.topo():
            if n not in needed or g.op(n) in (ops.input, ops.param):
                continue
            self.emit(n)
        outputs = []
        for name, n in targets.items():
            if self.names[n] != name:
                self.current = None
                self.add("Identity", [self.names[n]], name)
            outputs.append(value_info(self.onnx, name, g.type_of(n)))
        used = needed | self.used_inputs
        inputs = [value_info(self.onnx, name, g.type_of(n)) for name, n in g.inputs.items() if n in used]
        for name, n in g.params.items():
            if n in needed:
                self.initializers.append(self.onnx.numpy_helper.from_array(
                    np.asarray(self.params[name], dtype=onnx_numpy(g.type_of(n).dtype)), name))
        return h.make_graph(self.nodes, self.model_name, inputs, outputs, self.initializers)

    def needed_for(self, targets) -> set[int]:
        """The nodes the targets need, where a recurrent layer's loop needs its input and initial states (not
        the input projection it holds in ONNX's operator) and its last state the loop (not the history)."""
        need, todo = set(), list(targets)
        while todo:
            n = todo.pop()
            if n in need:
                continue
            need.add(n)
            if n in self.layers:
                todo += self.layers[n].sources()
            elif n in self.last_steps:
                todo.append(self.last_steps[n])
            else:
                todo += self.g.operands(n)
        return need

    def emit(self, n: int) -> None:
        g = self.g
        if n in self.done:
            return
        data = g.nodes[n]
        op = data["op"]
        rule = EMIT.get(op)
        if rule is None:
            raise unsupported(g, n)
        self.current = n
        if n in self.layers:
            _recurrent(self, self.layers[n])
            return
        if n not in self.names:
            label = data.get("stmt") or "graph"
            self.names[n] = self.fresh(label if g.values.get(label) == n else f"{label}/{op.name}_{n}")
        operands = g.operands(n)
        site = Site(n, data["attrs"], [g.type_of(o) for o in operands], [self.names[o] for o in operands],
                    data["type"], self.names[n])
        rule(self, site)


def unsupported(g, n: int, why: str | None = None) -> NncError:
    """The error for node `n`, whose op (or these attributes of it: `why`) has no ONNX translation: located at
    its statement."""
    data = g.nodes[n]
    op = data["op"]
    why = why or UNSUPPORTED.get(op, "nnc has no ONNX translation for it")
    layer = data.get("layer")
    made_by = f", made by {layer}(...)" if layer not in (None, op.name) else ""
    stmt = f" (statement '{data['stmt']}'{made_by})" if data.get("stmt") else ""
    return NncError(f"cannot export '{op.name}'{stmt} to ONNX: {why}", loc=data.get("loc"),
                    hint=UNSUPPORTED_HINTS.get(op, "docs/onnx.md lists the ops that export"))


def onnx_type(onnx, nnc_dtype: str) -> int:
    """nnc's dtype as an ONNX element type: int tensors are int64."""
    return {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE,
            "int32": onnx.TensorProto.INT64}[nnc_dtype]


def onnx_numpy(nnc_dtype: str):
    return {"float32": np.float32, "float64": np.float64, "int32": np.int64}[nnc_dtype]


def value_info(onnx, name: str, t: TensorType):
    return onnx.helper.make_tensor_value_info(name, onnx_type(onnx, t.dtype), list(t.shape))


# ---- the rules: one per nnc op ------------------------------------------------------------------------------


def _same_dtype(e: _Exporter, s: Site) -> list:
    """The operands, cast to the result's dtype where they differ (nnc mixes float32 and float64)."""
    return [x if t.dtype == s.type.dtype else e.cast(x, s.type.dtype) for x, t in zip(s.xs, s.in_types)]


def simple(op_type: str, **fixed):
    """An nnc op that is one ONNX operator of the same operands."""
    def rule(e: _Exporter, s: Site) -> None:
        e.add(op_type, _same_dtype(e, s), s.out, **fixed)
    return rule


def _with_alpha(op_type: str, default: float):
    def rule(e, s):
        e.add(op_type, s.xs, s.out, alpha=float(s.attrs.get("alpha", default)))
    return rule


def _compare(op_type: str):
    """nnc's comparisons are 0/1 in the operands' dtype; ONNX's are bool."""
    def rule(e, s):
        a, b = (x if t.dtype == s.type.dtype else e.cast(x, s.type.dtype) for x, t in zip(s.xs, s.in_types))
        e.cast(e.add(op_type, [a, b]), s.type.dtype, s.out)
    return rule


def _square(e, s):
    e.add("Mul", [s.xs[0], s.xs[0]], s.out)


def _step(e, s):
    e.cast(e.add("GreaterOrEqual", [s.xs[0], e.scalar(0, s.type.dtype)]), s.type.dtype, s.out)


def _log1p_exp(e, z: str, dtype: str) -> str:
    """log(1 + e^z): ONNX's Softplus, which onnxruntime implements for float32 only, else spelt out."""
    if dtype == "float32":
        return e.add("Softplus", [z])
    return e.add("Log", [e.add("Add", [e.scalar(1, dtype), e.add("Exp", [z])])])


def _softplus(e, s):
    """log(1 + e^(β·x)) / β, and x where β·x > threshold (PyTorch's softplus)."""
    x, dtype = s.xs[0], s.type.dtype
    beta, threshold = float(s.attrs.get("beta", 1.0)), float(s.attrs.get("threshold", 20.0))
    z = x if beta == 1.0 else e.add("Mul", [x, e.scalar(beta, dtype)])
    soft = _log1p_exp(e, z, dtype)
    if beta != 1.0:
        soft = e.add("Div", [soft, e.scalar(beta, dtype)])
    e.add("Where", [e.add("Greater", [z, e.scalar(threshold, dtype)]), x, soft], s.out)


def _bce_logits(e, s):
    """max(z, 0) − z·t + log(1 + e^−|z|)."""
    z, t = _same_dtype(e, s)
    linear = e.add("Sub", [e.add("Relu", [z]), e.add("Mul", [z, t])])
    e.add("Add", [linear, _log1p_exp(e, e.add("Neg", [e.add("Abs", [z])]), s.type.dtype)], s.out)


def _xlogy(e, s):
    """x · log y, 0 where x = 0 unless y is NaN."""
    x, y = _same_dtype(e, s)
    product = e.add("Mul", [x, e.add("Log", [y])])
    zero = e.scalar(0, s.type.dtype)
    safe = e.add("Where", [e.add("Equal", [x, zero]), zero, product])
    e.add("Where", [e.add("IsNaN", [y]), y, safe], s.out)


def _where(e, s):
    """a where c ≠ 0, else b: nnc's condition is a 0/1 mask, ONNX's a bool."""
    c, a, b = s.xs
    chosen = [x if t.dtype == s.type.dtype else e.cast(x, s.type.dtype) for x, t in zip((a, b), s.in_types[1:])]
    taken = e.add("Not", [e.add("Equal", [c, e.scalar(0, s.in_types[0].dtype)])])
    e.add("Where", [taken, *chosen], s.out)


def _transposed(e, x: str, t: TensorType, flag: bool) -> str:
    if not flag:
        return x
    perm = list(range(t.rank))
    perm[-2:] = perm[-1], perm[-2]
    return e.add("Transpose", [x], perm=perm)


def _matmul(e, s):
    a, b = _same_dtype(e, s)
    e.add("MatMul", [_transposed(e, a, s.in_types[0], s.attrs.get("ta", False)),
                     _transposed(e, b, s.in_types[1], s.attrs.get("tb", False))], s.out)


def _matmul_sum(e, s):
    a, b = _same_dtype(e, s)
    product = e.add("MatMul", [_transposed(e, a, s.in_types[0], s.attrs.get("ta", False)),
                               _transposed(e, b, s.in_types[1], s.attrs.get("tb", False))])
    batch = len(s.in_types[0].shape) - 2
    if batch == 0:
        e.add("Identity", [product], s.out)
    else:
        e.axes_input("ReduceSum", product, range(batch), s.out, keepdims=0)


def _conv_attrs(s: Site, kshape) -> dict:
    stride, pad = s.attrs.get("stride", 1), s.attrs.get("pad", 0)
    dilation, groups = s.attrs.get("dilation", 1), s.attrs.get("groups", 1)
    return {"kernel_shape": list(kshape[2:]), "strides": [stride, stride], "pads": [pad] * 4,
            "dilations": [dilation, dilation], "group": groups}


def _conv2d(e, s):
    x, w = _same_dtype(e, s)
    e.add("Conv", [x, w], s.out, **_conv_attrs(s, s.in_types[1].shape))


def _conv_transpose(e, s):
    """conv2d_grad_input, the transposed convolution: ONNX's ConvTranspose, whose weight layout
    [in channels, out channels / groups, kh, kw] is nnc's [filters, channels / groups, kh, kw]."""
    dy, w = _same_dtype(e, s)
    attrs = _conv_attrs(s, s.in_types[1].shape)
    extra = []
    for axis in (2, 3):   # what the default output size leaves out: PyTorch's output_padding
        kernel = attrs["dilations"][0] * (s.in_types[1].shape[axis] - 1) + 1
        default = attrs["strides"][0] * (s.in_types[0].shape[axis] - 1) + kernel - 2 * attrs["pads"][0]
        extra.append(s.type.shape[axis] - default)
    if any(extra):
        attrs["output_padding"] = extra
    e.add("ConvTranspose", [dy, w], s.out, **attrs)


def _pool(op_type: str):
    """MaxPool / AveragePool. PyTorch's ceil_mode drops a last window that would start in the right padding,
    ONNX's keeps it: that window is sliced off."""
    def rule(e, s):
        size, stride, pad = s.attrs["size"], s.attrs["stride"], s.attrs.get("pad", 0)
        ceil_mode = bool(s.attrs.get("ceil_mode", False))
        attrs = {"kernel_shape": [size, size], "strides": [stride, stride], "pads": [pad] * 4,
                 "ceil_mode": int(ceil_mode)}
        if op_type == "AveragePool":
            attrs["count_include_pad"] = int(s.attrs.get("count_include_pad", True))
        sizes, outs = s.in_types[0].shape[2:], s.type.shape[2:]
        if ceil_mode and any(-(-(n + 2 * pad - size) // stride) + 1 != out for n, out in zip(sizes, outs)):
            pooled = e.add(op_type, s.xs, **attrs)
            e.add("Slice", [pooled, e.ints([0, 0]), e.ints(outs), e.ints([2, 3])], s.out)
        else:
            e.add(op_type, s.xs, s.out, **attrs)
    return rule


def _upsample(e, s):
    factor = float(s.attrs["factor"])
    scales = e.constant(np.array([1.0, 1.0, factor, factor], np.float32), np.float32)
    if s.attrs.get("mode", "nearest") == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:   # PyTorch's bilinear with align_corners=False: half-pixel centres, clamped at the edges
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    e.add("Resize", [s.xs[0], "", scales], s.out, **attrs)


def _reduce(op_type: str):
    def rule(e, s):
        axes = s.attrs.get("axis")
        keepdims = int(s.attrs.get("keepdims", False))
        if axes is not None and len(axes) == 0:   # nothing to reduce
            e.add("Identity", s.xs, s.out)
            return
        e.axes_input(op_type, s.xs[0], None if axes is None else list(axes), s.out, keepdims=keepdims)
    return rule


def _normalize(op_type: str):
    def rule(e, s):
        e.add(op_type, s.xs, s.out, axis=int(s.attrs.get("axis", -1)))
    return rule


def _xent(e, s):
    """−log_softmax(logits) at each label (int labels), or −Σ targets · log_softmax(logits) (one-hot targets)."""
    logits, labels = s.xs
    dtype = s.type.dtype
    if s.in_types[0].dtype != dtype:
        logits = e.cast(logits, dtype)
    ls = e.add("LogSoftmax", [logits], axis=-1)
    last = e.ints([-1])
    if s.in_types[1].is_float:
        if s.in_types[1].dtype != dtype:
            labels = e.cast(labels, dtype)
        picked = e.add("ReduceSum", [e.add("Mul", [labels, ls]), last], keepdims=0)
    else:
        index = e.add("Unsqueeze", [labels, last])
        picked = e.add("Squeeze", [e.add("GatherElements", [ls, index], axis=-1), last])
    e.add("Neg", [picked], s.out)


def _one_hot(e, s):
    """[ids == k for k < depth] in the wanted dtype (ONNX's OneHot has few dtypes in onnxruntime)."""
    classes = e.constant(np.arange(s.attrs["depth"], dtype=np.int64), np.int64)
    hits = e.add("Equal", [e.add("Unsqueeze", [s.xs[0], e.ints([-1])]), classes])
    e.cast(hits, s.attrs.get("dtype", "float32"), s.out)


def _dropout_mask(e, s):
    """The inverted-dropout mask: ONNX's Dropout in training mode gives which elements it kept."""
    p = float(s.attrs["p"])
    dtype = s.type.dtype
    dropped, mask = e.tmp(), e.tmp()
    e.add("Dropout", [s.xs[0], e.scalar(p, dtype), e.constant(np.array(True), np.bool_)], outputs=[dropped, mask])
    e.add("Mul", [e.cast(mask, dtype), e.scalar(1.0 / (1.0 - p), dtype)], s.out)


def _random_normal(e, s):
    shape = tuple(s.attrs["shape"])
    mean, std = float(s.attrs.get("mean", 0.0)), float(s.attrs.get("std", 1.0))
    if all(isinstance(d, int) for d in shape):
        e.add("RandomNormal", [], s.out, shape=list(shape), mean=mean, scale=std)
    else:
        like = e.add("ConstantOfShape", [e.shape(shape)],
                     value=e.onnx.numpy_helper.from_array(np.zeros(1, np.float32)))
        e.add("RandomNormalLike", [like], s.out, mean=mean, scale=std)


def _reshape(e, s):
    shape = list(s.type.shape)   # the attribute may hold a -1 the shape rule resolved
    symbolic = [i for i, d in enumerate(shape) if isinstance(d, str)]
    if len(symbolic) == 1:   # the one unknown dim is what the others leave
        shape[symbolic[0]] = -1
        target = e.ints(shape)
    else:
        target = e.shape(shape)
    e.add("Reshape", [s.xs[0], target], s.out)


def _transpose(e, s):
    e.add("Transpose", s.xs, s.out, perm=list(s.attrs["perm"]))


def _broadcast_to(e, s):
    e.add("Expand", [s.xs[0], e.shape(s.attrs["shape"])], s.out)


def _concat(e, s):
    e.add("Concat", _same_dtype(e, s), s.out, axis=int(s.attrs["axis"]))


def _slice(e, s):
    e.add("Slice", [s.xs[0], e.ints([s.attrs["start"]]), e.ints([s.attrs["stop"]]), e.ints([s.attrs["axis"]])],
          s.out)


def _strided_slice(e, s):
    starts, ends, axes, steps = [], [], [], []
    for axis, (first, stride, size) in enumerate(zip(s.attrs["start"], s.attrs["step"], s.attrs["shape"])):
        if isinstance(size, str):   # a symbolic axis, taken whole
            continue
        end = first + stride * size
        starts.append(first)
        ends.append(INT64_MIN if end < 0 else end)   # walking backwards past index 0
        axes.append(axis)
        steps.append(stride)
    if not axes:
        e.add("Identity", s.xs, s.out)
        return
    e.add("Slice", [s.xs[0], e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)], s.out)


def _take(e, s):
    e.add("Gather", s.xs, s.out, axis=0)


def _scatter_add(e, s):
    dy, ids = s.xs
    zeros = e.add("ConstantOfShape", [e.shape(s.type.shape)],
                  value=e.onnx.numpy_helper.from_array(np.zeros(1, onnx_numpy(s.type.dtype))))
    e.add("ScatterND", [zeros, e.add("Unsqueeze", [ids, e.ints([-1])]), dy], s.out, reduction="add")


# ---- recurrent layers: ONNX's RNN, LSTM and GRU ------------------------------------------------------------

RECURRENT_OPS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
ONNX_GATES = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}   # nnc's gate blocks in ONNX's order:
#                                                     LSTM i f g o -> i o f c; GRU r z n -> z r h


@dataclass
class Recurrent:
    """An nnc recurrent layer found in the graph (nnc/front/recurrent.py builds it): its kind and activation,
    the time-major input x [T, B, F] its loops read through the projection x·W_ih + b_ih, the initial states
    (None: zeros), and per direction (forward, then reverse) the scan node and its parameters' names
    (weight_ih, weight_hh, bias_ih, bias_hh)."""

    kind: str
    activation: str
    x: int
    states: list
    scans: list
    weights: list

    def sources(self) -> list:
        return [self.x, *(s for s in self.states if s is not None)]


def _zeros(g, n: int) -> bool:
    """Whether node n is a constant zero, broadcast or not (a recurrent layer's default initial state)."""
    if g.op(n) is ops.broadcast_to:
        n = g.operands(n)[0]
    return g.op(n) is ops.const and not np.any(np.asarray(g.nodes[n]["attrs"]["value"]))


def _layer_loop(g, n: int, param_names: dict):
    """The parts of scan node n when it is the loop of an nnc rnn/lstm/gru over a float32 sequence (onnxruntime
    has no float64 kernel for RNN, LSTM and GRU), as nnc/front/recurrent.py writes it, its results read only as
    the hidden states' history; else None."""
    data, a = g.nodes[n], g.nodes[n]["attrs"]
    kind, body = data.get("layer"), a["body"]
    if kind not in RECURRENT_OPS or body.model != kind:
        return None
    carries = ("h", "c")[:2 if kind == "lstm" else 1]
    if (a["carry_in"], a["seq_in"], a["const_in"], a["ys"], a["accs"]) != \
            (carries, ("x",), ("weight_hh", "bias_hh"), (), ()):
        return None
    *states, projected, w_hh, b_hh = g.operands(n)
    if g.op(projected) is not ops.add or g.type_of(projected).dtype != "float32":
        return None
    product, b_ih = g.operands(projected)
    if g.op(product) is not ops.matmul or g.nodes[product]["attrs"].get("ta") or g.nodes[product]["attrs"].get("tb"):
        return None
    x, w_ih = g.operands(product)
    weights = [param_names.get(w) for w in (w_ih, w_hh, b_ih, b_hh)]
    if None in weights or any(g.op(u) is not ops.item or g.nodes[u]["attrs"]["index"] != 0 for u in g.successors(n)):
        return None
    activation = "Relu" if any(body.op(m) is ops.relu for m in body.nodes) else "Tanh"
    return kind, activation, x, [None if _zeros(g, s) else s for s in states], weights


def recurrent_layers(g) -> tuple[dict, dict]:
    """The graph's recurrent layers: ({scan node: its Recurrent}, {slice node: scan node} for the slices that
    take a direction's last state, the one its ONNX operator gives as Y_h). A bidirectional
    layer's reverse loop (parameters NAME.reverse.*) joins its forward one's; a reverse loop without one, or
    any other scan, stays a Scan."""
    param_names = {n: name for name, n in g.params.items()}
    loops = {n: found for n in g.topo() if g.op(n) is ops.scan and (found := _layer_loop(g, n, param_names))}
    layers = {}
    for n, (kind, activation, x, states, weights) in loops.items():
        if g.nodes[n]["attrs"]["reverse"]:
            continue
        layer = Recurrent(kind, activation, x, states, [n], [weights])
        stem = weights[0].removesuffix("weight_ih")
        for m, (*same, other) in loops.items():
            if g.nodes[m]["attrs"]["reverse"] and same == [kind, activation, x, states] and \
                    stem != weights[0] and other[0] == f"{stem}reverse.weight_ih":
                layer.scans.append(m)
                layer.weights.append(other)
        for m in layer.scans:
            layers[m] = layer
    last_steps = {}
    for n in layers:
        steps = g.nodes[n]["attrs"]["length"]
        last = 0 if g.nodes[n]["attrs"]["reverse"] else steps - 1
        for item in g.successors(n):
            for user in g.successors(item):
                a = g.nodes[user]["attrs"]
                if g.op(user) is ops.slice and (a["axis"], a["start"], a["stop"]) == (0, last, last + 1):
                    last_steps[user] = n
    return layers, last_steps


def _recurrent(e: _Exporter, layer: Recurrent) -> None:
    """One ONNX RNN/LSTM/GRU node for all the layer's directions (W [dirs, G·H, F], R [dirs, G·H, H], B [dirs,
    2·G·H] = [W_b, R_b], gates in ONNX's order; sequences time-major), then what the graph reads of it: a
    direction's history [T, B, H] from Y [T, dirs, B, H], its last state [1, B, H] from Y_h [dirs, B, H]."""
    g = e.g
    label = g.nodes[layer.scans[0]].get("stmt") or layer.kind
    hidden = g.type_of(g.params[layer.weights[0][1]]).shape[0]   # weight_hh [H, G·H]
    order = ONNX_GATES[layer.kind]

    def gates(w):   # [G·H, ...] in nnc's gate order -> ONNX's
        return np.concatenate([w[k * hidden:(k + 1) * hidden] for k in order], axis=0)

    arrays = {"W": [], "R": [], "B": []}
    for w_ih, w_hh, b_ih, b_hh in layer.weights:
        w_ih, w_hh, b_ih, b_hh = (np.asarray(e.params[name], np.float32) for name in (w_ih, w_hh, b_ih, b_hh))
        arrays["W"].append(gates(w_ih.T))
        arrays["R"].append(gates(w_hh.T))
        arrays["B"].append(np.concatenate([gates(b_ih), gates(b_hh)]))
    stem = layer.weights[0][0].removesuffix("weight_ih") or f"{label}."
    inputs = [e.names[layer.x]]
    for what, blocks in arrays.items():
        name = e.fresh(f"{stem}{what}")
        e.initializers.append(e.onnx.numpy_helper.from_array(np.stack(blocks), name))
        inputs.append(name)
    dirs = len(layer.scans)
    initial = []
    for state in layer.states:
        if state is None:
            initial.append("")
            continue
        one = e.add("Unsqueeze", [e.names[state], e.ints([0])])
        initial.append(one if dirs == 1 else e.add("Concat", [one] * dirs, axis=0))
    while initial and not initial[-1]:
        initial.pop()
    if initial:
        inputs += ["", *initial]   # sequence_lens: every sequence runs its whole length
    attrs = {"hidden_size": hidden, "direction": "bidirectional" if dirs == 2 else "forward"}
    if layer.kind == "gru":
        attrs["linear_before_reset"] = 1   # PyTorch's GRU: the reset gate scales h·R_h + Rb_h
    if layer.kind == "rnn" and layer.activation != "Tanh":
        attrs["activations"] = [layer.activation] * dirs
    y, y_h = e.fresh(f"{label}/Y"), e.fresh(f"{label}/Y_h")
    e.add(RECURRENT_OPS[layer.kind], inputs, outputs=[y, y_h], **attrs)
    for d, scan in enumerate(layer.scans):
        e.done.add(scan)
        e.names[scan] = e.fresh(f"{g.nodes[scan].get('stmt') or label}/loop")
        if any(item in e.needed for item in g.successors(scan)):
            history = e.add("Squeeze", [y, e.ints([1])]) if dirs == 1 else \
                e.add("Gather", [y, e.constant(d, np.int64)], axis=1)
            e.results[e.names[scan]] = [history]
    for node, scan in e.last_steps.items():
        if scan not in layer.scans or node not in e.needed:
            continue
        d = layer.scans.index(scan)
        out = e.names.get(node)
        if dirs == 1 and out is None:
            e.names[node] = y_h
        elif dirs == 1:
            e.add("Identity", [y_h], out)
        else:
            e.names[node] = e.add("Slice", [y_h, e.ints([d]), e.ints([d + 1]), e.ints([0])],
                                  out or e.fresh(f"{g.nodes[node].get('stmt') or label}/last_{d}"))
        e.done.add(node)


def _scan(e, s):
    """nnc's loop over time as ONNX's Scan: the body a subgraph reading the constants (weights) from the outer
    graph by name; its outputs the new carries, then each carry again (stacked over time: nnc's histories) and
    the per-step outputs. The Scan's own first results (the final carries) are not read."""
    a = s.attrs
    body, carry_in, seq_in, const_in = a["body"], a["carry_in"], a["seq_in"], a["const_in"]
    n_c, n_s = len(carry_in), len(seq_in)
    if a.get("accs") or not n_s:
        raise unsupported(e.g, s.node, "a loop over time without sequences, or summing over time (a backward "
                                       "loop), has no ONNX Scan form here")
    sub = _Exporter(e.onnx, body, {}, e.opset, e.model_name, False, taken=e.taken)
    for name, outer in zip(const_in, s.xs[n_c + n_s:]):
        sub.names[body.inputs[name]] = outer
    label = e.g.nodes[s.node].get("stmt") or "loop"
    inputs = []
    for name in (*carry_in, *seq_in):
        node = body.inputs[name]
        sub.names[node] = e.fresh(f"{label}/body/{name}")
        inputs.append(value_info(e.onnx, sub.names[node], body.type_of(node)))
    carried = [body.outputs[name] for name in a["carry_out"]]
    stepped = [body.outputs[name] for name in a.get("ys", ())]
    needed = body.needed_for(carried + stepped)
    for n in body.topo():
        if n in needed and body.op(n) is not ops.input:
            sub.emit(n)
    sub.current = None
    outputs = []
    for n, what in [*((n, "carry") for n in carried), *((n, "history") for n in carried),
                    *((n, "y") for n in stepped)]:
        out = sub.add("Identity", [sub.names[n]], e.fresh(f"{label}/body/{what}"))
        outputs.append(value_info(e.onnx, out, body.type_of(n)))
    graph = e.h.make_graph(sub.nodes, f"{label}_body", inputs, outputs)
    finals = [e.fresh(f"{label}/final_{name}") for name in carry_in]
    results = [e.fresh(f"{label}/{what}") for what in (*(f"history_{c}" for c in carry_in),
                                                       *(f"ys_{y}" for y in a.get("ys", ())))]
    directions = {"scan_input_directions": [1] * n_s, "scan_output_directions": [1] * len(results)} \
        if a.get("reverse") else {}
    e.add("Scan", s.xs[:n_c + n_s], outputs=[*finals, *results], body=graph, num_scan_inputs=n_s, **directions)
    e.add("Identity", [finals[0]], s.out)
    e.results[s.out] = results


def _item(e, s):
    e.add("Identity", [e.results[s.xs[0]][s.attrs["index"]]], s.out)


def _const(e, s):
    e.add("Constant", [], s.out, value=e.onnx.numpy_helper.from_array(
        np.broadcast_to(np.asarray(s.attrs["value"]), s.type.shape).astype(onnx_numpy(s.type.dtype))))


def _count(e, s):
    dims = tuple(s.attrs["dims"])
    dtype = onnx_numpy(s.type.dtype)
    if all(isinstance(d, int) for d in dims):
        e.add("Constant", [], s.out, value=e.onnx.numpy_helper.from_array(np.asarray(np.prod(dims), dtype)))
    else:
        e.cast(e.add("ReduceProd", [e.shape(dims)], keepdims=0), s.type.dtype, s.out)


EMIT = {
    ops.const: _const,
    ops.count: _count,
    ops.add: simple("Add"),
    ops.sub: simple("Sub"),
    ops.mul: simple("Mul"),
    ops.div: simple("Div"),
    ops.pow: simple("Pow"),
    ops.maximum: simple("Max"),
    ops.minimum: simple("Min"),
    ops.neg: simple("Neg"),
    ops.relu: simple("Relu"),
    ops.sigmoid: simple("Sigmoid"),
    ops.tanh: simple("Tanh"),
    ops.exp: simple("Exp"),
    ops.log: simple("Log"),
    ops.sqrt: simple("Sqrt"),
    ops.abs: simple("Abs"),
    ops.sign: simple("Sign"),
    ops.identity: simple("Identity"),
    ops.stop_gradient: simple("Identity"),
    ops.cross_rank_sum: simple("Identity"),   # sync_batchnorm's sum over the ranks: one process has one
    ops.cross_rank_sum: simple("Identity"),   # the sum over a data-parallel run's ranks: one process runs ONNX
    ops.floor: simple("Floor"),
    ops.ceil: simple("Ceil"),
    ops.round: simple("Round"),   # halves to even, as nnc
    ops.sin: simple("Sin"),
    ops.cos: simple("Cos"),
    ops.tan: simple("Tan"),
    ops.asin: simple("Asin"),
    ops.acos: simple("Acos"),
    ops.atan: simple("Atan"),
    ops.sinh: simple("Sinh"),
    ops.cosh: simple("Cosh"),
    ops.asinh: simple("Asinh"),
    ops.acosh: simple("Acosh"),
    ops.atanh: simple("Atanh"),
    ops.erf: simple("Erf"),
    ops.square: _square,
    ops.step: _step,
    ops.leaky_relu: _with_alpha("LeakyRelu", 0.01),
    ops.elu: _with_alpha("Elu", 1.0),
    ops.softplus: _softplus,
    ops.bce_logits: _bce_logits,
    ops.xlogy: _xlogy,
    ops.greater: _compare("Greater"),
    ops.greater_equal: _compare("GreaterOrEqual"),
    ops.equal: _compare("Equal"),
    ops.matmul: _matmul,
    ops.matmul_sum: _matmul_sum,
    ops.conv2d: _conv2d,
    ops.conv2d_grad_input: _conv_transpose,
    ops.maxpool: _pool("MaxPool"),
    ops.avgpool: _pool("AveragePool"),
    ops.upsample: _upsample,
    ops.sum: _reduce("ReduceSum"),
    ops.mean: _reduce("ReduceMean"),
    ops.max: _reduce("ReduceMax"),
    ops.prod: _reduce("ReduceProd"),
    ops.where: _where,
    ops.softmax: _normalize("Softmax"),
    ops.log_softmax: _normalize("LogSoftmax"),
    ops.xent: _xent,
    ops.one_hot: _one_hot,
    ops.dropout_mask: _dropout_mask,
    ops.random_normal: _random_normal,
    ops.reshape: _reshape,
    ops.transpose: _transpose,
    ops.broadcast_to: _broadcast_to,
    ops.concat: _concat,
    ops.slice: _slice,
    ops.strided_slice: _strided_slice,
    ops.take: _take,
    ops.scatter_add: _scatter_add,
    ops.scan: _scan,
    ops.item: _item,
}

# the ops that do not export, and why (input and param are the graph's inputs and initializers)
_BACKWARD = "it is a gradient op, which only backward graphs hold"
UNSUPPORTED = {
    ops.conv2d_grad_weight: _BACKWARD,
    ops.maxpool_grad: _BACKWARD,
    ops.avgpool_grad: _BACKWARD,
    ops.upsample_grad: _BACKWARD,
    ops.strided_slice_grad: _BACKWARD,
}
UNSUPPORTED_HINTS = {}
