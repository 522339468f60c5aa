"""ONNX translators for layers, shapes, activations and arithmetic (the registry is `translators.py`).

Layers whose weights are initializers become nnc's layer functions (`dense`, `conv2d`, `conv_transpose2d`,
`batchnorm`, `layernorm`, `embedding`, `lstm`, `gru`, `rnn`) named after the initializers' module path, with
the weights converted where nnc's layout differs: a Gemm's transposed B and PyTorch's [out, in] become dense's
[in, out], ONNX's recurrent gates (LSTM iofc, GRU zrh) become nnc's (PyTorch's) ifgo and rzn. Shapes come
from ONNX shape inference and from what the importer folded, so `reshape` always gets its dims written out
(the batch as `B`).
"""

from __future__ import annotations

import math

import numpy as np

from .translators import Const, Node, Several, Value, fmt, translates

BINARY = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}
LITERAL_PIECES = 256   # a Gather of more positions than this is refused rather than written as that many slices


def dims(n: Node, shape) -> str:
    if shape is None or "?" in shape:
        n.fail("the output shape is not known at import time")
    return fmt(list(shape))


def weight(n: Node, i: int, what: str = "weight") -> np.ndarray:
    """Input i as an initializer's values: nnc's layers hold their weights as parameters."""
    c = n.const(i)
    if c is None or c.dtype.kind != "f":
        n.fail(f"the {what} (input {i}) is computed in the model; nnc imports it only as an initializer")
    return c


def one(n: Node, values, what: str) -> int:
    """A pair of equal numbers (strides, dilations) as one: nnc's layers take one for both axes."""
    values = [int(v) for v in values]
    if len(set(values)) != 1:
        n.fail(f"{what} {values} differ between the axes; nnc takes one {what.rstrip('s')} for both")
    return values[0]


def pads_of(n: Node, kernel, strides, dilations, in_hw) -> int:
    """ONNX pads (or auto_pad) as one symmetric pad."""
    auto = n.attr("auto_pad", "NOTSET")
    if auto == "VALID":
        return 0
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for k, s, d, size in zip(kernel, strides, dilations, in_hw):
            if not isinstance(size, int):
                n.fail("auto_pad SAME needs the image size at import time")
            out = -(-size // s)
            total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
            pads += [total // 2, total - total // 2]
    else:
        p = [int(v) for v in n.attr("pads", [0] * (2 * len(kernel)))]
        pads = p[:len(kernel)] + p[len(kernel):]
    if len(set(pads)) != 1:
        n.fail(f"pads {pads} are not the same on every side; nnc pads all sides alike")
    return pads[0]


def kernel_text(k) -> str:
    return str(k[0]) if k[0] == k[1] else fmt(list(k))


# ---- linear layers ------------------------------------------------------------------------------------------


@translates("Shape", "Size")
def shape_of(n: Node) -> Const:
    """A shape ONNX's inference did not know when the importer folded: nnc's (the statements so far, built)."""
    shape = n.shape(0)
    if n.op_type == "Size":
        if any(isinstance(d, str) for d in shape):
            n.fail(f"the size of {fmt(list(shape))} depends on the symbolic dims")
        return Const(np.array(math.prod(shape), dtype=np.int64))
    rank = len(shape)
    start, end = int(n.attr("start", 0)), int(n.attr("end", rank))
    part = list(shape)[max(0, start + rank if start < 0 else start):max(0, end + rank if end < 0 else end)]
    return Const(np.array(part, dtype=object if any(isinstance(d, str) for d in part) else np.int64))


@translates("MatMul")
def matmul(n: Node) -> str:
    b = n.inputs[1]
    if b.initializer and b.const is not None and b.const.ndim == 2 and n.rank(0) in (2, 3):
        name = n.layer_name(b)
        n.bind(name, {"weight": b.const})
        return f'dense({n.x(0)}, {b.const.shape[1]}, bias=false, name="{name}")'
    a, b, sa, sb = n.x(0), n.x(1), n.shape(0), n.shape(1)
    if len(sa) >= 2 and len(sb) >= 2:
        return f"{a} @ {b}"
    # a vector is a matrix of one row (first operand) or one column (second), its axis dropped after
    out = n.out_shape()
    if out is None or "?" in out:
        n.fail("a matrix product with a vector whose result shape is not known at import time")
    if len(sa) == 1:
        a = f"reshape({a}, {fmt([1, sa[0]])})"
    if len(sb) == 1:
        b = f"reshape({b}, {fmt([sb[0], 1])})"
    return f"reshape({a} @ {b}, {fmt(list(out))})"


@translates("MatMulAdd")   # the importer's fusion of MatMul(x, W) and Add(·, b)
def matmul_add(n: Node) -> str:
    w, b = n.inputs[1], n.inputs[2]
    if n.rank(0) not in (2, 3):
        return f"{n.x(0)} @ {n.x(1)} + {n.x(2)}"
    name = n.layer_name(w, b)
    n.bind(name, {"weight": w.const, "bias": b.const})
    return f'dense({n.x(0)}, {w.const.shape[1]}, name="{name}")'


@translates("Gemm")
def gemm(n: Node) -> str:
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    x = n.x(0) if not n.attr("transA", 0) else f"transpose({n.x(0)})"
    b = n.inputs[1]
    c = n.inputs[2] if n.has(2) else None
    if b.initializer and b.const is not None and (c is None or c.const is not None):
        w = b.const.T if n.attr("transB", 0) else b.const
        units = w.shape[1]
        arrays = {"weight": alpha * w}
        if c is not None:
            if c.const.size not in (1, units) or (c.const.ndim == 2 and c.const.shape[0] != 1):
                n.fail(f"the bias has shape {list(c.const.shape)}, expected [{units}]")
            arrays["bias"] = beta * np.broadcast_to(c.const.reshape(-1), (units,))
        name = n.layer_name(b, c)
        n.bind(name, arrays)
        return f'dense({x}, {units}{"" if c is not None else ", bias=false"}, name="{name}")'
    y = n.x(1) if not n.attr("transB", 0) else f"transpose({n.x(1)})"
    expr = f"{x} @ {y}" if alpha == 1 else f"{fmt(alpha)} * ({x} @ {y})"
    if c is not None:
        expr += f" + {n.x(2)}" if beta == 1 else f" + {fmt(beta)} * {n.x(2)}"
    return expr


# ---- convolutions and pooling -------------------------------------------------------------------------------


def _conv_common(n: Node, kernel) -> tuple[int, int, int]:
    if n.rank(0) != 4:
        n.fail(f"input of shape {list(n.shape(0))}: nnc convolves and pools 2-D images [B, C, H, W] only")
    strides = n.attr("strides", [1, 1])
    dilations = n.attr("dilations", [1, 1])
    pad = pads_of(n, kernel, strides, dilations, n.shape(0)[2:])
    return one(n, strides, "strides"), one(n, dilations, "dilations"), pad


@translates("Conv")
def conv(n: Node) -> str:
    w = weight(n, 1)
    filters, _, kh, kw = w.shape
    stride, dilation, pad = _conv_common(n, (kh, kw))
    group = int(n.attr("group", 1))
    b = n.inputs[2] if n.has(2) else None
    name = n.layer_name(n.inputs[1], b)
    n.bind(name, {"weight": w, **({"bias": weight(n, 2, "bias")} if b is not None else {})})
    args = [n.x(0), str(filters), kernel_text((kh, kw))]
    args += [f"{k}={v}" for k, v, default in (("stride", stride, 1), ("pad", pad, 0), ("groups", group, 1),
                                             ("dilation", dilation, 1)) if v != default]
    if b is None:
        args.append("bias=false")
    return f'conv2d({", ".join(args)}, name="{name}")'


@translates("ConvTranspose")
def conv_transpose(n: Node) -> str:
    w = weight(n, 1)
    channels, per_group, kh, kw = w.shape
    if n.attr("output_shape") is not None:
        n.fail("output_shape is not supported; give pads and output_padding")
    stride, dilation, pad = _conv_common(n, (kh, kw))
    group = int(n.attr("group", 1))
    output_pad = one(n, n.attr("output_padding", [0, 0]), "output_paddings")
    b = n.inputs[2] if n.has(2) else None
    name = n.layer_name(n.inputs[1], b)
    n.bind(name, {"weight": w, **({"bias": weight(n, 2, "bias")} if b is not None else {})})
    args = [n.x(0), str(per_group * group), kernel_text((kh, kw))]
    args += [f"{k}={v}" for k, v, default in (("stride", stride, 1), ("pad", pad, 0), ("output_pad", output_pad, 0),
                                             ("groups", group, 1), ("dilation", dilation, 1)) if v != default]
    if b is None:
        args.append("bias=false")
    return f'conv_transpose2d({", ".join(args)}, name="{name}")'


def _pool(n: Node, fn: str) -> str:
    kernel = [int(k) for k in n.attr("kernel_shape")]
    if len(kernel) != 2 or kernel[0] != kernel[1]:
        n.fail(f"kernel_shape {kernel}: nnc pools square windows of 2-D images")
    stride, dilation, pad = _conv_common(n, kernel)
    if dilation != 1:
        n.fail("dilated pooling is not supported")
    if len(n.outputs) > 1 and n.outputs[1].name:
        n.fail("the indices output of MaxPool is not supported")
    args = [n.x(0), str(kernel[0]), f"stride={stride}"]
    if pad:
        args.append(f"pad={pad}")
    if n.attr("ceil_mode", 0):
        args.append("ceil_mode=true")
    if fn == "avgpool" and pad and not n.attr("count_include_pad", 0):
        args.append("count_include_pad=false")
    return f"{fn}({', '.join(args)})"


@translates("MaxPool")
def maxpool(n: Node) -> str:
    return _pool(n, "maxpool")


@translates("AveragePool")
def avgpool(n: Node) -> str:
    return _pool(n, "avgpool")


@translates("GlobalAveragePool", "GlobalMaxPool")
def global_pool(n: Node) -> str:
    axes = list(range(2, n.rank(0)))
    return f"{'mean' if n.op_type == 'GlobalAveragePool' else 'max'}({n.x(0)}, axis={fmt(axes)}, keepdims=true)"


# ---- normalization ------------------------------------------------------------------------------------------


@translates("BatchNormalization")
def batchnorm(n: Node) -> str:
    if n.attr("training_mode", 0):
        n.fail("training_mode=1 (batch statistics in the graph) is not supported; export the model in eval mode")
    if n.rank(0) not in (2, 4):
        n.fail(f"input of shape {list(n.shape(0))}: nnc's batchnorm takes [B, F] or [B, C, H, W]")
    arrays = {k: weight(n, i, k) for i, k in enumerate(("gamma", "beta", "running_mean", "running_var"), 1)}
    name = n.layer_name(*n.inputs[1:3])
    n.bind(name, arrays)
    momentum = 1.0 - float(str(np.float32(n.attr("momentum", 0.9))))   # ONNX's 0.9 keeps 0.9 of the running value
    eps = float(n.attr("epsilon", 1e-5))
    return f'batchnorm({n.x(0)}, momentum={fmt(momentum)}, eps={fmt(eps)}, name="{name}")'


@translates("LayerNormalization")
def layernorm(n: Node):
    rank = n.rank(0)
    axis = n.axis(n.attr("axis", -1), rank)
    stats = len(n.outputs) > 1 and any(v.used for v in n.outputs[1:])
    if axis != rank - 1 or n.const(1) is None or (n.has(2) and n.const(2) is None) or stats:
        return _layernorm_formula(n, axis, rank)
    gamma = weight(n, 1, "scale")
    beta = weight(n, 2, "bias") if n.has(2) else np.zeros_like(gamma)
    name = n.layer_name(n.inputs[1], n.inputs[2] if n.has(2) else None)
    n.bind(name, {"gamma": gamma, "beta": beta})
    return f'layernorm({n.x(0)}, eps={fmt(float(n.attr("epsilon", 1e-5)))}, name="{name}")'


def _layernorm_formula(n: Node, axis: int, rank: int) -> list:
    """ONNX's definition over the axes from `axis` on, with scale and bias of any origin: (x − mean) / √(var + ε)
    · scale + bias; its Mean and InvStdDev outputs too."""
    axes = fmt(list(range(axis, rank)))
    x = n.x(0)
    mean = n.emit("mean", f"mean({x}, axis={axes}, keepdims=true)")
    centred = n.emit("centred", f"{x} - {mean}")
    inv = n.emit("invstd", f"1.0 / sqrt(mean(square({centred}), axis={axes}, keepdims=true) + "
                           f"{fmt(float(n.attr('epsilon', 1e-5)))})")
    y = f"{centred} * {inv} * {n.x(1)}" + (f" + {n.x(2)}" if n.has(2) else "")
    return [y, mean, inv][:len(n.outputs)]


@translates("Softmax", "LogSoftmax")
def softmax(n: Node) -> str:
    rank = n.rank(0)
    axis = n.axis(n.attr("axis", -1 if n.opset >= 13 else 1), rank)
    if n.opset < 13 and axis != rank - 1:
        n.fail(f"opset {n.opset}'s softmax over the flattened axes {axis}.. is not supported")
    fn = "softmax" if n.op_type == "Softmax" else "log_softmax"
    return f"{fn}({n.x(0)}, axis={axis})" if axis != rank - 1 else f"{fn}({n.x(0)})"


# ---- activations and arithmetic -----------------------------------------------------------------------------


@translates("Relu", "Sigmoid", "Tanh")
def activation(n: Node) -> str:
    return f"{n.op_type.lower()}({n.x(0)})"


@translates("LeakyRelu")
def leaky_relu(n: Node) -> str:
    return f"leaky_relu({n.x(0)}, alpha={fmt(float(n.attr('alpha', 0.01)))})"


@translates("Elu")
def elu(n: Node) -> str:
    return f"elu({n.x(0)}, alpha={fmt(float(n.attr('alpha', 1.0)))})"


@translates("Softplus")
def softplus(n: Node) -> str:
    return f"softplus({n.x(0)})"


@translates("Add", "Sub", "Mul", "Div")
def arithmetic(n: Node) -> str:
    return f"{n.x(0)} {BINARY[n.op_type]} {n.x(1)}"


@translates("RandomNormal", "RandomNormalLike")
def random_normal(n: Node) -> str:
    """Fresh N(mean, scale²) noise of a shape (nnc's randn: seeded by the run, not by the node's seed)."""
    shape = n.attr("shape") if n.op_type == "RandomNormal" else n.shape(0)
    if shape is None or "?" in shape:
        n.fail("the shape of the noise is not known at import time")
    return f"randn({fmt(list(shape))}, mean={fmt(float(n.attr('mean', 0.0)))}, std={fmt(float(n.attr('scale', 1.0)))})"


@translates("Identity")
def identity(n: Node) -> str:
    return n.x(0)


@translates("Dropout")
def dropout(n: Node):
    """Evaluation's Dropout (training_mode absent or false): x itself, and a mask of ones. nnc's `dropout` is
    there the same identity while nnc evaluates, and drops values while it trains the imported model. In
    training mode ONNX draws the mask from its own seed, which nnc's seeded stream does not reproduce."""
    training = n.const(2) if n.has(2) else np.array(False)
    if training is None:
        n.fail("training_mode (input 2) is computed at run time; nnc imports Dropout only when it is known")
    ratio = n.const(1) if n.has(1) else np.array(n.attr("ratio", 0.5))
    if bool(np.asarray(training).reshape(-1)[0]):
        if ratio is None or float(ratio) != 0:
            n.fail("training_mode=true: ONNX's random mask (drawn from its seed) has no counterpart in nnc, whose "
                   "dropout draws from the run's seeded stream")
        ratio = np.array(0.0)
    p = float(ratio) if ratio is not None else 0.0   # a ratio computed at run time: evaluation ignores it
    y = f"dropout({n.x(0)}, {fmt(p)})" if p > 0 else n.x(0)
    if len(n.outputs) > 1 and n.outputs[1].used:
        return [y, f"broadcast_to(1.0, {dims(n, n.shape(0))})"]
    return y


@translates("Constant")
def constant(n: Node):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if n.attr(key) is not None:
            return Const(np.asarray(n.attr(key)))
    n.fail("a sparse or string constant is not supported")


# ---- shapes -------------------------------------------------------------------------------------------------


def _reshape_to(n: Node, target) -> str:
    """`reshape(x, target)`, target's -1 resolved with the batch kept symbolic."""
    shape = n.shape(0)
    target = [d if isinstance(d, str) else int(d) for d in target]
    if -1 in target:
        known = math.prod(d for d in target if isinstance(d, int) and d != -1)
        static = math.prod(d for d in shape if isinstance(d, int))
        symbols_in = sorted(d for d in shape if isinstance(d, str))
        symbols_out = sorted(d for d in target if isinstance(d, str))
        if symbols_in == symbols_out and known and static % known == 0:
            target[target.index(-1)] = static // known
        elif len(symbols_in) == 1 and not symbols_out and known == static:
            target[target.index(-1)] = symbols_in[0]
        else:
            n.fail(f"reshape of {fmt(list(shape))} to {target}: the -1 would merge the batch dim with others")
    if "?" in target:
        n.fail(f"reshape to {target}: a dim is not known at import time")
    n.outputs[0].shape = tuple(target)
    return f"reshape({n.x(0)}, {fmt(target)})"


@translates("Reshape")
def reshape(n: Node) -> str:
    target = n.const(1)
    if target is None:
        n.fail("the target shape is computed at run time from values nnc cannot fold")
    shape = n.shape(0)
    target = list(target.tolist())
    if not n.attr("allowzero", 0):
        target = [shape[i] if not isinstance(d, str) and d == 0 else d for i, d in enumerate(target)]
    return _reshape_to(n, target)


@translates("Flatten")
def flatten(n: Node) -> str:
    shape = n.shape(0)
    axis = int(n.attr("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    if axis == 1 and len(shape) > 2 and isinstance(shape[0], str):
        return f"flatten({n.x(0)})"
    head, tail = shape[:axis], shape[axis:]

    def merged(part):
        if any(isinstance(d, str) for d in part):
            if len(part) == 1:
                return part[0]
            n.fail(f"flatten of {fmt(list(shape))} at axis {axis} merges the batch dim with others")
        return math.prod(part)
    return _reshape_to(n, [merged(head), merged(tail)])


@translates("Squeeze", "Unsqueeze")
def squeeze(n: Node) -> str:
    shape = list(n.shape(0))
    axes = n.const(1).tolist() if n.has(1) else n.attr("axes")
    if n.op_type == "Squeeze":
        if axes is None:
            axes = [i for i, d in enumerate(shape) if d == 1]
        drop = {n.axis(a, len(shape)) for a in axes}
        target = [d for i, d in enumerate(shape) if i not in drop]
    else:
        rank = len(shape) + len(axes)
        target = shape
        for a in sorted(n.axis(a, rank) for a in axes):
            target = target[:a] + [1] + target[a:]
    return _reshape_to(n, target)


@translates("Transpose")
def transpose(n: Node) -> str:
    perm = n.attr("perm")
    return f"transpose({n.x(0)}, {fmt(list(perm))})" if perm is not None else f"transpose({n.x(0)})"


@translates("Concat")
def concat(n: Node) -> str:
    rank = n.rank(0)
    items = [n.x(i) for i in range(len(n.inputs)) if n.has(i)]
    return f"concat([{', '.join(items)}], axis={n.axis(n.attr('axis'), rank)})"


@translates("Slice")
def slice_(n: Node) -> str:
    shape = n.shape(0)
    if n.opset < 10:
        starts, ends, axes = n.attr("starts"), n.attr("ends"), n.attr("axes")
        steps = None
    else:
        got = [n.const(i) if n.has(i) else None for i in range(1, 5)]
        if any(g is None for g, i in zip(got, range(1, 5)) if n.has(i)):
            n.fail("the slice bounds are computed at run time")
        starts, ends, axes, steps = (g.tolist() if g is not None else None for g in got)
    axes = list(range(len(starts))) if axes is None else [n.axis(a, len(shape)) for a in axes]
    steps = steps or [1] * len(starts)
    subs = [":"] * len(shape)
    for a, s, e, st in zip(axes, starts, ends, steps):
        size = shape[a]
        if isinstance(size, str):
            n.fail(f"a slice of the symbolic dim {size} (axis {a}); nnc takes a symbolic dim whole")
        s, e, st = int(s), int(e), int(st)
        if st == 0:
            n.fail("a slice step of 0")
        start = max(-size, min(s, size)) if st > 0 else max(-size - 1, min(s, size - 1))
        stop = max(-size, min(e, size)) if st > 0 else max(-size - 1, min(e, size))
        lo = "" if (st > 0 and start in (0, -size)) or (st < 0 and start in (size - 1, -1)) else str(start)
        hi = "" if (st > 0 and stop == size) or (st < 0 and stop == -size - 1) else str(stop)
        subs[a] = f"{lo}:{hi}" + (f":{st}" if st != 1 else "")
    while len(subs) > 1 and subs[-1] == ":":
        subs.pop()
    return f"{n.x(0)}[{', '.join(subs)}]"


@translates("Gather")
def gather(n: Node) -> str:
    data, idx = n.inputs[0], n.inputs[1]
    axis = n.axis(n.attr("axis", 0), n.rank(0))
    if data.initializer and data.const is not None and data.const.ndim == 2 and axis == 0 and idx.const is None:
        if idx.dtype != "int":
            n.fail("the indices are not integers")
        name = n.layer_name(data)
        n.bind(name, {"weight": data.const})
        vocab, dim = data.const.shape
        return f'embedding({n.x(1)}, {vocab}, {dim}, name="{name}")'
    c = idx.const
    if c is None:
        n.fail("indices computed at run time select from a tensor that is not an embedding table")
    size = n.shape(0)[axis]
    flat = [int(i) % size if isinstance(size, int) else int(i) for i in np.asarray(c).reshape(-1)]
    subs = [":"] * axis
    if c.ndim == 0:
        subs.append(str(flat[0]))
    elif flat and flat == list(range(flat[0], flat[0] + len(flat))) and c.ndim == 1:
        subs.append(f"{flat[0]}:{flat[0] + len(flat)}")
    else:   # any positions: one slice each, joined along the axis, and the index's shape restored
        if len(flat) > LITERAL_PIECES:
            n.fail(f"gathering {len(flat)} positions at once: nnc writes one slice per position, at most "
                   f"{LITERAL_PIECES}")
        x = n.x(0)
        rows = [f"{x}[{_sub(axis, str(i) + ':' + str(i + 1))}]" for i in flat]
        joined = n.emit("rows", f"concat([{', '.join(rows)}], axis={axis})") if len(rows) > 1 else rows[0]
        shape = list(n.shape(0))
        target = shape[:axis] + list(c.shape) + shape[axis + 1:]
        n.outputs[0].shape = tuple(target)
        return joined if c.ndim == 1 else f"reshape({joined}, {fmt(target)})"
    return f"{n.x(0)}[{', '.join(subs)}]"


@translates("Expand")
def expand(n: Node) -> str:
    """ONNX's two-way broadcast of x and the target shape: x itself when that is x's shape, else broadcast_to."""
    target = n.const(1)
    if target is None:
        n.fail("the target shape is computed at run time")
    shape = list(n.shape(0))
    target = [d if isinstance(d, str) else int(d) for d in np.asarray(target, dtype=object).reshape(-1)]
    rank = max(len(shape), len(target))
    shape_, target_ = [1] * (rank - len(shape)) + shape, [1] * (rank - len(target)) + target
    out = []
    for a, t in zip(shape_, target_):
        if a == t or t == 1:
            out.append(a)
        elif a == 1:
            out.append(t)
        else:
            n.fail(f"x of shape {fmt(shape)} does not broadcast to {fmt(target)}")
    n.outputs[0].shape = tuple(out)
    return n.x(0) if out == shape else f"broadcast_to({n.x(0)}, {fmt(out)})"


# ---- recurrent layers ---------------------------------------------------------------------------------------

# ONNX's gate blocks in nnc's (PyTorch's) order: LSTM i o f c -> i f g o; GRU z r h -> r z n
GATE_ORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}
ACTIVATION = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _gates(w: np.ndarray, op: str, hidden: int) -> np.ndarray:
    """[G·H, ...] in ONNX's gate order -> nnc's order."""
    return np.concatenate([w[k * hidden:(k + 1) * hidden] for k in GATE_ORDER[op]], axis=0)


def _initial_state(n: Node, i: int, bidirectional: bool) -> str | None:
    """An initial state [dirs, B, H] as nnc's h0= / c0= [B, H]: None when absent or zeros (nnc's default)."""
    if not n.has(i):
        return None
    v = n.inputs[i]
    if v.fill == 0 or (v.const is not None and v.const.dtype != object and not np.any(v.const)):
        return None
    if bidirectional:
        n.fail("an initial state of a bidirectional layer is not supported (nnc starts both directions at zeros "
               "or at one h0)")
    return f"{n.x(i)}[:, 0]" if n.attr("layout", 0) else f"{n.x(i)}[0]"   # layout 1: [B, dirs, H]


@translates("LSTM", "GRU", "RNN")
def recurrent(n: Node) -> list:
    op = n.op_type
    hidden = int(n.attr("hidden_size"))
    direction = n.attr("direction", "forward")
    if direction == "reverse":
        n.fail("direction reverse alone is not supported; nnc runs forward or bidirectional")
    bidirectional = direction == "bidirectional"
    activations = n.attr("activations")
    kind = op.lower()
    activation = None
    if op == "RNN":
        acts = activations or ["Tanh"]
        if acts[0] not in ("Tanh", "Relu") or (bidirectional and len(acts) > 1 and acts[1] != acts[0]):
            n.fail(f"activations {acts}: nnc's rnn takes tanh or relu")
        activation = acts[0].lower()
    elif activations is not None and [a for a in activations] != ACTIVATION[op] * (2 if bidirectional else 1):
        n.fail(f"activations {activations}: nnc's {kind} has PyTorch's")
    if n.attr("clip") is not None or n.attr("input_forget", 0):
        n.fail("clip and input_forget are not supported")
    if op == "GRU" and not n.attr("linear_before_reset", 0):
        n.fail("linear_before_reset=0 is not supported: nnc's GRU is PyTorch's (linear_before_reset=1)")
    if n.has(4):
        n.fail("sequence_lens is not supported: every sequence runs its whole length")
    if op == "LSTM" and n.has(7):
        n.fail("peephole weights (P) are not supported")
    w, r = weight(n, 1, "W"), weight(n, 2, "R")
    g = len(GATE_ORDER[op])
    b = weight(n, 3, "B") if n.has(3) else np.zeros((w.shape[0], 2 * g * hidden), np.float32)
    name = n.layer_name(n.inputs[1])
    arrays = {}
    for d, prefix in enumerate(["", "reverse."][:2 if bidirectional else 1]):
        arrays[prefix + "weight_ih"] = _gates(w[d], op, hidden).T
        arrays[prefix + "weight_hh"] = _gates(r[d], op, hidden).T
        arrays[prefix + "bias_ih"] = _gates(b[d, :g * hidden], op, hidden)
        arrays[prefix + "bias_hh"] = _gates(b[d, g * hidden:], op, hidden)
    n.bind(name, arrays)
    x = n.x(0) if n.attr("layout", 0) else f"transpose({n.x(0)}, [1, 0, 2])"
    args = [x, str(hidden)]
    if activation == "relu":
        args.append('activation="relu"')
    h0 = _initial_state(n, 5, bidirectional)
    if h0 is not None:
        args.append(f"h0={h0}")
    if op == "LSTM":
        c0 = _initial_state(n, 6, bidirectional)
        if c0 is not None:
            args.append(f"c0={c0}")
        if len(n.outputs) > 2 and n.outputs[2].used:
            n.fail("the last cell state (Y_c) is not supported: nnc's lstm gives the hidden states")
    if bidirectional:
        args.append("bidirectional=true")
    dirs = 2 if bidirectional else 1
    batch, steps = (n.shape(0)[0], n.shape(0)[1]) if n.attr("layout", 0) else (n.shape(0)[1], n.shape(0)[0])
    wants_y = n.outputs[0].used
    wants_h = len(n.outputs) > 1 and n.outputs[1].used
    call = f'{kind}({", ".join(args + (["return_sequences=true"] if wants_y else []))}, name="{name}")'
    if not wants_y:   # the last state only: [B, dirs·H] -> Y_h [dirs, B, H]
        last = n.emit("last", call)
        return ["", f"transpose(reshape({last}, {fmt([batch, dirs, hidden])}), [1, 0, 2])"]
    seq = n.emit("seq", call)   # [B, T, dirs·H] -> Y [T, dirs, B, H] (layout 1: [B, T, dirs, H])
    split = f"reshape({seq}, {fmt([batch, steps, dirs, hidden])})"
    y = split if n.attr("layout", 0) else f"transpose({split}, [1, 2, 0, 3])"
    if not wants_h:
        return [y]
    last = f"{seq}[:, -1, :{hidden}]" if not bidirectional else \
        f"concat([{seq}[:, -1, :{hidden}], {seq}[:, 0, {hidden}:]], axis=1)"
    h = f"transpose(reshape({last}, {fmt([batch, dirs, hidden])}), [1, 0, 2])"
    return [y, h]


@translates("Split")
def split(n: Node):
    shape = n.shape(0)
    axis = n.axis(n.attr("axis", 0), len(shape))
    size = shape[axis]
    if isinstance(size, str):
        n.fail(f"a split of the symbolic dim {size}; nnc takes a symbolic dim whole")
    sizes = n.const(1) if n.has(1) else n.attr("split")
    count = len(n.outputs)
    if sizes is None:
        if size % count:
            n.fail(f"{size} values do not split into {count} equal pieces")
        sizes = [size // count] * count
    sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
    if len(sizes) == 1:
        return n.x(0)
    return Several(f"split({n.x(0)}, {fmt(sizes)}, axis={axis})", len(sizes))


# ---- padding, tiling, gathering, resizing -------------------------------------------------------------------


def _sub(axis: int, piece: str) -> str:
    return ", ".join([":"] * axis + [piece])


@translates("Pad")
def pad(n: Node) -> str:
    """Pad along each axis: negative pads slice, positive ones concatenate blocks on either side: the constant
    (broadcast_to), the edge value repeated, the values mirrored without the edge (reflect) or the other end's
    (wrap)."""
    shape = list(n.shape(0))
    rank = len(shape)
    mode = n.attr("mode", "constant")
    if n.opset < 11:
        pads, axes = n.attr("pads"), None
        value = fmt(float(n.attr("value", 0.0)))
    else:
        pads = n.const(1)
        if pads is None:
            n.fail("the pads (input 1) are computed at run time")
        axes = n.const(3) if n.has(3) else None
        if n.has(3) and axes is None:
            n.fail("the axes (input 3) are computed at run time")
        value = "0.0"
        if n.has(2):
            c = n.const(2)
            value = n.x(2) if c is None else fmt(float(np.asarray(c).reshape(-1)[0]))
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    axes = list(range(rank)) if axes is None else [n.axis(a, rank) for a in np.asarray(axes).reshape(-1)]
    if len(pads) != 2 * len(axes):
        n.fail(f"{len(pads)} pads for {len(axes)} axes, expected two per axis")
    x = n.x(0)
    for k, a in enumerate(axes):
        lo, hi = pads[k], pads[k + len(axes)]
        if lo == hi == 0:
            continue
        size = shape[a]
        if isinstance(size, str):
            n.fail(f"padding the symbolic dim {size} (axis {a}); nnc takes a symbolic dim whole")
        if lo < 0 or hi < 0:
            if mode != "constant" and (lo > 0 or hi > 0):
                n.fail(f"pads {lo} and {hi} of axis {a}: {mode} padding that also crops is not supported")
            start, stop = max(-lo, 0), size + min(hi, 0)
            if stop <= start:
                n.fail("the pads crop the whole axis: nnc has no empty tensors")
            bounds = f"{start or ''}:{stop if stop < size else ''}"
            x = n.emit(f"crop{a}", f"{x}[{_sub(a, bounds)}]")
            size = shape[a] = stop - start
            lo, hi = max(lo, 0), max(hi, 0)
            if lo == hi == 0:
                continue
        if mode == "reflect" and max(lo, hi) >= size:
            n.fail(f"reflect pads of {max(lo, hi)} on an axis of {size}: at most {size - 1}")
        if mode == "wrap" and max(lo, hi) > size:
            n.fail(f"wrap pads of {max(lo, hi)} on an axis of {size}: at most {size}")
        pieces = []
        for p, before in ((lo, True), (hi, False)):
            if p == 0:
                pieces.append(None)
                continue
            block = shape[:a] + [p] + shape[a + 1:]
            if mode == "constant":
                piece = f"broadcast_to({value}, {fmt(block)})"
            elif mode == "edge":
                edge = _sub(a, "0:1" if before else "-1:")
                piece = f"broadcast_to({x}[{edge}], {fmt(block)})"
            elif mode == "reflect":
                end = size - 2 - p
                bounds = f"{p}:0:-1" if before else f"{size - 2}:{end if end >= 0 else ''}:-1"
                piece = f"{x}[{_sub(a, bounds)}]"
            elif mode == "wrap":
                bounds = f"{size - p}:" if before else f":{p}"
                piece = f"{x}[{_sub(a, bounds)}]"
            else:
                n.fail(f"mode {mode!r}: ONNX defines constant, reflect, edge and wrap")
            pieces.append(piece)
        parts = [p for p in (pieces[0], x, pieces[1]) if p is not None]
        shape[a] = size + lo + hi
        x = n.emit(f"pad{a}", f"concat([{', '.join(parts)}], axis={a})")
    n.outputs[0].shape = tuple(shape)
    if x == n.x(0):
        return x
    return n.extra.pop()[1]   # the last helper statement is the node's own


@translates("Tile")
def tile(n: Node) -> str:
    """np.tile: each axis of size s repeated r times is an axis [r, s] of a broadcast, merged back."""
    repeats = n.const(1)
    if repeats is None:
        n.fail("the repeats (input 1) are computed at run time")
    repeats = [int(r) for r in np.asarray(repeats).reshape(-1)]
    shape = list(n.shape(0))
    if len(repeats) != len(shape):
        n.fail(f"{len(repeats)} repeats for {len(shape)} axes")
    if all(r == 1 for r in repeats):
        return n.x(0)
    split, wide, out = [], [], []
    for s, r in zip(shape, repeats):
        if r != 1:
            if isinstance(s, str):
                n.fail(f"repeating the symbolic dim {s}; nnc takes a symbolic dim whole")
            split.append(1)
            wide.append(r)
        split.append(s)
        wide.append(s)
        out.append(s if r == 1 else s * r)
    n.outputs[0].shape = tuple(out)
    return f"reshape(broadcast_to(reshape({n.x(0)}, {fmt(split)}), {fmt(wide)}), {fmt(out)})"


@translates("GatherElements")
def gather_elements(n: Node) -> str:
    """y[..., i, ...] = x[..., index[..., i, ...], ...] along the axis, the indices known at import time: a 0/1 mask
    [..., i, k, ...] of index = k picks (`where`) from x repeated along i, and a sum over k keeps the one picked."""
    idx = n.const(1)
    if idx is None:
        n.fail("the indices (input 1) are computed at run time")
    idx = np.asarray(idx).astype(np.int64)
    shape = list(n.shape(0))
    rank = len(shape)
    axis = n.axis(n.attr("axis", 0), rank)
    if idx.ndim != rank:
        n.fail(f"indices of rank {idx.ndim} for data of rank {rank}")
    size = _static(n, shape[axis], axis)
    x = n.x(0)
    subs = [":" if a == axis or idx.shape[a] == shape[a] else f":{idx.shape[a]}" for a in range(rank)]
    for a in range(rank):
        if a != axis and isinstance(shape[a], str):
            n.fail(f"the symbolic dim {shape[a]} (axis {a}); the indices have a fixed shape")
    if any(s != ":" for s in subs):
        x = n.emit("data", f"{x}[{', '.join(subs)}]")
    wide = [idx.shape[a] if a != axis else size for a in range(rank)]
    x = f"reshape({x}, {fmt(wide[:axis] + [1] + wide[axis:])})"
    index = np.where(idx < 0, idx + size, idx)
    at = np.arange(size).reshape((size,) + (1,) * (rank - 1 - axis))
    mask = (np.expand_dims(index, axis + 1) == at).astype(np.float32)
    mask = n.operand(Value(f"{n.label}_mask", shape=mask.shape, const=mask))
    return f"sum(where({mask}, {x}, 0.0), axis={axis + 1})"


def _static(n: Node, size, axis: int) -> int:
    if isinstance(size, str):
        n.fail(f"the axis {axis} has the symbolic size {size}, which must be known here")
    return size


def _source_index(n: Node, mode: str, size: int, factor: int) -> np.ndarray:
    """ONNX Resize's nearest source pixel of each output pixel along an axis of `size` scaled by `factor`."""
    out = size * factor
    x = np.arange(out, dtype=np.float64)
    if mode in ("half_pixel", "half_pixel_symmetric"):
        orig = (x + 0.5) / factor - 0.5
    elif mode == "pytorch_half_pixel":
        orig = (x + 0.5) / factor - 0.5 if out > 1 else np.zeros_like(x)
    elif mode == "asymmetric":
        orig = x / factor
    elif mode == "tf_half_pixel_for_nn":
        orig = (x + 0.5) / factor
    elif mode == "align_corners":
        orig = x * (size - 1) / (out - 1) if out > 1 else np.zeros_like(x)
    else:
        n.fail(f"coordinate_transformation_mode {mode!r} is not supported")
    rounding = n.attr("nearest_mode", "round_prefer_floor")
    pick = {"floor": np.floor, "ceil": np.ceil, "round_prefer_floor": lambda v: np.ceil(v - 0.5),
            "round_prefer_ceil": lambda v: np.floor(v + 0.5)}.get(rounding)
    if pick is None:
        n.fail(f"nearest_mode {rounding!r}: ONNX defines floor, ceil, round_prefer_floor and round_prefer_ceil")
    return np.clip(pick(orig), 0, size - 1).astype(np.int64)


@translates("Resize", "Upsample")
def resize(n: Node) -> str:
    """Resize of the image axes of [N, C, H, W] by one whole factor onto nnc's upsample: nearest where ONNX's
    coordinate and rounding modes pick each output pixel's source as floor(x / factor) does, linear (bilinear) with
    half-pixel centres (PyTorch's align_corners=False)."""
    shape = list(n.shape(0))
    if len(shape) != 4:
        n.fail(f"input of shape {fmt(shape)}: nnc resizes 2-D images [B, C, H, W] only")
    scales = sizes = None
    if n.op_type == "Upsample" or n.opset < 11:
        scales = n.const(1) if n.has(1) else n.attr("scales")
        if n.has(1) and scales is None:
            n.fail("the scales are computed at run time")
    else:
        scales = n.const(2) if n.has(2) else None
        sizes = n.const(3) if n.has(3) else None
        if (n.has(2) and scales is None) or (n.has(3) and sizes is None):
            n.fail("the scales or sizes are computed at run time")
        if scales is not None and np.asarray(scales).size == 0:
            scales = None
    axes = n.attr("axes")
    axes = list(range(4)) if axes is None else [n.axis(a, 4) for a in axes]
    factor = [1.0] * 4
    for k, a in enumerate(axes):
        if scales is not None:
            factor[a] = float(np.asarray(scales, dtype=np.float64).reshape(-1)[k])
        elif sizes is not None:
            size = _static(n, shape[a], a)
            factor[a] = int(np.asarray(sizes).reshape(-1)[k]) / size
        else:
            n.fail("neither scales nor sizes are given")
    f = factor[2]
    if factor[:2] != [1.0, 1.0] or factor[3] != f or f < 1 or f != int(f):
        n.fail(f"scales {factor}: nnc's upsample scales height and width by one whole factor")
    f = int(f)
    if f == 1:
        return n.x(0)
    mode = n.attr("mode", "nearest")
    ctm = n.attr("coordinate_transformation_mode", "half_pixel" if n.opset >= 11 else "asymmetric")
    if mode == "nearest":
        for a in (2, 3):
            size = _static(n, shape[a], a)
            if not np.array_equal(_source_index(n, ctm, size, f), np.arange(size * f) // f):
                n.fail(f"nearest with {ctm} and {n.attr('nearest_mode', 'round_prefer_floor')} picks other pixels "
                       f"than nnc's upsample (each pixel repeated)")
        return f"upsample({n.x(0)}, {f})"
    if mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric"):
        return f'upsample({n.x(0)}, {f}, mode="bilinear")'
    n.fail(f"mode {mode!r} with {ctm}: nnc's upsample is nearest, or bilinear with half-pixel centres")


@translates("Trilu")
def trilu(n: Node) -> str:
    """The upper (or lower) triangle of the last two axes from diagonal k on: `where` of a constant 0/1 mask."""
    shape = n.shape(0)
    if len(shape) < 2:
        n.fail(f"input of shape {fmt(list(shape))}: Trilu takes the last two axes of a matrix")
    rows, cols = (_static(n, shape[a], a) for a in (len(shape) - 2, len(shape) - 1))
    k = n.const(1) if n.has(1) else 0
    if k is None:
        n.fail("the diagonal k (input 1) is computed at run time")
    k = int(np.asarray(k).reshape(-1)[0])
    ones = np.ones((rows, cols), dtype=np.float32)
    mask = np.triu(ones, k) if n.attr("upper", 1) else np.tril(ones, k)
    mask = n.operand(Value(f"{n.label}_mask", shape=mask.shape, const=mask))
    return f"where({mask}, {n.x(0)}, 0.0)"
