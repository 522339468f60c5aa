"""The functions a model can call, and how each lowers to primitive ops.

Each function's signature is its contract: the builder reads the parameter
names, defaults and kind annotations (Tensor, TensorLike, int, float, bool,
Init, Dims, Ints, Axis, Size, Tensors, str) to bind and check a call's
arguments. Layers create their parameters through `b.params_for`, which names
them `<statement>.<param>`.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import ops
from ..ir.initializer import Init
from ..ir.ops.conv import UPSAMPLE_MODES
from ..ir.ops.elementwise import UNARY_FLOAT
from ..ir.ops.special import SPECIAL
from ..ir.types import TensorType, format_shape
from .recurrent import RECURRENT
from .values import (  # noqa: F401 (kinds read by bind_arguments)
    Axis,
    Dims,
    Ints,
    Size,
    Sizes,
    Tensor,
    TensorLike,
    Tensors,
    Values,
)
from .writer import GraphWriter

FUNCTIONS: dict = {}


def function(fn):
    FUNCTIONS[fn.__name__.rstrip("_")] = fn
    return fn


def _float_input(b: GraphWriter, x: Tensor, arg: int = 0, what: str = "input") -> TensorType:
    t = b.type(x)
    if not t.is_float:
        raise b.error(f"{what} is an int tensor {t}, expected a float tensor", arg,
                      hint="int tensors hold class labels; use them in a loss")
    return t


# ---- elementwise ---------------------------------------------------------------------


def _unary(op: ops.Op):
    def fn(b: GraphWriter, x: TensorLike):
        return b.prim(op, b.as_tensor(x))
    fn.__name__ = op.name
    fn.__doc__ = op.doc
    return fn


for _op in UNARY_FLOAT:
    FUNCTIONS[_op.name] = _unary(_op)


@function
def leaky_relu(b: GraphWriter, x: Tensor, alpha: float = 0.01):
    return b.prim(ops.leaky_relu, x, alpha=alpha)


@function
def elu(b: GraphWriter, x: Tensor, alpha: float = 1.0):
    return b.prim(ops.elu, x, alpha=alpha)


@function
def softplus(b: GraphWriter, x: Tensor, beta: float = 1.0, threshold: float = 20.0):
    """log(1 + e^(beta·x)) / beta, and x itself where beta·x > threshold (PyTorch's softplus)."""
    if beta == 0:
        raise b.error("beta must not be 0, got 0", 1, hint="softplus divides by beta; beta=1.0 is the usual one")
    return b.prim(ops.softplus, x, beta=beta, threshold=threshold)


def _binary(op: ops.Op):
    def fn(builder: GraphWriter, a: TensorLike, b: TensorLike):  # the user's names: maximum(a, b)
        return builder.prim(op, builder.as_tensor(a, like=b), builder.as_tensor(b, like=a))
    fn.__name__ = op.name
    return fn


FUNCTIONS["maximum"] = _binary(ops.maximum)
FUNCTIONS["minimum"] = _binary(ops.minimum)

for _op in SPECIAL:   # floor, sin, erf, ...: nnc/ir/ops/special.py
    FUNCTIONS[_op.name] = _unary(_op)

# Comparisons give 0.0 / 1.0 masks in the operands' dtype; less(a, b) is greater(b, a), exactly.
for _op in (ops.greater, ops.greater_equal, ops.equal):
    FUNCTIONS[_op.name] = _binary(_op)


def _swapped(op: ops.Op, name: str):
    def fn(builder: GraphWriter, a: TensorLike, b: TensorLike):
        return builder.prim(op, builder.as_tensor(b, like=a), builder.as_tensor(a, like=b))
    fn.__name__ = name
    return fn


FUNCTIONS["less"] = _swapped(ops.greater, "less")
FUNCTIONS["less_equal"] = _swapped(ops.greater_equal, "less_equal")


@function
def where(b: GraphWriter, cond: TensorLike, x: TensorLike, y: TensorLike):
    """x where cond is not 0, else y (torch.where of a mask), broadcasting the three."""
    x_t = b.as_tensor(x, like=y)
    y_t = b.as_tensor(y, like=x)
    return b.prim(ops.where, b.as_tensor(cond, like=x_t), x_t, y_t)


@function
def xlogy(builder: GraphWriter, x: TensorLike, y: TensorLike):
    """x · log(y), and 0 where x = 0 (torch.xlogy): Σ p · log p of a one-hot p is 0, not NaN."""
    return builder.prim(ops.xlogy, builder.as_tensor(x, like=y), builder.as_tensor(y, like=x))


@function
def stop_gradient(b: GraphWriter, x: TensorLike):
    """x's value, as a constant for the gradient (PyTorch's x.detach(), JAX's lax.stop_gradient)."""
    return b.prim(ops.stop_gradient, b.as_tensor(x))

# ---- reductions and shapes --------------------------------------------------------------


def _reduction(op: ops.Op):
    def fn(b: GraphWriter, x: Tensor, axis: Axis = None, keepdims: bool = False):
        return b.prim(op, x, axis=axis, keepdims=keepdims)
    fn.__name__ = op.name
    return fn


for _op in (ops.sum, ops.mean, ops.max, ops.prod):
    FUNCTIONS[_op.name] = _reduction(_op)


@function
def min_(b: GraphWriter, x: Tensor, axis: Axis = None, keepdims: bool = False):
    """−max(−x): the same values exactly (negation is exact), and the gradient to the minima, shared by ties."""
    return b.prim(ops.neg, b.prim(ops.max, b.prim(ops.neg, x), axis=axis, keepdims=keepdims))


@function
def softmax(b: GraphWriter, x: Tensor, axis: int = -1):
    return b.prim(ops.softmax, x, axis=axis)


@function
def log_softmax(b: GraphWriter, x: Tensor, axis: int = -1):
    return b.prim(ops.log_softmax, x, axis=axis)


@function
def reshape(b: GraphWriter, x: Tensor, shape: Dims):
    return b.prim(ops.reshape, x, shape=tuple(str(d) if isinstance(d, str) else d for d in shape))


@function
def broadcast_to(b: GraphWriter, x: TensorLike, shape: Dims):
    """x repeated along its size-1 (and new leading) dims to `shape`, NumPy's rule (`torch.broadcast_to`)."""
    return b.prim(ops.broadcast_to, b.as_tensor(x), shape=tuple(str(d) if isinstance(d, str) else d for d in shape))


@function
def flatten(b: GraphWriter, x: Tensor):
    """Keep the first (batch) dim, merge the rest."""
    t = b.type(x)
    if t.rank < 2:
        raise b.error(f"input has shape {format_shape(t.shape)}, expected at least 2 dims [batch, ...]", 0)
    rest = t.shape[1:]
    if not all(isinstance(d, int) for d in rest):
        raise b.error(f"cannot flatten the symbolic dims of {format_shape(t.shape)}", 0)
    size = 1
    for d in rest:
        size *= d
    return b.op(ops.reshape, x, shape=(t.shape[0], size))


@function
def transpose(b: GraphWriter, x: Tensor, perm: Ints = None):
    rank = b.type(x).rank
    return b.prim(ops.transpose, x, perm=tuple(perm) if perm is not None else tuple(reversed(range(rank))))


@function
def concat(b: GraphWriter, tensors: Tensors, axis: int = 1):
    if not tensors:
        raise b.error("needs at least one tensor", 0)
    return b.apply(ops.concat, tensors, b.current_loc, b.arg_locs[:1] * len(tensors), layer="concat", axis=axis)


def _axis(b: GraphWriter, axis: int, rank: int, arg: int) -> int:
    if not -rank <= axis < rank:
        raise b.error(f"axis {axis} is out of range, expected {-rank} <= axis < {rank}", arg)
    return axis % rank


@function
def stack(b: GraphWriter, tensors: Tensors, axis: int = 1):
    """Tensors of one shape joined along a new axis: stack([a, b], axis=1) of [B, H] each is [B, 2, H]."""
    if not tensors:
        raise b.error("needs at least one tensor", 0)
    shape = b.type(tensors[0]).shape
    for i, t in enumerate(tensors[1:], 2):
        if b.type(t).shape != shape:
            raise b.error(f"tensor {i} has shape {format_shape(b.type(t).shape)}, expected {format_shape(shape)} like "
                          f"tensor 1", 0, hint="stack joins tensors of one shape; concat joins along an existing axis")
    ax = _axis(b, axis, len(shape) + 1, 1)
    pieces = [b.op(ops.reshape, t, shape=shape[:ax] + (1,) + shape[ax:]) for t in tensors]
    return b.op(ops.concat, *pieces, axis=ax) if len(pieces) > 1 else pieces[0]


def _pieces(b: GraphWriter, x: Tensor, axis: int, arg: int) -> tuple:
    """(axis, its size) for split and chunk, which cut along a numeric axis."""
    t = b.type(x)
    ax = _axis(b, axis, t.rank, arg)
    if not isinstance(t.shape[ax], int):
        raise b.error(f"cannot cut {format_shape(t.shape)} along axis {axis}, the symbolic dim {t.shape[ax]}", arg,
                      hint=f"{t.shape[ax]} is known only when data arrives")
    return ax, t.shape[ax]


def _cut(b: GraphWriter, x: Tensor, ax: int, sizes) -> Values:
    out, start = [], 0
    for size in sizes:
        out.append(b.op(ops.slice, x, axis=ax, start=start, stop=start + size) if size != b.type(x).shape[ax] else x)
        start += size
    return Values(out)


@function
def split(b: GraphWriter, x: Tensor, sizes: Sizes, axis: int = 1):
    """PyTorch's torch.split: pieces of `sizes` each (the last one smaller when they do not divide the axis),
    or of the listed sizes, which add up to the axis. Several values: a, b = split(x, 2)."""
    ax, dim = _pieces(b, x, axis, 2)
    if isinstance(sizes, int):
        if sizes < 1:
            raise b.error(f"the piece size must be at least 1, got {sizes}", 1)
        sizes = [sizes] * (dim // sizes) + ([dim % sizes] if dim % sizes else [])
    elif any(s < 1 for s in sizes) or sum(sizes) != dim:
        raise b.error(f"sizes {list(sizes)} add up to {sum(sizes)}, expected {dim}, the size of axis {axis} of "
                      f"{format_shape(b.type(x).shape)}" if all(s >= 1 for s in sizes) else
                      f"sizes must be at least 1, got {list(sizes)}", 1)
    return _cut(b, x, ax, sizes)


@function
def chunk(b: GraphWriter, x: Tensor, n: int, axis: int = 1):
    """PyTorch's torch.chunk: pieces of ⌈size / n⌉ along the axis (the last one smaller), which may make fewer
    than n pieces. Several values: a, b = chunk(x, 2)."""
    ax, dim = _pieces(b, x, axis, 2)
    if n < 1:
        raise b.error(f"the number of pieces must be at least 1, got {n}", 1)
    size = -(-dim // n)
    return _cut(b, x, ax, [size] * (dim // size) + ([dim % size] if dim % size else []))


# ---- layers -----------------------------------------------------------------------------


@function
def dense(b: GraphWriter, x: Tensor, units: int, bias: bool = True, init: Init = None, name: str = None):
    """x @ weight + bias with weight [in, out]; on a sequence [B, T, in], at every step (as Keras)."""
    t = _float_input(b, x)
    if t.rank not in (2, 3):
        hint = ("insert flatten(...)" if t.rank > 2
                else f"reshape it, e.g. reshape(x, [{t.shape[0] if t.shape else 'B'}, 1])")
        raise b.error(f"input has shape {format_shape(t.shape)}, expected [B, features] or a sequence "
                      f"[B, T, features]", 0, hint)
    features = t.shape[-1]
    if not isinstance(features, int):
        raise b.error(f"input features are the symbol {features}, expected a number", 0)
    if units < 1:
        raise b.error(f"units must be at least 1, got {units}", 1)
    specs = [("weight", TensorType((features, units), t.dtype), init or Init("xavier"), True)]
    if bias:
        specs.append(("bias", TensorType((units,), t.dtype), Init("zeros"), True))
    p = b.params_for(name, specs)
    y = b.op(ops.matmul, x, p["weight"])
    return b.op(ops.add, y, p["bias"]) if bias else y


def _conv_input(b: GraphWriter, x: Tensor) -> TensorType:
    """The [B, C, H, W] input of a convolution layer, or a located error (with a reshape hint for [B, H·W])."""
    t = _float_input(b, x)
    if t.rank != 4:
        hint = None
        if t.rank == 2 and isinstance(t.shape[1], int):
            side = math.isqrt(t.shape[1])
            hint = (f"reshape it first, e.g. reshape(x, [{t.shape[0]}, 1, {side}, {side}])"
                    if side * side == t.shape[1] else "reshape it to [B, channels, height, width] first")
        raise b.error(f"input has shape {format_shape(t.shape)}, expected a 4-D [B, channels, height, width] tensor",
                      0, hint)
    return t


def _conv_arguments(b: GraphWriter, channels, filters: int, kernel, stride: int, pad: int, groups: int,
                    dilation: int, at: dict) -> tuple[int, int]:
    """Check a convolution layer's numbers (`at`: argument positions by name); (kh, kw)."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if filters < 1:
        raise b.error(f"filters must be at least 1, got {filters}", 1)
    if kh < 1 or kw < 1:
        raise b.error(f"kernel must be at least 1x1, got {kh}x{kw}", 2)
    for what, value, least in (("stride", stride, 1), ("pad", pad, 0), ("groups", groups, 1),
                               ("dilation", dilation, 1)):
        if value < least:
            raise b.error(f"{what} must be {'at least 1' if least else '0 or more'}, got {value}", at[what])
    if isinstance(channels, int) and (channels % groups or filters % groups):
        common = [str(d) for d in range(1, min(channels, filters) + 1) if channels % d == 0 and filters % d == 0]
        raise b.error(f"groups must divide the {channels} input channels and the {filters} filters, got {groups}",
                      at["groups"], hint=f"groups that divide both: {', '.join(common)}")
    return kh, kw


def _conv_bias(b: GraphWriter, y: Tensor, p: dict, filters: int) -> Tensor:
    return b.op(ops.add, y, b.op(ops.reshape, p["bias"], shape=(filters, 1, 1))) if "bias" in p else y


@function
def conv2d(b: GraphWriter, x: Tensor, filters: int, kernel: Size, stride: int = 1, pad: int = 0, groups: int = 1,
           dilation: int = 1, bias: bool = True, init: Init = None, name: str = None):
    """Cross-correlation of NCHW input with [filters, channels / groups, kh, kw] weights."""
    t = _conv_input(b, x)
    kh, kw = _conv_arguments(b, t.shape[1], filters, kernel, stride, pad, groups, dilation,
                             {"stride": 3, "pad": 4, "groups": 5, "dilation": 6})
    channels = t.shape[1] // groups if isinstance(t.shape[1], int) else t.shape[1]
    specs = [("weight", TensorType((filters, channels, kh, kw), t.dtype), init or Init("xavier"), True)]
    if bias:
        specs.append(("bias", TensorType((filters,), t.dtype), Init("zeros"), True))
    p = b.params_for(name, specs)
    y = b.op(ops.conv2d, x, p["weight"], stride=stride, pad=pad, groups=groups, dilation=dilation)
    return _conv_bias(b, y, p, filters)


@function
def conv_transpose2d(b: GraphWriter, x: Tensor, filters: int, kernel: Size, stride: int = 1, pad: int = 0,
                     output_pad: int = 0, groups: int = 1, dilation: int = 1, bias: bool = True, init: Init = None,
                     name: str = None):
    """The transpose of conv2d (PyTorch's ConvTranspose2d), weight [channels, filters / groups, kh, kw]: what
    conv2d's input gradient computes, so a conv2d of the same numbers maps the result back to x's size."""
    t = _conv_input(b, x)
    if not all(isinstance(d, int) for d in t.shape[2:]):
        raise b.error(f"input has shape {format_shape(t.shape)}, expected numbers for its height and width, not "
                      f"symbols", 0)
    kh, kw = _conv_arguments(b, t.shape[1], filters, kernel, stride, pad, groups, dilation,
                             {"stride": 3, "pad": 4, "groups": 6, "dilation": 7})
    if not 0 <= output_pad < stride:
        raise b.error(f"output_pad must be 0 or more and less than stride ({stride}), got {output_pad}", 5,
                      hint="output_pad adds the rows and columns a stride above 1 leaves out of the output size"
                      if stride > 1 else "with stride 1 every output size is reached without it")
    ho, wo = ((size - 1) * stride - 2 * pad + dilation * (k - 1) + output_pad + 1
              for size, k in ((t.shape[2], kh), (t.shape[3], kw)))
    if ho < 1 or wo < 1:
        raise b.error(f"pad={pad} leaves an output of {ho}x{wo} from the {t.shape[2]}x{t.shape[3]} input, expected "
                      f"at least 1x1", 4, hint="use less padding or a larger kernel")
    specs = [("weight", TensorType((t.shape[1], filters // groups, kh, kw), t.dtype), init or Init("xavier"), True)]
    if bias:
        specs.append(("bias", TensorType((filters,), t.dtype), Init("zeros"), True))
    p = b.params_for(name, specs)
    y = b.op(ops.conv2d_grad_input, x, p["weight"], stride=stride, pad=pad, in_shape=(t.shape[0], filters, ho, wo),
             groups=groups, dilation=dilation)
    return _conv_bias(b, y, p, filters)


@function
def upsample(b: GraphWriter, x: Tensor, factor: int, mode: str = "nearest"):
    """[B, C, H, W] -> [B, C, H·factor, W·factor], nearest or bilinear (PyTorch's align_corners=False)."""
    t = _float_input(b, x)
    if t.rank != 4:
        raise b.error(f"input has shape {format_shape(t.shape)}, expected a 4-D [B, channels, height, width] tensor",
                      0)
    if factor < 1:
        raise b.error(f"factor must be at least 1, got {factor}", 1)
    if mode not in UPSAMPLE_MODES:
        raise b.error(f'mode must be "nearest" or "bilinear", got "{mode}"', 2)
    return b.prim(ops.upsample, x, factor=factor, mode=mode)


def _window(b: GraphWriter, size: int, stride: int | None, pad: int) -> dict:
    """A pooling call's window attributes, checked: stride defaults to size, pad is at most half the window."""
    if size < 1:
        raise b.error(f"size must be at least 1, got {size}", 1)
    if stride is not None and stride < 1:
        raise b.error(f"stride must be at least 1, got {stride}", 2)
    if not 0 <= pad <= size // 2:
        raise b.error(f"pad must be between 0 and {size // 2} (half the window), got {pad}", 3,
                      hint="as in PyTorch: with more, a window could hold padding only" if pad > 0 else None)
    return {"size": size, "stride": stride if stride is not None else size, "pad": pad}


@function
def maxpool(b: GraphWriter, x: Tensor, size: int, stride: int = None, pad: int = 0, ceil_mode: bool = False):
    """The largest value of each size x size window (PyTorch's MaxPool2d): padding counts as −inf."""
    return b.prim(ops.maxpool, x, **_window(b, size, stride, pad), ceil_mode=ceil_mode)


@function
def avgpool(b: GraphWriter, x: Tensor, size: int, stride: int = None, pad: int = 0, ceil_mode: bool = False,
            count_include_pad: bool = True):
    """The mean of each size x size window (PyTorch's AvgPool2d): padding counts as zeros."""
    return b.prim(ops.avgpool, x, **_window(b, size, stride, pad), ceil_mode=ceil_mode,
                  count_include_pad=count_include_pad)


@function
def global_avgpool(b: GraphWriter, x: Tensor):
    """[B, C, H, W] -> [B, C]: the mean of each channel."""
    t = _float_input(b, x)
    if t.rank != 4:
        raise b.error(f"input has shape {format_shape(t.shape)}, expected a 4-D [B, C, H, W] tensor", 0)
    return b.op(ops.mean, x, axis=(2, 3), keepdims=False)


def _channel_axes(b: GraphWriter, t: TensorType):
    """Statistics axes and parameter view for batchnorm on [B, F] or [B, C, H, W]."""
    if t.rank == 2:
        return (0,), t.shape[1], None
    if t.rank == 4:
        return (0, 2, 3), t.shape[1], (t.shape[1], 1, 1)
    raise b.error(f"input has shape {format_shape(t.shape)}, expected [B, features] or [B, C, H, W]", 0)


def _sync_batchnorm(b: GraphWriter) -> bool:
    """The train setting sync_batchnorm of the file being built (False for graphs written from elsewhere)."""
    from .settings import read_train_block

    program = getattr(b, "program", None)
    return program is not None and read_train_block(program.trains)["sync_batchnorm"]


@function
def batchnorm(b: GraphWriter, x: Tensor, momentum: float = 0.1, eps: float = 1e-5, name: str = None):
    """Normalize with batch statistics in training, running statistics in evaluation."""
    t = _float_input(b, x)
    axes, channels, view = _channel_axes(b, t)
    if not 0 <= momentum <= 1:
        raise b.error(f"momentum must be between 0 and 1, got {momentum}")
    vec = TensorType((channels,), t.dtype)
    p = b.params_for(name, [("gamma", vec, Init("ones"), True), ("beta", vec, Init("zeros"), True),
                            ("running_mean", vec, Init("zeros"), False), ("running_var", vec, Init("ones"), False)])

    def shaped(v):
        return b.op(ops.reshape, v, shape=view) if view else v

    if b.training:
        n = b.op(ops.count, dims=tuple(t.shape[a] for a in axes), type=TensorType((), t.dtype))
        if _sync_batchnorm(b):   # the statistics of the whole batch: sums and counts summed over the ranks
            n = b.op(ops.cross_rank_sum, n)
            mu = b.op(ops.div, b.op(ops.cross_rank_sum, b.op(ops.sum, x, axis=axes, keepdims=True)), n)
            centered = b.op(ops.sub, x, mu)
            var = b.op(ops.div, b.op(ops.cross_rank_sum, b.op(ops.sum, b.op(ops.square, centered), axis=axes,
                                                               keepdims=True)), n)
        else:
            mu = b.op(ops.mean, x, axis=axes, keepdims=True)
            centered = b.op(ops.sub, x, mu)
            var = b.op(ops.mean, b.op(ops.square, centered), axis=axes, keepdims=True)
        # running_var takes the unbiased variance var·n/(n − 1) of the n values per channel, as PyTorch.
        # A batch with one value per channel has none (PyTorch refuses it): running_var then stays as it was.
        # The scalar factors go into the rates so that the update stays one pointwise loop.
        one = b.const(1, like=x)
        var_rate = b.op(ops.mul, b.const(momentum, like=x), b.op(ops.greater, n, one))
        unbiased_rate = b.op(ops.mul, var_rate, b.op(ops.div, n, b.op(ops.maximum, b.op(ops.sub, n, one), one)))
        for stat, batch, rate, keep in (
                ("running_mean", mu, b.const(momentum, like=x), b.const(1 - momentum, like=x)),
                ("running_var", var, unbiased_rate, b.op(ops.sub, one, var_rate))):
            batch = b.op(ops.reshape, batch, shape=(channels,))
            state = b.g.nodes[p[stat].node]["attrs"]["name"]
            # a batchnorm applied again (shared by name=) updates the statistics its first use updated, as
            # calling one PyTorch module twice does
            old = Tensor(b.g.updates[state]) if state in b.g.updates else p[stat]
            new = b.op(ops.add, b.op(ops.mul, keep, old), b.op(ops.mul, rate, batch))
            b.g.updates[state] = new.node
    else:
        centered = b.op(ops.sub, x, shaped(p["running_mean"]))
        var = shaped(p["running_var"])
    xhat = b.op(ops.div, centered, b.op(ops.sqrt, b.op(ops.add, var, b.const(eps, like=x))))
    return b.op(ops.add, b.op(ops.mul, xhat, shaped(p["gamma"])), shaped(p["beta"]))


@function
def layernorm(b: GraphWriter, x: Tensor, eps: float = 1e-5, name: str = None):
    """Normalize each example over its last axis, then scale and shift."""
    t = _float_input(b, x)
    if t.rank < 1 or not isinstance(t.shape[-1], int):
        raise b.error(f"input has shape {format_shape(t.shape)}, expected a numeric last dim", 0)
    vec = TensorType((t.shape[-1],), t.dtype)
    p = b.params_for(name, [("gamma", vec, Init("ones"), True), ("beta", vec, Init("zeros"), True)])
    return b.op(ops.add, b.op(ops.mul, _standardize(b, x, -1, eps), p["gamma"]), p["beta"])


def _standardize(b: GraphWriter, x: Tensor, axes, eps: float) -> Tensor:
    """(x − mean) / √(var + eps) over `axes`, with the biased variance (as PyTorch's norms)."""
    centered = b.op(ops.sub, x, b.op(ops.mean, x, axis=axes, keepdims=True))
    var = b.op(ops.mean, b.op(ops.square, centered), axis=axes, keepdims=True)
    return b.op(ops.div, centered, b.op(ops.sqrt, b.op(ops.add, var, b.const(eps, like=x))))


def _channels_first(b: GraphWriter, t: TensorType, min_rank: int, expected: str) -> int:
    """The channels of [B, C, ...], whose dims after the batch must be numbers."""
    if t.rank < min_rank or not all(isinstance(d, int) for d in t.shape[1:]):
        raise b.error(f"input has shape {format_shape(t.shape)}, expected {expected} with numbers after the batch "
                      f"dim", 0)
    return t.shape[1]


def _per_channel(b: GraphWriter, y: Tensor, name: str | None, t: TensorType) -> Tensor:
    """y · gamma + beta with gamma and beta [C] (ones and zeros at first), broadcast over [B, C, ...]."""
    vec = TensorType((t.shape[1],), t.dtype)
    p = b.params_for(name, [("gamma", vec, Init("ones"), True), ("beta", vec, Init("zeros"), True)])
    view = (t.shape[1],) + (1,) * (t.rank - 2)
    return b.op(ops.add, b.op(ops.mul, y, b.op(ops.reshape, p["gamma"], shape=view)),
                b.op(ops.reshape, p["beta"], shape=view))


@function
def instancenorm(b: GraphWriter, x: Tensor, eps: float = 1e-5, affine: bool = False, name: str = None):
    """PyTorch's InstanceNorm2d (1d on [B, C, L]): each example's channels normalized over their positions, with
    the example's statistics in training and evaluation alike; affine=true scales and shifts each channel."""
    t = _float_input(b, x)
    _channels_first(b, t, 3, "[B, C, H, W] or [B, C, L]")
    if name is not None and not affine:
        raise b.error(f'name= names parameters: got name="{name}" with affine=false, which has none, expected '
                      f'affine=true', 3, hint="affine=true gives each channel a gamma and a beta")
    y = _standardize(b, x, tuple(range(2, t.rank)), eps)
    return _per_channel(b, y, name, t) if affine else y


@function
def groupnorm(b: GraphWriter, x: Tensor, groups: int, eps: float = 1e-5, name: str = None):
    """PyTorch's GroupNorm: the channels of [B, C, ...] in `groups` groups, each example's group normalized over
    its channels and positions, then gamma and beta per channel."""
    t = _float_input(b, x)
    channels = _channels_first(b, t, 2, "[B, C, ...]")
    if groups < 1 or channels % groups:
        divisors = [d for d in range(1, channels + 1) if channels % d == 0]
        raise b.error(f"groups must divide the {channels} channels of {format_shape(t.shape)}: got {groups}, expected "
                      f"one of {', '.join(map(str, divisors[:12]))}{', ...' if len(divisors) > 12 else ''}", 1)
    grouped = b.op(ops.reshape, x, shape=(t.shape[0], groups, math.prod(t.shape[1:]) // groups))
    y = b.op(ops.reshape, _standardize(b, grouped, 2, eps), shape=t.shape)
    return _per_channel(b, y, name, t)


@function
def lrn(b: GraphWriter, x: Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """PyTorch's LocalResponseNorm (AlexNet's): x / (k + alpha/size · Σ x²)^beta, the sum over `size` channels
    around each (size // 2 before it, (size − 1) // 2 after), zeros beyond the first and last channel."""
    t = _float_input(b, x)
    channels = _channels_first(b, t, 3, "[B, C, H, W] or [B, C, L]")
    if size < 1:
        raise b.error(f"size must be at least 1, got {size}", 1)
    squares = b.op(ops.square, x)

    def zeros(count: int) -> list:
        return [b.op(ops.broadcast_to, b.const(0, like=x), shape=t.shape[:1] + (count,) + t.shape[2:])] if count else []

    pieces = zeros(size // 2) + [squares] + zeros((size - 1) // 2)
    padded = b.op(ops.concat, *pieces, axis=1) if len(pieces) > 1 else squares
    total = None
    for i in range(size):
        window = b.op(ops.slice, padded, axis=1, start=i, stop=i + channels) if size > 1 else squares
        total = window if total is None else b.op(ops.add, total, window)
    scale = b.op(ops.add, b.op(ops.mul, total, b.const(alpha / size, like=x)), b.const(k, like=x))
    return b.op(ops.div, x, b.op(ops.pow, scale, b.const(beta, like=x)))


@function
def dropout(b: GraphWriter, x: Tensor, p: float = 0.5):
    """Inverted dropout: zero with probability p while training, identity in evaluation."""
    _float_input(b, x)
    if not 0 <= p < 1:
        raise b.error(f"rate p must be in [0, 1), got {p}", 1)
    if not b.training or p == 0:
        if p > 0:
            b.note_layer("dropout (training only)")
        return x
    return b.op(ops.mul, x, b.op(ops.dropout_mask, x, p=p, salt=b.g.next_id))


@function
def randn(b: GraphWriter, shape: Dims, mean: float = 0.0, std: float = 1.0):
    """Fresh N(mean, std²) noise of `shape` (symbolic dims allowed: [B, 8]) at every step and every call:
    a GAN generator's latent vectors."""
    if std < 0:
        raise b.error(f"std must be at least 0, got {std}", 2)
    dims = tuple(str(d) if isinstance(d, str) else d for d in shape)
    if any(isinstance(d, int) and d < 1 for d in dims):
        raise b.error(f"every dim of shape must be at least 1, got {format_shape(dims)}", 0)
    return b.op(ops.random_normal, shape=dims, mean=float(mean), std=float(std), salt=b.g.next_id)


# ---- sequences: embeddings and attention ---------------------------------------------------


@function
def embedding(b: GraphWriter, ids: Tensor, vocab: int, dim: int, init: Init = None, name: str = None):
    """int ids of any shape -> their rows of weight [vocab, dim] (PyTorch's nn.Embedding): [B, T] -> [B, T, dim]."""
    t = b.type(ids)
    if t.is_float:
        raise b.error(f"ids are a float tensor {t}, expected int ids such as int[B, T]", 0,
                      hint="declare the input holding them as int, e.g. `input ids: int[B, T]`")
    if vocab < 1:
        raise b.error(f"vocab must be at least 1, got {vocab}", 1)
    if dim < 1:
        raise b.error(f"dim must be at least 1, got {dim}", 2)
    p = b.params_for(name, [("weight", TensorType((vocab, dim)), init or Init("normal", (0.0, 1.0)), True)])
    return b.op(ops.take, p["weight"], ids)


def _causal_mask(b: GraphWriter, steps: int, dtype: str = "float32") -> Tensor:
    mask = np.triu(np.full((steps, steps), -np.inf, dtype=dtype), k=1)
    return b.op(ops.const, value=mask, type=TensorType((steps, steps), dtype), layer="causal_mask")


@function
def causal_mask(b: GraphWriter, size: int):
    """[size, size]: 0 on and below the diagonal, −inf above; added to attention scores, position t sees
    positions up to t only."""
    if size < 1:
        raise b.error(f"size must be at least 1, got {size}", 0)
    return _causal_mask(b, size)


@function
def attention(b: GraphWriter, x: Tensor, heads: int, dim: int, causal: bool = False, name: str = None):
    """Multi-head scaled dot-product self-attention over [B, T, D] with PyTorch's nn.MultiheadAttention math:
    q, k, v = x @ weight + bias per projection, split into heads of dim / heads; softmax(q·kᵀ / √(dim / heads)
    [+ causal mask]) · v; heads joined, then @ out.weight + out.bias -> [B, T, D]."""
    t = _float_input(b, x)
    if t.rank != 3:
        raise b.error(f"input has shape {format_shape(t.shape)}, expected a 3-D [B, T, features] tensor", 0)
    batch, steps, features = t.shape
    if not isinstance(features, int):
        raise b.error(f"input features are the symbol {features}, expected a number", 0)
    if heads < 1:
        raise b.error(f"heads must be at least 1, got {heads}", 1)
    if dim < 1 or dim % heads:
        raise b.error(f"dim {dim} does not split into {heads} heads: got {dim}, expected a positive multiple of "
                      f"{heads}", 2, hint=f"each head gets dim / heads values, e.g. dim={heads * max(1, dim // heads)}")
    if causal and not isinstance(steps, int):
        raise b.error(f"a causal mask needs a number of steps: got the symbolic dim {steps} in "
                      f"{format_shape(t.shape)}", 0)
    specs = []
    projections = {"q": (features, dim), "k": (features, dim), "v": (features, dim), "out": (dim, features)}
    for part, shape in projections.items():
        specs += [(f"{part}.weight", TensorType(shape, t.dtype), Init("xavier"), True),
                  (f"{part}.bias", TensorType(shape[1:], t.dtype), Init("zeros"), True)]
    p = b.params_for(name, specs)
    size = dim // heads

    def split_heads(part: str) -> Tensor:   # [B, T, dim] -> [B, heads, T, size]
        y = b.op(ops.add, b.op(ops.matmul, x, p[f"{part}.weight"]), p[f"{part}.bias"])
        if heads == 1:
            return b.op(ops.reshape, y, shape=(batch, 1, steps, size))
        y = b.op(ops.reshape, y, shape=(batch, steps, heads, size))
        return b.op(ops.transpose, y, perm=(0, 2, 1, 3))

    q, k, v = split_heads("q"), split_heads("k"), split_heads("v")
    scores = b.op(ops.div, b.op(ops.matmul, q, k, tb=True), b.const(math.sqrt(size), like=x))
    if causal:
        scores = b.op(ops.add, scores, _causal_mask(b, steps, t.dtype))
    context = b.op(ops.matmul, b.op(ops.softmax, scores, axis=-1), v)        # [B, heads, T, size]
    if heads > 1:
        context = b.op(ops.transpose, context, perm=(0, 2, 1, 3))
    joined = b.op(ops.reshape, context, shape=(batch, steps, dim))
    return b.op(ops.add, b.op(ops.matmul, joined, p["out.weight"]), p["out.bias"])


# ---- losses and regularizers ----------------------------------------------------------


def _pair(b: GraphWriter, pred: Tensor, target, what: str = "target"):
    target = b.as_tensor(target, like=pred)
    tp, tt = _float_input(b, pred, 0, "prediction"), b.type(target)
    if not tt.is_float:
        raise b.error(f"{what} is an int tensor {tt}, expected a float tensor like the prediction {tp}", 1)
    if tt.shape != tp.shape and tt.shape != ():
        raise b.error(f"{what} has shape {format_shape(tt.shape)}, expected {format_shape(tp.shape)} "
                      f"like the prediction", 1, hint="reshape one of them so the shapes agree")
    return target


@function
def mse(b: GraphWriter, pred: Tensor, target: TensorLike):
    """Mean squared error."""
    target = _pair(b, pred, target)
    return b.op(ops.mean, b.op(ops.square, b.op(ops.sub, pred, target)))


@function
def mae(b: GraphWriter, pred: Tensor, target: TensorLike):
    """Mean absolute error."""
    target = _pair(b, pred, target)
    return b.op(ops.mean, b.op(ops.abs, b.op(ops.sub, pred, target)))


@function
def cross_entropy(b: GraphWriter, logits: Tensor, labels: Tensor):
    """Softmax cross-entropy from logits (the classes on the last axis), averaged over every position; int
    labels or one-hot targets."""
    return b.op(ops.mean, b.prim(ops.xent, logits, labels))


@function
def binary_cross_entropy(b: GraphWriter, logits: Tensor, target: TensorLike):
    """Sigmoid cross-entropy from logits: mean of max(x, 0) − x·t + log(1 + e^−|x|)."""
    target = _pair(b, logits, target)
    return b.op(ops.mean, b.op(ops.bce_logits, logits, target))


@function
def hinge(b: GraphWriter, scores: Tensor, labels: Tensor, margin: float = 1.0):
    """Multiclass SVM loss: Σ_{j≠y} max(0, s_j − s_y + margin), averaged over the batch."""
    t = _float_input(b, scores, 0, "scores")
    lt = b.type(labels)
    if t.rank != 2 or not isinstance(t.shape[1], int):
        raise b.error(f"scores have shape {format_shape(t.shape)}, expected [batch, classes] with a number of "
                      f"classes", 0)
    if lt.is_float or lt.shape != t.shape[:1]:
        raise b.error(f"labels are {lt}, expected int{format_shape(t.shape[:1])}", 1)
    onehot = b.op(ops.one_hot, labels, depth=t.shape[1], dtype=t.dtype)
    correct = b.op(ops.sum, b.op(ops.mul, scores, onehot), axis=1, keepdims=True)
    margins = b.op(ops.relu, b.op(ops.add, b.op(ops.sub, scores, correct), b.const(margin, like=scores)))
    wrong = b.op(ops.mul, margins, b.op(ops.sub, b.const(1.0, like=scores), onehot))
    return b.op(ops.mean, b.op(ops.sum, wrong, axis=1))


def _penalty(kind):
    def fn(b: GraphWriter, *params: Tensor):
        if not params:
            raise b.error("needs at least one parameter, e.g. " + kind + "(h1.weight)")
        total = None
        for i, p in enumerate(params):
            _float_input(b, p, i)
            term = b.op(ops.sum, b.op(ops.abs if kind == "l1" else ops.square, p))
            total = term if total is None else b.op(ops.add, total, term)
        return total
    fn.__name__ = kind
    fn.__doc__ = "Σ|w|" if kind == "l1" else "Σ w²"
    return fn


FUNCTIONS["l1"] = _penalty("l1")
FUNCTIONS["l2"] = _penalty("l2")

# ---- initializers ------------------------------------------------------------------------


@function
def normal(b: GraphWriter, mean: float = 0.0, std: float = 1.0):
    if std < 0:
        raise b.error(f"std must be 0 or more, got {std}", 1)
    return Init("normal", (mean, std))


@function
def uniform(b: GraphWriter, lo: float = -1.0, hi: float = 1.0):
    if hi < lo:
        raise b.error(f"hi must be at least lo, got lo={lo}, hi={hi}", 1)
    return Init("uniform", (lo, hi))


@function
def constant(b: GraphWriter, value: float):
    return Init("constant", (value,))


FUNCTIONS.update(RECURRENT)  # rnn, lstm, gru: nnc/front/recurrent.py
