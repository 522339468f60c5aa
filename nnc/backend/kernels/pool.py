"""Max and average pooling over NCHW windows, forward and backward, as PyTorch's MaxPool2d and AvgPool2d.

Window (y, x) starts at row y·stride − pad and column x·stride − pad: `pad` rows and columns of padding
surround the input, and ceil_mode's last window may reach past them. A window wholly inside the input takes
the unchecked path (all of them without padding); one at the border checks the taps that can leave the input,
decided at compile time per tap row and column (the middle row of a padded 3x3 window never can). A tap
outside reads the window's first position inside the input instead: that leaves a maximum unchanged, and a
sum masks it to 0. The mean divides by PyTorch's count: the window's extent inside the padding
(count_include_pad) or inside the input. The backward forms zero
dx and scatter-add into it, so overlapping windows sum correctly; maxpool routes each window's gradient to the
first position of its maximum inside the input, like the reference.

Max pooling whose windows lie side by side along a row (stride = size, no padding, none past the input: 2x2
stride 2, the CNNs' pooling) runs on vectors of V windows (`_each_window_group`): one load per tap row holds
the V·size values under V windows, and a shuffle takes tap (i, j) of each, so the scalar code's chain of
maxima and comparisons runs lane-wise on the same values in the same order (the same results, bit for bit);
the gradient interleaves its per-tap values back into rows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from .. import irmath as m, llvmutil as u
from ..irmath import F32, I32
from .pointwise import finish_epilogue

PARALLEL_PLANES = 64   # fewer planes (images x channels) run on one thread


def _planes(kc, shape):
    """This thread's share [lo, hi) of the N·C planes of `shape`."""
    n, c = shape[0], shape[1]
    if kc.threads > 1 and n * c >= PARALLEL_PLANES:
        return kc.share(n * c)
    return 0, n * c


def _smax(b, x, y):
    return b.select(b.icmp_signed(">", x, y), x, y)


def _smin(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


@dataclass
class _Axis:
    """The windows along one axis: `out` of them, `size` taps each, over an input extent `n`."""

    n: int
    out: int
    size: int
    stride: int
    pad: int

    def checked(self, i: int) -> bool:
        """Can tap i of some window fall outside the input?"""
        return i < self.pad or (self.out - 1) * self.stride - self.pad + i >= self.n

    @property
    def bordered(self) -> bool:
        """Can any window reach outside the input?"""
        return any(self.checked(i) for i in range(self.size))

    def interior(self, b, start):
        """Is the window starting at `start` wholly inside the input (i1)?"""
        return b.icmp_unsigned("<", start, u.i64(max(self.n - self.size + 1, 0)))

    def start(self, b, o):
        """Where window o starts (negative in the padding)."""
        return u.offset(b, [(o, self.stride)], base=-self.pad)

    def inside(self, b, start, i):
        """Is tap i of the window starting at `start` inside the input (None: always)?"""
        if not self.checked(i):
            return None
        return b.icmp_unsigned("<", u.plus(b, start, i), u.i64(self.n))  # a negative index is a large unsigned one

    def first(self, b, start):
        """The window's first position inside the input."""
        return _smax(b, start, u.i64(0)) if self.pad else start

    def count(self, b, start, include_pad: bool):
        """How many of the window's taps the mean divides by (a number when the same for every window)."""
        if include_pad:
            if (self.out - 1) * self.stride - self.pad + self.size <= self.n + self.pad:
                return self.size
            return b.sub(_smin(b, u.plus(b, start, self.size), u.i64(self.n + self.pad)), start)
        if not self.bordered:
            return self.size
        end = _smin(b, u.plus(b, start, self.size), u.i64(self.n))
        return b.sub(end, self.first(b, start))


@dataclass
class _Window:
    """One window as its kernel body sees it."""

    taps: list      # (element offset, inside: i1 or None) per tap in row-major order; outside taps read `first`
    first: object   # the offset of its first position inside the input
    at: object      # the offset of its output
    spans: tuple    # (_Axis, start) of its rows and of its columns, for the divisor; () when wholly inside
    size: int

    def divisor(self, b, include_pad: bool):
        counts = [axis.count(b, start, include_pad) for axis, start in self.spans] or [self.size, self.size]
        if all(isinstance(c, int) for c in counts):
            return ir.Constant(F32, float(counts[0] * counts[1]))
        counts = [u.i64(c) if isinstance(c, int) else c for c in counts]
        return b.sitofp(b.mul(counts[0], counts[1]), F32)


def _each_window(kc, x_shape, out_shape, body) -> None:
    """Call body(_Window) for every window of this thread's planes; x_shape is the pooled input's."""
    b = kc.b
    _, _, h, w = x_shape
    _, _, ho, wo = out_shape
    size, stride, pad = kc.attrs["size"], kc.attrs["stride"], kc.attrs.get("pad", 0)
    rows, cols = _Axis(h, ho, size, stride, pad), _Axis(w, wo, size, stride, pad)
    lo, hi = _planes(kc, out_shape)
    taps = [(i, j) for i in range(size) for j in range(size)]
    with u.for_range(b, hi, start=lo, name="nc", vectorize=False) as nc:
        with u.for_range(b, ho, name="y", vectorize=False) as y:
            top = rows.start(b, y)
            row_inside = [rows.inside(b, top, i) for i in range(size)]
            with u.for_range(b, wo, name="x", vectorize=False) as xo:
                left = cols.start(b, xo)
                corner = u.offset(b, [(nc, h * w), (top, w), (left, 1)])
                at = u.offset(b, [(nc, ho * wo), (y, wo), (xo, 1)])

                def inside_only():
                    body(_Window([(u.plus(b, corner, i * w + j), None) for i, j in taps], corner, at, (), size))

                def at_the_border():
                    col_inside = [cols.inside(b, left, j) for j in range(size)]
                    first = u.offset(b, [(nc, h * w), (rows.first(b, top), w), (cols.first(b, left), 1)])
                    checked = []
                    for i, j in taps:
                        ok = [c for c in (row_inside[i], col_inside[j]) if c is not None]
                        inside = ok[0] if len(ok) == 1 else b.and_(*ok) if ok else None
                        pos = u.plus(b, corner, i * w + j)
                        checked.append((pos if inside is None else b.select(inside, pos, first), inside))
                    body(_Window(checked, first, at, ((rows, top), (cols, left)), size))

                if not (rows.bordered or cols.bordered):
                    inside_only()
                else:
                    wholly_inside = b.and_(rows.interior(b, top), cols.interior(b, left))
                    with b.if_else(wholly_inside, likely=True) as (then, otherwise):
                        with then:
                            inside_only()
                        with otherwise:
                            at_the_border()


MAX_GROUP = 16   # windows per vector when a row has more: a divisor of the row's windows if one is 8..16


@dataclass
class _Group:
    """`width` neighbouring windows of one output row, as vectors: `taps` holds tap (i, j) of every window
    (row-major order, lane k = window k); `rows[i]` is where tap row i of the group starts in the input."""

    taps: list
    rows: list
    at: object      # the offset of the first window's output
    width: int
    size: int


def _side_by_side(kc, x_shape, out_shape) -> bool:
    """Do each row's windows lie side by side inside the input (stride = size, no padding, none past it)?"""
    size, stride, pad = kc.attrs["size"], kc.attrs["stride"], kc.attrs.get("pad", 0)
    return stride == size and not pad and out_shape[2] * size <= x_shape[2] and out_shape[3] * size <= x_shape[3]


def _group_widths(out_w: int) -> tuple[int, int]:
    """(windows per vector, windows in the row's last, shorter vector or 0)."""
    if out_w <= MAX_GROUP:
        return out_w, 0
    for width in range(MAX_GROUP, 7, -1):
        if out_w % width == 0:
            return width, 0
    return MAX_GROUP, out_w % MAX_GROUP


def _lanes(b, vector, picks: list[int]):
    """The vector of `vector`'s lanes `picks`."""
    mask = ir.Constant(ir.VectorType(ir.IntType(32), len(picks)), picks)
    return b.shuffle_vector(vector, ir.Constant(vector.type, ir.Undefined), mask)


def _interleaved(b, vectors: list):
    """One vector of len(vectors)·V lanes: lane k·s + j is lane k of vectors[j] (V lanes each, s vectors)."""
    width, s = vectors[0].type.count, len(vectors)
    parts = list(vectors)
    while len(parts) > 1:   # concatenate pairwise: lane j·V + k of the whole is lane k of vectors[j]
        if len(parts) % 2:
            parts.append(ir.Constant(parts[0].type, ir.Undefined))
        n = parts[0].type.count
        mask = ir.Constant(ir.VectorType(ir.IntType(32), 2 * n), list(range(2 * n)))
        parts = [b.shuffle_vector(parts[i], parts[i + 1], mask) for i in range(0, len(parts), 2)]
    return _lanes(b, parts[0], [(lane % s) * width + lane // s for lane in range(width * s)])


def _each_window_group(kc, x_shape, out_shape, body) -> None:
    """Call body(_Group) for every group of side-by-side windows of this thread's planes."""
    b = kc.b
    _, _, h, w = x_shape
    _, _, ho, wo = out_shape
    size = kc.attrs["size"]
    x = kc.ptr(kc.operand(0))
    width, rest = _group_widths(wo)
    lo, hi = _planes(kc, out_shape)

    def group(nc, y, first, count):
        rows = [u.offset(b, [(nc, h * w), (y, size * w), (first, size)], base=i * w) for i in range(size)]
        loads = [u.load_vector(b, x, r, count * size) for r in rows]
        taps = [_lanes(b, loads[i], list(range(j, count * size, size))) for i in range(size) for j in range(size)]
        body(_Group(taps, rows, u.offset(b, [(nc, ho * wo), (y, wo), (first, 1)]), count, size))

    with u.for_range(b, hi, start=lo, name="nc", vectorize=False) as nc:
        with u.for_range(b, ho, name="y", vectorize=False) as y:
            with u.for_range(b, wo - rest, step=width, name="x", vectorize=False) as first:
                group(nc, y, first, width)
            if rest:
                group(nc, y, u.i64(wo - rest), rest)


def _zero_planes(kc, ptr, shape) -> None:
    """Zero this thread's planes of a [N, C, H, W] buffer."""
    lo, hi = _planes(kc, shape)
    plane = shape[2] * shape[3]
    end, start = u.offset(kc.b, [(hi, plane)]), u.offset(kc.b, [(lo, plane)])
    with u.for_range(kc.b, end, start=start, name="z", vectorize=False) as i:
        u.store(kc.b, ir.Constant(F32, 0.0), ptr, i)


def _masked(b, value, inside):
    """value where the tap is inside the input, else 0."""
    return value if inside is None else b.select(inside, value, ir.Constant(F32, 0.0))


def emit_maxpool(kc) -> None:
    b = kc.b
    xnode = kc.operand(0)
    x = kc.ptr(xnode)

    def body(win):
        acc = u.load(b, x, win.first)
        for pos, _ in win.taps:
            acc = m.maximum(b, acc, u.load(b, x, pos))
        u.store(b, acc, kc.out, win.at)

    def group_body(group):
        acc = group.taps[0]
        for tap in group.taps:
            acc = m.maximum(b, acc, tap)
        u.store_vector(b, acc, kc.out, group.at)

    if _side_by_side(kc, kc.shape(xnode), kc.shape(kc.anchor)):
        _each_window_group(kc, kc.shape(xnode), kc.shape(kc.anchor), group_body)
    else:
        _each_window(kc, kc.shape(xnode), kc.shape(kc.anchor), body)
    finish_epilogue(kc)


def emit_avgpool(kc) -> None:
    b = kc.b
    xnode = kc.operand(0)
    x = kc.ptr(xnode)
    include_pad = kc.attrs.get("count_include_pad", True)

    def body(win):
        acc = None
        for pos, inside in win.taps:
            v = _masked(b, u.load(b, x, pos), inside)
            acc = v if acc is None else b.fadd(acc, v)
        u.store(b, b.fdiv(acc, win.divisor(b, include_pad)), kc.out, win.at)

    _each_window(kc, kc.shape(xnode), kc.shape(kc.anchor), body)
    finish_epilogue(kc)


def _takes_the_window(b, value, best):
    """Does a tap's value take the window's gradient from the best so far (scanning row-major)? As PyTorch's
    CPU kernel: when it is larger, or NaN (so a window's last NaN takes it)."""
    return b.or_(b.fcmp_ordered(">", value, best), b.fcmp_unordered("uno", value, value))


def emit_maxpool_grad(kc) -> None:
    """dx: each window's dy added at its first largest tap (its last NaN if it has one). When the windows
    tile the input exactly (stride = size, no padding, the extents multiples of the size: every element in
    one window), each window stores its taps directly (dy at the largest, 0 elsewhere) instead of zeroing dx
    and adding into it; side-by-side windows run on vectors (`_each_window_group`)."""
    b = kc.b
    xnode, dynode = kc.operand(0), kc.operand(1)
    x, dy, x_shape = kc.ptr(xnode), kc.ptr(dynode), kc.shape(xnode)
    size, stride, pad = kc.attrs["size"], kc.attrs["stride"], kc.attrs.get("pad", 0)
    tiled = stride == size and not pad and x_shape[2] % size == 0 and x_shape[3] % size == 0
    if not tiled:
        _zero_planes(kc, kc.out, x_shape)

    def body(win):
        best, where = u.load(b, x, win.first), win.first
        for pos, _ in win.taps:
            v = u.load(b, x, pos)
            better = _takes_the_window(b, v, best)
            best, where = b.select(better, v, best), b.select(better, pos, where)
        if tiled:
            grad = u.load(b, dy, win.at)
            for pos, _ in win.taps:
                u.store(b, b.select(b.icmp_unsigned("==", pos, where), grad, ir.Constant(F32, 0.0)), kc.out, pos)
            return
        u.store(b, b.fadd(u.load(b, kc.out, where), u.load(b, dy, win.at)), kc.out, where)

    def group_body(group):
        best, where = group.taps[0], ir.Constant(ir.VectorType(I32, group.width), 0)
        for index, tap in enumerate(group.taps):
            better = _takes_the_window(b, tap, best)
            best = b.select(better, tap, best)
            where = b.select(better, ir.Constant(where.type, index), where)
        grad = u.load_vector(b, dy, group.at, group.width)
        zero = ir.Constant(grad.type, 0.0)
        routed = [b.select(b.icmp_unsigned("==", where, ir.Constant(where.type, index)), grad, zero)
                  for index in range(len(group.taps))]
        for i, row in enumerate(group.rows):   # windows side by side: each element in one window at most
            u.store_vector(b, _interleaved(b, routed[i * size:(i + 1) * size]), kc.out, row)

    if _side_by_side(kc, x_shape, kc.shape(dynode)):
        _each_window_group(kc, x_shape, kc.shape(dynode), group_body)
    else:
        _each_window(kc, x_shape, kc.shape(dynode), body)
    finish_epilogue(kc)


def emit_avgpool_grad(kc) -> None:
    b = kc.b
    dynode = kc.operand(0)
    dy, out_shape = kc.ptr(dynode), kc.shape(kc.anchor)
    _zero_planes(kc, kc.out, out_shape)
    include_pad = kc.attrs.get("count_include_pad", True)

    def body(win):
        share = b.fdiv(u.load(b, dy, win.at), win.divisor(b, include_pad))
        for pos, inside in win.taps:
            u.store(b, b.fadd(u.load(b, kc.out, pos), _masked(b, share, inside)), kc.out, pos)

    _each_window(kc, out_shape, kc.shape(dynode), body)
    finish_epilogue(kc)
