"""Convolution and pooling over NCHW tensors, with their backward forms.

conv2d weight layout is [filters, in_channels, kh, kw] (Caffe, PyTorch). The
backward primitives (`conv2d_grad_input`, `conv2d_grad_weight`, `maxpool_grad`,
`avgpool_grad`) are ordinary ops so the backward pass stays a graph.
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


def _conv2d(ts, *, stride=1, pad=0):
    x, w = ts
    check_nchw("conv2d", x)
    check_nchw("conv2d", w, 1, "weight")
    if x.shape[1] != w.shape[1]:
        raise ShapeError(f"conv2d: input has {x.shape[1]} channels {format_shape(x.shape)}, "
                         f"expected {w.shape[1]} to match the weight {format_shape(w.shape)}", operand=0)
    ho, wo = spatial_out("conv2d", x.shape, w.shape[2], w.shape[3], stride, pad)
    return TensorType((x.shape[0], w.shape[0], ho, wo), result_dtype(ts, "conv2d"))


def _windows(x, kh, kw, stride, pad):
    """[N, C, Ho, Wo, kh, kw] view of the (padded) input."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]


def _conv2d_ref(x, w, *, stride=1, pad=0):
    win = _windows(x, w.shape[2], w.shape[3], stride, pad)
    return np.einsum("nchwij,fcij->nfhw", win, w, optimize=True).astype(x.dtype, copy=False)


def _conv2d_grad_input(ts, *, stride, pad, in_shape):
    dy, w = ts
    return TensorType((dy.shape[0],) + tuple(in_shape[1:]), result_dtype(ts, "conv2d_grad_input"))


def _conv2d_grad_input_ref(dy, w, *, stride, pad, in_shape):
    n = dy.shape[0]
    _, c, h, wd = in_shape
    kh, kw = w.shape[2], w.shape[3]
    ho, wo = dy.shape[2], dy.shape[3]
    dx = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += np.einsum(
                "nfhw,fc->nchw", dy, w[:, :, i, j], optimize=True)
    return dx[:, :, pad:pad + h, pad:pad + wd]


def _conv2d_grad_weight(ts, *, stride, pad, kshape):
    return TensorType(tuple(kshape), result_dtype(ts, "conv2d_grad_weight"))


def _conv2d_grad_weight_ref(x, dy, *, stride, pad, kshape):
    win = _windows(x, kshape[2], kshape[3], stride, pad)
    return np.einsum("nfhw,nchwij->fcij", dy, win, optimize=True).astype(x.dtype, copy=False)


conv2d = defop("conv2d", arity=2, groups={CONTRACTION}, shape=_conv2d, ref=_conv2d_ref,
      doc="2-D cross-correlation, NCHW input, [F, C, kh, kw] weight", attrs=("stride", "pad"))
conv2d_grad_input = defop("conv2d_grad_input", arity=2, groups={CONTRACTION}, shape=_conv2d_grad_input,
      ref=_conv2d_grad_input_ref,
      doc="dx of conv2d from dy and the weight", attrs=("stride", "pad", "in_shape"))
conv2d_grad_weight = defop("conv2d_grad_weight", arity=2, groups={CONTRACTION}, shape=_conv2d_grad_weight,
      ref=_conv2d_grad_weight_ref,
      doc="dW of conv2d from the input and dy", attrs=("stride", "pad", "kshape"))

# ---- pooling -------------------------------------------------------------------------


def _pool(name):
    def rule(ts, *, size, stride):
        x = ts[0]
        check_nchw(name, x)
        ho, wo = spatial_out(name, x.shape, size, size, stride, 0)
        return TensorType(x.shape[:2] + (ho, wo), x.dtype)
    return rule


def _maxpool_ref(x, *, size, stride):
    return _windows(x, size, size, stride, 0).max(axis=(4, 5))


def _avgpool_ref(x, *, size, stride):
    return _windows(x, size, size, stride, 0).mean(axis=(4, 5)).astype(x.dtype, copy=False)


def _maxpool_grad_ref(x, dy, *, size, stride):
    """Route each window's gradient to the first position holding its maximum."""
    win = _windows(x, size, size, stride, 0)
    n, c, ho, wo = dy.shape
    flat = win.reshape(n, c, ho, wo, size * size)
    arg = flat.argmax(axis=-1)
    di, dj = np.divmod(arg, size)
    rows = np.arange(ho)[None, None, :, None] * stride + di
    cols = np.arange(wo)[None, None, None, :] * stride + dj
    dx = np.zeros_like(x)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    np.add.at(dx, (nn[:, :, None, None], cc[:, :, None, None], rows, cols), dy)
    return dx


def _avgpool_grad_ref(dy, *, size, stride, in_shape):
    n, c, ho, wo = dy.shape
    dx = np.zeros((n,) + tuple(in_shape[1:]), dtype=dy.dtype)
    share = dy / (size * size)
    for i in range(size):
        for j in range(size):
            dx[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += share
    return dx


def _same_as_first(ts, **attrs):
    return ts[0]


def _avgpool_grad(ts, *, size, stride, in_shape):
    return TensorType((ts[0].shape[0],) + tuple(in_shape[1:]), ts[0].dtype)


maxpool = defop("maxpool", arity=1, groups={POOL}, shape=_pool("maxpool"), ref=_maxpool_ref,
      doc="max over size x size windows", attrs=("size", "stride"))
avgpool = defop("avgpool", arity=1, groups={POOL}, shape=_pool("avgpool"), ref=_avgpool_ref,
      doc="mean over size x size windows", attrs=("size", "stride"))
maxpool_grad = defop("maxpool_grad", arity=2, groups={POOL}, shape=_same_as_first, ref=_maxpool_grad_ref,
      doc="dx of maxpool: dy routed to each window's argmax", attrs=("size", "stride"))
avgpool_grad = defop("avgpool_grad", arity=1, groups={POOL}, shape=_avgpool_grad, ref=_avgpool_grad_ref,
      doc="dx of avgpool: dy spread evenly over each window", attrs=("size", "stride", "in_shape"))



def _conv_attrs(c):
    return {"stride": c.attrs.get("stride", 1), "pad": c.attrs.get("pad", 0)}


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


def _pool_attrs(c):
    return {"size": c.attrs["size"], "stride": c.attrs["stride"]}


defvjp(maxpool, VJP("maxpool: dx = dy routed to each window's maximum",
                    lambda c, dy: c.maxpool_grad(c.x(0), dy, **_pool_attrs(c))))
defvjp(avgpool, VJP("avgpool: dx = dy spread evenly over each window",
                    lambda c, dy: c.avgpool_grad(dy, in_shape=c.shape(c.x(0)), **_pool_attrs(c))))
nograd(maxpool_grad, "second derivatives through max pooling are not supported")
defvjp(avgpool_grad, VJP("avgpool_grad: d(dy) = avgpool(g)", lambda c, g: c.avgpool(g, **_pool_attrs(c))))
