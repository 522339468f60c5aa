"""Softmax, log-softmax, softmax cross-entropy (stable log-sum-exp), one-hot and dropout masks.

Softmax-like ops see their input as [outer, L, inner] around the normalized
axis and make three passes over each of the outer·inner lines: the maximum,
the sum of e^(x − max), then the result. Cross-entropy with int labels checks
every label before use and reports a bad one through the kernel's status.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from ...ir.rng import GOLDEN, MASK32
from .. import irmath as m, llvmutil as u
from ..irmath import F32, I32, I64
from ..kernel_context import STATUS_BAD_LABEL
from .pointwise import finish_epilogue
from .reduce import combine, reduce_line


def _layout(shape, axis: int):
    axis %= len(shape)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _lanes(b, ptr, at, lanes: int, active: int | None = None):
    """Element `at` of a float32 buffer, or the `lanes` elements from it as a vector (only the
    first `active` read when given)."""
    return u.load(b, ptr, at) if lanes == 1 else u.load_vector(b, ptr, at, lanes, active)


def _line_max_and_sum(kc, ptr, base, length: int):
    """(max, Σ e^(x − max)) along the contiguous line of `length` elements from `base`."""
    b = kc.b

    def x(i, lanes, active):
        return _lanes(b, ptr, b.add(base, i), lanes, active)

    def shifted_exp(i, lanes, active):
        return m.exp(b, b.fsub(x(i, lanes, active), m.splat(b, top, lanes)))

    top = reduce_line(b, "max", length, kc.width, x)
    return top, reduce_line(b, "sum", length, kc.width, shifted_exp)


def _lines_max_and_sum(kc, ptr, base, length: int, stride: int, lanes: int):
    """(max, Σ e^(x − max)) of `lanes` adjacent lines of `length` elements `stride` apart (lane j: the
    line from base + j), as vectors: each line walked in order, one lane of every operation."""
    b = kc.b
    vec_t = ir.VectorType(F32, lanes) if lanes > 1 else F32

    def fold(kind, start: float, term):
        acc = u.entry_alloca(b, vec_t, kind)
        b.store(ir.Constant(vec_t, start), acc)
        with u.for_range(b, length, name="l", vectorize=lanes == 1) as i:
            v = term(_lanes(b, ptr, b.add(base, b.mul(i, u.i64(stride))), lanes))
            b.store(combine(b, kind, b.load(acc, typ=vec_t), v), acc)
        return b.load(acc, typ=vec_t)

    top = fold("max", -math.inf, lambda v: v)
    return top, fold("sum", 0.0, lambda v: m.exp(b, b.fsub(v, top)))


def _emit_softmax(kc, log: bool) -> None:
    """Line by line when the axis is the last one (`reduce_line` vectorizes along it); else the lines
    of adjacent columns go in the lanes of vectors, as many at a time as the host holds."""
    b = kc.b
    x = kc.ptr(kc.operand(0))
    outer, length, inner = _layout(kc.shape(kc.anchor), kc.attrs.get("axis", -1))
    lanes = kc.width
    while lanes > inner:
        lanes //= 2

    def lines(base, lanes: int):
        if inner == 1:
            top, total = _line_max_and_sum(kc, x, base, length)
        else:
            top, total = _lines_max_and_sum(kc, x, base, length, inner, lanes)
        if log:  # (v − max) − log Σ: subtracting max + log Σ instead loses digits when |max| is large
            log_total = m.log(b, total)
        else:
            scale = b.fdiv(m.fconst(total, 1.0), total)
        with u.for_range(b, length, name="l", vectorize=lanes == 1) as i:
            at = b.add(base, b.mul(i, u.i64(inner)))
            v = _lanes(b, x, at, lanes)
            y = b.fsub(b.fsub(v, top), log_total) if log else b.fmul(m.exp(b, b.fsub(v, top)), scale)
            if lanes == 1:
                u.store(b, y, kc.out, at)
            else:
                u.store_vector(b, y, kc.out, at)

    with u.for_range(b, outer, name="o") as o:
        vectors = inner // lanes * lanes if lanes > 1 else 0
        if vectors:
            with u.for_range(b, vectors, step=lanes, name="t") as t:
                lines(u.offset(b, [(o, length * inner), (t, 1)]), lanes)
        if inner > vectors:
            with u.for_range(b, inner, start=vectors, name="t") as t:
                lines(u.offset(b, [(o, length * inner), (t, 1)]), 1)
    finish_epilogue(kc)


def emit_softmax(kc) -> None:
    _emit_softmax(kc, log=False)


def emit_log_softmax(kc) -> None:
    _emit_softmax(kc, log=True)


def _check_label(kc, label, classes: int) -> None:
    b = kc.b
    ok = b.and_(b.icmp_signed(">=", label, ir.Constant(I32, 0)), b.icmp_signed("<", label, ir.Constant(I32, classes)))
    kc.check(ok, STATUS_BAD_LABEL)


def emit_xent(kc) -> None:
    """−log softmax(logits)[label] = log Σ exp(row − max) − (row[label] − max); with one-hot targets t:
    Σ t·(log Σ − (row − max)). Shifting each logit before the subtraction keeps large logits exact. A row is
    the classes (last axis) of one position; logits of any rank are their rows one after another."""
    b = kc.b
    logits, labels = kc.operand(0), kc.operand(1)
    shape = kc.shape(logits)
    rows, classes = math.prod(shape[:-1]), shape[-1]
    x, lab = kc.ptr(logits), kc.ptr(labels)
    with u.for_range(b, rows, name="row") as r:
        base = b.mul(r, u.i64(classes))
        top, total = _line_max_and_sum(kc, x, base, classes)
        log_total = m.log(b, total)
        if kc.dtype(labels) == "int32":
            label = u.load(b, lab, r, I32)
            _check_label(kc, label, classes)
            picked = u.load(b, x, b.add(base, b.sext(label, I64)))
            loss = b.fsub(log_total, b.fsub(picked, top))
        else:
            def term(c, lanes, active):
                at = b.add(base, c)
                shifted = b.fsub(_lanes(b, x, at, lanes, active), m.splat(b, top, lanes))
                return b.fmul(_lanes(b, lab, at, lanes, active), b.fsub(m.splat(b, log_total, lanes), shifted))
            loss = reduce_line(b, "sum", classes, kc.width, term)
        u.store(b, loss, kc.out, r)
    finish_epilogue(kc)


def emit_one_hot(kc) -> None:
    b = kc.b
    labels = kc.operand(0)
    depth = kc.attrs["depth"]
    lab = kc.ptr(labels)
    with u.for_range(b, math.prod(kc.shape(labels)), name="row") as r:
        label = u.load(b, lab, r, I32)
        _check_label(kc, label, depth)
        with u.for_range(b, depth, name="c") as c:
            hit = b.icmp_signed("==", b.trunc(c, I32), label)
            u.store(b, b.uitofp(hit, F32), kc.out, u.offset(b, [(r, depth), (c, 1)]))
    finish_epilogue(kc)


def _mix32(b, x):
    for shift, factor in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = b.xor(x, b.lshr(x, ir.Constant(I32, shift)))
        x = b.mul(x, ir.Constant(I32, factor))
    return b.xor(x, b.lshr(x, ir.Constant(I32, 16)))


def _stream_key(kc):
    """The per-node key of nnc.ir.rng.stream_key, from the step seed and the node's salt."""
    b = kc.b
    salt = int(kc.attrs.get("salt", kc.anchor))
    seed = kc.seed
    lo = b.trunc(seed, I32)
    hi = b.trunc(b.lshr(seed, ir.Constant(I64, 32)), I32)
    key = _mix32(b, ir.Constant(I32, (salt + GOLDEN) & MASK32))
    key = _mix32(b, b.xor(hi, key))
    return _mix32(b, b.xor(lo, key))


def _uniform(b, index, key, offset: float = 0.0):
    """uniform(key, index) of nnc.ir.rng: 24 hashed bits as a float32 in [0, 1) (+ offset · 2⁻²⁴)."""
    h = _mix32(b, b.add(b.mul(index, ir.Constant(I32, GOLDEN)), key))
    h = _mix32(b, b.xor(h, key))
    bits = b.uitofp(b.lshr(h, ir.Constant(I32, 8)), F32)
    return b.fmul(b.fadd(bits, ir.Constant(F32, offset)), ir.Constant(F32, 2.0 ** -24))


def emit_random_normal(kc) -> None:
    """mean + std · z with z = √(−2 ln u₁) · cos(2π u₂) (Box–Muller) from the uniforms 2i and 2i + 1 of
    the node's counter-based stream (nnc.ir.rng: `normal_numpy` is its NumPy twin); u₁ in (0, 1)."""
    b = kc.b
    key = _stream_key(kc)
    mean, std = float(kc.attrs.get("mean", 0.0)), float(kc.attrs.get("std", 1.0))
    with u.for_range(b, math.prod(kc.shape(kc.anchor)), name="i") as i:
        pair = b.mul(b.trunc(i, I32), ir.Constant(I32, 2))
        u1 = _uniform(b, pair, key, offset=0.5)
        u2 = _uniform(b, b.add(pair, ir.Constant(I32, 1)), key)
        radius = m.intrinsic(b, "sqrt", [b.fmul(ir.Constant(F32, -2.0), m.log(b, u1))])
        angle = b.fmul(u2, ir.Constant(F32, float(np.float32(2 * np.pi))))
        z = b.fmul(radius, m.intrinsic(b, "cos", [angle]))
        u.store(b, b.fadd(ir.Constant(F32, mean), b.fmul(ir.Constant(F32, std), z)), kc.out, i)
    finish_epilogue(kc)


def emit_dropout_mask(kc) -> None:
    """keep = uniform(seed, salt, i) >= p, the stream of nnc.ir.rng; mask = keep / (1 − p)."""
    b = kc.b
    p = float(kc.attrs["p"])
    key = _stream_key(kc)
    keep_value = ir.Constant(F32, float(np.float32(1.0 / (1.0 - p))))
    threshold = ir.Constant(F32, float(np.float32(p)))
    with u.for_range(b, math.prod(kc.shape(kc.anchor)), name="i") as i:
        uniform = _uniform(b, b.trunc(i, I32), key)
        keep = b.fcmp_ordered(">=", uniform, threshold)
        u.store(b, b.select(keep, keep_value, ir.Constant(F32, 0.0)), kc.out, i)
    finish_epilogue(kc)
