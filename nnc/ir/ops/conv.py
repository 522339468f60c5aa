"""Convolution, pooling and upsampling over NCHW tensors, with their backward forms.

conv2d weight layout is [filters, in_channels / groups, kh, kw] (Caffe, PyTorch). The
backward primitives (`conv2d_grad_input`, `conv2d_grad_weight`, `maxpool_grad`,
`avgpool_grad`, `upsample_grad`) are ordinary ops so the backward pass stays a graph;
`conv2d_grad_input` is also the forward of a transposed convolution.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import ShapeError
from ..types import TensorType, format_shape, require_float, result_dtype
from .registry import CONTRACTION, POOL, VJP, defop, defvjp, nograd


def out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def check_nchw(op: str, t: TensorType, operand: int = 0, what: str = "input") -> None:
    require_float(op, t, operand, what)
    if t.rank != 4:
        hint = "reshape it to [B, channels, height, width]" if t.rank == 2 else None
        raise ShapeError(f"{op}: {what} has shape {format_shape(t.shape)}, expected a 4-D [N, C, H, W] tensor",
                         operand=operand, hint=hint)
    if not all(isinstance(d, int) for d in t.shape[2:]):
        raise ShapeError(f"{op}: spatial dims of {format_shape(t.shape)} must be numbers, not symbols",
                         operand=operand)


def spatial_out(op: str, in_shape, kh: int, kw: int, stride: int, pad: int):
    if stride < 1 or pad < 0 or kh < 1 or kw < 1:
        raise ShapeError(f"{op}: got stride={stride}, pad={pad}, kernel {kh}x{kw}, expected stride >= 1, "
                         f"pad >= 0 and a kernel of at least 1x1")
    h, w = in_shape[2], in_shape[3]
    ho, wo = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    if ho < 1 or wo < 1:
        raise ShapeError(f"{op}: a {kh}x{kw} window (stride {stride}, pad {pad}) does not fit the "
                         f"{h}x{w} input {format_shape(in_shape)}", operand=0,
                         hint="use a smaller kernel or more padding" if op.startswith("conv")
                         else "use a smaller window")
    return ho, wo


# ---- conv2d ------------------------------------------------------------------------
#
# `groups` splits the channels and the filters into that many independent convolutions (weight
# [F, C/groups, kh, kw], as PyTorch: depthwise when groups = C = F); `dilation` spreads a kernel's
# taps that many pixels apart. Both are left out of a node's attributes when 1.


def extent(kernel: int, dilation: int) -> int:
    """The span of `kernel` taps `dilation` apart."""
    return dilation * (kernel - 1) + 1


def _check_grouping(op: str, groups: int, dilation: int) -> None:
    if groups < 1 or dilation < 1:
        raise ShapeError(f"{op}: got groups={groups}, dilation={dilation}, expected both at least 1")


def _check_filters(op: str, w: TensorType, groups: int) -> None:
    if w.shape[0] % groups:
        raise ShapeError(f"{op}: the weight {format_shape(w.shape)} has {w.shape[0]} filters, expected a multiple "
                         f"of groups={groups}", operand=1)


def _in_channels(w: TensorType, groups: int) -> str:
    return f"{w.shape[1] * groups}" + (f" (groups={groups} of {w.shape[1]})" if groups > 1 else "")


def _conv2d(ts, *, stride=1, pad=0, groups=1, dilation=1):
    x, w = ts
    check_nchw("conv2d", x)
    check_nchw("conv2d", w, 1, "weight")
    _check_grouping("conv2d", groups, dilation)
    if x.shape[1] != w.shape[1] * groups:
        raise ShapeError(f"conv2d: input has {x.shape[1]} channels {format_shape(x.shape)}, "
                         f"expected {_in_channels(w, groups)} to match the weight {format_shape(w.shape)}", operand=0)
    _check_filters("conv2d", w, groups)
    ho, wo = spatial_out("conv2d", x.shape, extent(w.shape[2], dilation), extent(w.shape[3], dilation), stride, pad)
    return TensorType((x.shape[0], w.shape[0], ho, wo), result_dtype(ts, "conv2d"))


def _windows(x, kh, kw, stride, pad):
    """[N, C, Ho, Wo, kh, kw] view of the (padded) input."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]


def _fields(x, kh, kw, stride, pad, dilation):
    """[N, C, Ho, Wo, kh, kw] view of a convolution's receptive fields, their taps `dilation` apart."""
    win = _windows(x, extent(kh, dilation), extent(kw, dilation), stride, pad)
    return win[..., ::dilation, ::dilation]


def _per_group(fn, groups: int, *operands, axis: int = 1):
    """fn applied to each group's part of the operands (pairs (array, axis) cut into `groups` parts
    along that axis), the results joined along `axis`. (One einsum per group: NumPy contracts those
    with BLAS, unlike one einsum with the group as a batch axis.)"""
    pieces = [np.split(a, groups, axis=ax) for a, ax in operands]
    parts = [fn(*(p[k] for p in pieces)) for k in range(groups)]
    return parts[0] if groups == 1 else np.concatenate(parts, axis=axis)


def _conv2d_ref(x, w, *, stride=1, pad=0, groups=1, dilation=1):
    win = _fields(x, w.shape[2], w.shape[3], stride, pad, dilation)
    return _per_group(lambda xg, wg: np.einsum("nchwij,fcij->nfhw", xg, wg, optimize=True), groups,
                      (win, 1), (w, 0)).astype(x.dtype, copy=False)


def _conv2d_grad_input(ts, *, stride, pad, in_shape, groups=1, dilation=1):
    """Also the forward of a transposed convolution: the input shape is checked against dy and the weight."""
    dy, w = ts
    check_nchw("conv2d_grad_input", dy)
    check_nchw("conv2d_grad_input", w, 1, "weight")
    _check_grouping("conv2d_grad_input", groups, dilation)
    if dy.shape[1] != w.shape[0]:
        raise ShapeError(f"conv2d_grad_input: dy has {dy.shape[1]} channels {format_shape(dy.shape)}, expected "
                         f"{w.shape[0]} to match the weight {format_shape(w.shape)}", operand=0)
    _check_filters("conv2d_grad_input", w, groups)
    shape = (dy.shape[0],) + tuple(in_shape[1:])
    if len(shape) != 4 or shape[1] != w.shape[1] * groups:
        raise ShapeError(f"conv2d_grad_input: the input shape {format_shape(shape)} does not match the weight "
                         f"{format_shape(w.shape)}: expected {_in_channels(w, groups)} channels")
    covered = spatial_out("conv2d_grad_input", shape, extent(w.shape[2], dilation), extent(w.shape[3], dilation),
                          stride, pad)
    if covered != tuple(dy.shape[2:]):
        raise ShapeError(f"conv2d_grad_input: a convolution of {format_shape(shape)} gives {covered[0]}x{covered[1]}, "
                         f"expected dy's {dy.shape[2]}x{dy.shape[3]}", operand=0)
    return TensorType(shape, result_dtype(ts, "conv2d_grad_input"))


def _conv2d_grad_input_ref(dy, w, *, stride, pad, in_shape, groups=1, dilation=1):
    n = dy.shape[0]
    _, c, h, wd = in_shape
    kh, kw = w.shape[2], w.shape[3]
    ho, wo = dy.shape[2], dy.shape[3]
    cols = _per_group(lambda dyg, wg: np.einsum("nfhw,fcij->ncijhw", dyg, wg, optimize=True), groups,
                      (dy, 1), (w, 0))
    dx = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dilation, j * dilation
            dx[:, :, top:top + stride * ho:stride, left:left + stride * wo:stride] += cols[:, :, i, j]
    return dx[:, :, pad:pad + h, pad:pad + wd]


def _conv2d_grad_weight(ts, *, stride, pad, kshape, groups=1, dilation=1):
    return TensorType(tuple(kshape), result_dtype(ts, "conv2d_grad_weight"))


def _conv2d_grad_weight_ref(x, dy, *, stride, pad, kshape, groups=1, dilation=1):
    win = _fields(x, kshape[2], kshape[3], stride, pad, dilation)
    return _per_group(lambda dyg, xg: np.einsum("nfhw,nchwij->fcij", dyg, xg, optimize=True), groups,
                      (dy, 1), (win, 1), axis=0).astype(x.dtype, copy=False)


def _conv_canon(in_types, attrs):
    return {k: v for k, v in attrs.items() if not (k in ("groups", "dilation") and v == 1)}


conv2d = defop("conv2d", arity=2, groups={CONTRACTION}, shape=_conv2d, ref=_conv2d_ref, canon=_conv_canon,
      doc="2-D cross-correlation, NCHW input, [F, C/groups, kh, kw] weight",
      attrs=("stride", "pad", "groups", "dilation"))
conv2d_grad_input = defop("conv2d_grad_input", arity=2, groups={CONTRACTION}, shape=_conv2d_grad_input,
      ref=_conv2d_grad_input_ref, canon=_conv_canon,
      doc="dx of conv2d from dy and the weight (a transposed convolution)",
      attrs=("stride", "pad", "in_shape", "groups", "dilation"))
conv2d_grad_weight = defop("conv2d_grad_weight", arity=2, groups={CONTRACTION}, shape=_conv2d_grad_weight,
      ref=_conv2d_grad_weight_ref, canon=_conv_canon,
      doc="dW of conv2d from the input and dy", attrs=("stride", "pad", "kshape", "groups", "dilation"))

# ---- pooling -------------------------------------------------------------------------
# As PyTorch's MaxPool2d / AvgPool2d: `pad` rows and columns around the input (−inf for the max, zeros for the
# mean), at most half the window; ceil_mode rounds the output size up, keeping every window's start inside the
# input or its left padding. The mean divides by the window's extent inside the padding (count_include_pad) or
# inside the input; what reaches past the padding never counts.

POOL_DEFAULTS = {"pad": 0, "ceil_mode": False, "count_include_pad": True}


def pool_out(size: int, window: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """The number of windows along an axis of `size` (PyTorch's pooling_output_shape)."""
    out = (size + 2 * pad - window + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:  # the last window would start in the right padding
        out -= 1
    return out


def _pool(name):
    def rule(ts, *, size, stride, pad=0, ceil_mode=False, **_):
        x = ts[0]
        check_nchw(name, x)
        if stride < 1 or pad < 0 or size < 1:
            raise ShapeError(f"{name}: got size={size}, stride={stride}, pad={pad}, expected size >= 1, stride >= 1 "
                             f"and pad >= 0")
        if pad > size // 2:
            raise ShapeError(f"{name}: got pad={pad} for a {size}x{size} window, expected at most {size // 2}, half "
                             f"the window (as PyTorch)", hint="a larger pad would make windows of padding only")
        h, w = x.shape[2], x.shape[3]
        ho, wo = (pool_out(n, size, stride, pad, ceil_mode) for n in (h, w))
        if ho < 1 or wo < 1:
            raise ShapeError(f"{name}: a {size}x{size} window (stride {stride}, pad {pad}) does not fit the "
                             f"{h}x{w} input {format_shape(x.shape)}", operand=0, hint="use a smaller window")
        return TensorType(x.shape[:2] + (ho, wo), x.dtype)
    return rule


def _pool_canon(ts, attrs):
    """The defaults left out (a graph without padding reads as before), ceil_mode and count_include_pad bools."""
    for key in ("ceil_mode", "count_include_pad"):
        if key in attrs:
            attrs[key] = bool(attrs[key])
    return {k: v for k, v in attrs.items() if k not in POOL_DEFAULTS or v != POOL_DEFAULTS[k]}


def _overhang(n: int, size: int, stride: int, pad: int, out: int) -> int:
    """How far ceil_mode's last window reaches past the padding at the end of an axis of n."""
    return max(0, (out - 1) * stride + size - n - 2 * pad)


def _pool_windows(x, size, stride, pad, out_hw, fill):
    """[N, C, Ho, Wo, size, size] windows of x padded with `fill` (and past the padding where ceil_mode reaches)."""
    (h, w), (ho, wo) = x.shape[2:], out_hw
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad + _overhang(h, size, stride, pad, ho)),
                   (pad, pad + _overhang(w, size, stride, pad, wo))), constant_values=fill)
    return sliding_window_view(x, (size, size), axis=(2, 3))[:, :, ::stride, ::stride][:, :, :ho, :wo]


def _inside(n, size, stride, pad, out):
    """[out, size]: is tap i of window o inside an axis of n?"""
    pos = np.arange(out)[:, None] * stride - pad + np.arange(size)[None, :]
    return (pos >= 0) & (pos < n)


def _divisors(hw, size, stride, pad, out_hw, count_include_pad, dtype):
    """[Ho, Wo]: what each window's sum is divided by (PyTorch's avg_pool2d divisor)."""
    counts = []
    for n, out in zip(hw, out_hw):
        start = np.arange(out) * stride - pad
        end = np.minimum(start + size, n + pad)
        counts.append(end - start if count_include_pad else np.minimum(end, n) - np.maximum(start, 0))
    return (counts[0][:, None] * counts[1][None, :]).astype(dtype)


def _maxpool_ref(x, *, size, stride, pad=0, ceil_mode=False):
    out = tuple(pool_out(n, size, stride, pad, ceil_mode) for n in x.shape[2:])
    return _pool_windows(x, size, stride, pad, out, -np.inf).max(axis=(4, 5))


def _avgpool_ref(x, *, size, stride, pad=0, ceil_mode=False, count_include_pad=True):
    out = tuple(pool_out(n, size, stride, pad, ceil_mode) for n in x.shape[2:])
    total = _pool_windows(x, size, stride, pad, out, 0).sum(axis=(4, 5))
    return (total / _divisors(x.shape[2:], size, stride, pad, out, count_include_pad, x.dtype)).astype(x.dtype)


def _maxpool_grad_ref(x, dy, *, size, stride, pad=0, ceil_mode=False):
    """Route each window's gradient to the first position inside the input holding its maximum, or to its last
    NaN when it has one (PyTorch's CPU kernel: a tap takes the window when `val > max or isnan(val)`)."""
    n, c, ho, wo = dy.shape
    h, w = x.shape[2:]
    flat = _pool_windows(x, size, stride, pad, (ho, wo), -np.inf).reshape(n, c, ho, wo, size * size)
    inside = (_inside(h, size, stride, pad, ho)[:, None, :, None]
              & _inside(w, size, stride, pad, wo)[None, :, None, :]).reshape(ho, wo, size * size)
    hits = (flat == flat.max(axis=-1, keepdims=True)) & inside
    nans = np.isnan(flat) & inside
    last_nan = size * size - 1 - nans[..., ::-1].argmax(axis=-1)
    arg = np.where(nans.any(axis=-1), last_nan,
                   np.where(hits.any(axis=-1), hits.argmax(axis=-1), inside.argmax(axis=-1)))
    di, dj = np.divmod(arg, size)
    rows = np.arange(ho)[None, None, :, None] * stride - pad + di
    cols = np.arange(wo)[None, None, None, :] * stride - pad + dj
    dx = np.zeros_like(x)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    np.add.at(dx, (nn[:, :, None, None], cc[:, :, None, None], rows, cols), dy)
    return dx


def _avgpool_grad_ref(dy, *, size, stride, in_shape, pad=0, ceil_mode=False, count_include_pad=True):
    n, c, ho, wo = dy.shape
    h, w = in_shape[2], in_shape[3]
    share = dy / _divisors((h, w), size, stride, pad, (ho, wo), count_include_pad, dy.dtype)
    dx = np.zeros((n, c, h + 2 * pad + _overhang(h, size, stride, pad, ho),
                   w + 2 * pad + _overhang(w, size, stride, pad, wo)), dtype=dy.dtype)
    for i in range(size):
        for j in range(size):
            dx[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += share
    return dx[:, :, pad:pad + h, pad:pad + w]


def _same_as_first(ts, **attrs):
    return ts[0]


def _avgpool_grad(ts, *, size, stride, in_shape, **_):
    return TensorType((ts[0].shape[0],) + tuple(in_shape[1:]), ts[0].dtype)


MAXPOOL_ATTRS = ("size", "stride", "pad", "ceil_mode")
AVGPOOL_ATTRS = MAXPOOL_ATTRS + ("count_include_pad",)
maxpool = defop("maxpool", arity=1, groups={POOL}, shape=_pool("maxpool"), ref=_maxpool_ref,
      doc="max over size x size windows (padded with −inf)", attrs=MAXPOOL_ATTRS, canon=_pool_canon)
avgpool = defop("avgpool", arity=1, groups={POOL}, shape=_pool("avgpool"), ref=_avgpool_ref,
      doc="mean over size x size windows (padded with zeros)", attrs=AVGPOOL_ATTRS, canon=_pool_canon)
maxpool_grad = defop("maxpool_grad", arity=2, groups={POOL}, shape=_same_as_first, ref=_maxpool_grad_ref,
      doc="dx of maxpool: dy routed to each window's argmax", attrs=MAXPOOL_ATTRS, canon=_pool_canon)
avgpool_grad = defop("avgpool_grad", arity=1, groups={POOL}, shape=_avgpool_grad, ref=_avgpool_grad_ref,
      doc="dx of avgpool: dy spread evenly over each window", attrs=AVGPOOL_ATTRS + ("in_shape",),
      canon=_pool_canon)



def _conv_attrs(c):
    return {"stride": c.attrs.get("stride", 1), "pad": c.attrs.get("pad", 0), "groups": c.attrs.get("groups", 1),
            "dilation": c.attrs.get("dilation", 1)}


# conv2d is linear in x and in w; its two backward forms are each other's adjoints,
# so second derivatives are convolutions again.
defvjp(conv2d,
       VJP("conv2d: dx = dy ⋆ᵀ w (transposed convolution)",
           lambda c, dy: c.conv2d_grad_input(dy, c.x(1), in_shape=c.shape(c.x(0)), **_conv_attrs(c))),
       VJP("conv2d: dw = x ⋆ dy (correlate input with dy)",
           lambda c, dy: c.conv2d_grad_weight(c.x(0), dy, kshape=c.shape(c.x(1)), **_conv_attrs(c))))
defvjp(conv2d_grad_input,
       VJP("conv2d_grad_input: d(dy) = g ⋆ w", lambda c, g: c.conv2d(g, c.x(1), **_conv_attrs(c))),
       VJP("conv2d_grad_input: dw = g ⋆ dy",
           lambda c, g: c.conv2d_grad_weight(g, c.x(0), kshape=c.shape(c.x(1)), **_conv_attrs(c))))
defvjp(conv2d_grad_weight,
       VJP("conv2d_grad_weight: dx = dy ⋆ᵀ g",
           lambda c, g: c.conv2d_grad_input(c.x(1), g, in_shape=c.shape(c.x(0)), **_conv_attrs(c))),
       VJP("conv2d_grad_weight: d(dy) = x ⋆ g", lambda c, g: c.conv2d(c.x(0), g, **_conv_attrs(c))))


def _pool_attrs(c, names=MAXPOOL_ATTRS):
    return {k: c.attrs[k] for k in names if k in c.attrs}


defvjp(maxpool, VJP("maxpool: dx = dy routed to each window's maximum",
                    lambda c, dy: c.maxpool_grad(c.x(0), dy, **_pool_attrs(c))))
defvjp(avgpool, VJP("avgpool: dx = dy spread evenly over each window",
                    lambda c, dy: c.avgpool_grad(dy, in_shape=c.shape(c.x(0)), **_pool_attrs(c, AVGPOOL_ATTRS))))
nograd(maxpool_grad, "second derivatives through max pooling are not supported")
defvjp(avgpool_grad, VJP("avgpool_grad: d(dy) = avgpool(g)",
                         lambda c, g: c.avgpool(g, **_pool_attrs(c, AVGPOOL_ATTRS))))


# ---- upsample ------------------------------------------------------------------------------

UPSAMPLE_MODES = ("nearest", "bilinear")


def bilinear_taps(size: int, factor: int):
    """(lo, hi, frac) per output position along an axis of `size` inputs upsampled `factor` times, as PyTorch's
    bilinear with align_corners=False: the source position (o + ½) / factor − ½, clamped at 0, lies
    `frac` of the way from input lo to input hi (the edge input repeated past the last one)."""
    src = np.maximum((np.arange(size * factor) + 0.5) / factor - 0.5, 0.0)
    lo = src.astype(np.int64)   # the floor: src >= 0
    return lo, np.minimum(lo + 1, size - 1), src - lo


def _bilinear_matrix(size: int, factor: int) -> np.ndarray:
    """[size·factor, size]: output position o takes weight [o, i] of input i."""
    lo, hi, frac = bilinear_taps(size, factor)
    out = np.arange(size * factor)
    a = np.zeros((size * factor, size))
    np.add.at(a, (out, lo), 1.0 - frac)
    np.add.at(a, (out, hi), frac)
    return a


def _check_upsample(op: str, factor: int, mode: str) -> None:
    if factor < 1:
        raise ShapeError(f"{op}: got factor={factor}, expected at least 1")
    if mode not in UPSAMPLE_MODES:
        raise ShapeError(f'{op}: got mode="{mode}", expected "nearest" or "bilinear"')


def _upsample(ts, *, factor, mode="nearest"):
    x = ts[0]
    check_nchw("upsample", x)
    _check_upsample("upsample", factor, mode)
    return TensorType(x.shape[:2] + (x.shape[2] * factor, x.shape[3] * factor), x.dtype)


def _upsample_ref(x, *, factor, mode="nearest"):
    if mode == "nearest":
        return x.repeat(factor, axis=2).repeat(factor, axis=3)
    for axis in (2, 3):
        lo, hi, frac = bilinear_taps(x.shape[axis], factor)
        frac = frac.reshape((-1,) + (1,) * (3 - axis))
        x = (x.take(lo, axis) * (1.0 - frac) + x.take(hi, axis) * frac).astype(x.dtype, copy=False)
    return x


def _upsample_grad(ts, *, factor, mode="nearest"):
    dy = ts[0]
    check_nchw("upsample_grad", dy)
    _check_upsample("upsample_grad", factor, mode)
    if dy.shape[2] % factor or dy.shape[3] % factor:
        raise ShapeError(f"upsample_grad: dy {format_shape(dy.shape)} is not {factor} times an input's size")
    return TensorType(dy.shape[:2] + (dy.shape[2] // factor, dy.shape[3] // factor), dy.dtype)


def _upsample_grad_ref(dy, *, factor, mode="nearest"):
    n, c, ho, wo = dy.shape
    if mode == "nearest":
        return dy.reshape(n, c, ho // factor, factor, wo // factor, factor).sum(axis=(3, 5))
    rows, cols = _bilinear_matrix(ho // factor, factor), _bilinear_matrix(wo // factor, factor)
    return (rows.T @ dy @ cols).astype(dy.dtype, copy=False)


upsample = defop("upsample", arity=1, groups=set(), shape=_upsample, ref=_upsample_ref,
                 doc="[N, C, H, W] -> [N, C, H·factor, W·factor]: nearest or bilinear", attrs=("factor", "mode"))
upsample_grad = defop("upsample_grad", arity=1, groups=set(), shape=_upsample_grad, ref=_upsample_grad_ref,
                      doc="dx of upsample: each input's share of dy summed", attrs=("factor", "mode"))


def _upsample_attrs(c):
    return {"factor": c.attrs["factor"], "mode": c.attrs.get("mode", "nearest")}


# upsample is linear; upsample_grad is its transpose, so each is the other's gradient
defvjp(upsample, VJP("upsample: dx = Σ of dy over the outputs each input reaches, by its weights",
                     lambda c, dy: c.upsample_grad(dy, **_upsample_attrs(c))))
defvjp(upsample_grad, VJP("upsample_grad: d(dy) = upsample(g)", lambda c, g: c.upsample(g, **_upsample_attrs(c))))
