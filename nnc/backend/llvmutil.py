"""Code-generation helpers: counted loops, typed element pointers, vector loads and stores.

The kernels are written with these instead of raw builder calls: `for_range`
(like numba's `cgutils.for_range`) opens a counted loop whose body the `with`
block emits; `element`/`load`/`store` address float32 or int32 buffers by a
constant or computed element offset; `load_vector`/`store_vector` move
`width` contiguous lanes, masked at a compile-time-known tail; `load_lanes` reads
any compile-time set of them.
"""

from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

from .irmath import F32, I1, I32, I64, splat

PTR = ir.PointerType()


def i64(value: int) -> ir.Constant:
    return ir.Constant(I64, int(value))


def as_i64(value) -> ir.Value:
    return i64(value) if isinstance(value, int) else value


class _LoopID(ir.values.MDValue):
    """The self-referential `distinct !{!N, hints...}` LLVM wants as a loop's identity."""

    def descr(self, buf):
        ops = ", ".join([self.get_reference()] + [op.get_reference() for op in self.operands])
        buf += (f"distinct !{{ {ops} }}", "\n")


def _no_vectorize(module: ir.Module) -> ir.values.MDValue:
    """Loop metadata telling the loop vectorizer to leave a loop alone (already vectorized by hand,
    or not worth it): it then spends no compile time on it."""
    hint = module.add_metadata([ir.MetaDataString(module, "llvm.loop.vectorize.enable"), ir.Constant(I1, 0)])
    return _LoopID(module, [hint], name=str(len(module.metadata)))


@contextmanager
def for_range(b: ir.IRBuilder, count, start=0, step: int = 1, name: str = "i", vectorize: bool = True):
    """`for i in range(start, count, step)` over i64; yields i. Emits nothing when empty at compile time.
    `vectorize=False` keeps LLVM's loop vectorizer off this loop (loops with explicit vectors)."""
    if isinstance(count, int) and isinstance(start, int) and start >= count:
        yield None
        return
    start, count = as_i64(start), as_i64(count)
    pre = b.block
    head = b.append_basic_block(f"{name}.head")
    body = b.append_basic_block(f"{name}.body")
    done = b.append_basic_block(f"{name}.done")
    b.branch(head)
    b.position_at_end(head)
    index = b.phi(I64, name=name)
    index.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", index, count), body, done)
    b.position_at_end(body)
    yield index
    nxt = b.add(index, i64(step), name=f"{name}.next", flags=("nsw",))
    index.add_incoming(nxt, b.block)
    latch = b.branch(head)
    if not vectorize:
        latch.set_metadata("llvm.loop", _no_vectorize(b.module))
    b.position_at_end(done)


def offset(b: ir.IRBuilder, terms, base=0) -> ir.Value:
    """base + Σ index·stride over (index, stride) pairs, skipping stride-0 terms; constants folded."""
    const_part = base if isinstance(base, int) else 0
    acc = None if isinstance(base, int) else base
    for index, stride in terms:
        if stride == 0:
            continue
        if isinstance(index, int):
            const_part += index * stride
            continue
        term = index if stride == 1 else b.mul(index, i64(stride), flags=("nsw",))
        acc = term if acc is None else b.add(acc, term, flags=("nsw",))
    if acc is None:
        return i64(const_part)
    return acc if const_part == 0 else b.add(acc, i64(const_part), flags=("nsw",))


def plus(b: ir.IRBuilder, x, c: int):
    """x + c for an i64 value or int x, folding what is known at compile time."""
    if isinstance(x, int):
        return i64(x + c)
    return x if c == 0 else b.add(x, i64(c), flags=("nsw",))


def element(b: ir.IRBuilder, ptr, index, etype=F32) -> ir.Value:
    return b.gep(ptr, [as_i64(index)], inbounds=True, source_etype=etype)


def load(b: ir.IRBuilder, ptr, index, etype=F32) -> ir.Value:
    return b.load(element(b, ptr, index, etype), typ=etype)


def store(b: ir.IRBuilder, value, ptr, index) -> None:
    b.store(value, element(b, ptr, index, value.type))


def lane_mask(width: int, active: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I1, width), [1] * active + [0] * (width - active))


def _masked_intrinsic(b, name: str, vec_t, arg_types):
    full = f"llvm.masked.{name}.v{vec_t.count}f32.p0"
    fn = b.module.globals.get(full)
    if fn is None:
        ret = vec_t if name == "load" else ir.VoidType()
        fn = ir.Function(b.module, ir.FunctionType(ret, arg_types), full)
    return fn


def load_vector(b: ir.IRBuilder, ptr, index, width: int, active: int | None = None) -> ir.Value:
    """`width` float32 lanes from ptr[index]; with `active` < width, lanes past it are 0 and never read."""
    vec_t = ir.VectorType(F32, width)
    addr = element(b, ptr, index)
    if active is None or active >= width:
        return b.load(addr, typ=vec_t, align=4)
    mask_t = ir.VectorType(I1, width)
    fn = _masked_intrinsic(b, "load", vec_t, [PTR, I32, mask_t, vec_t])
    return b.call(fn, [addr, ir.Constant(I32, 4), lane_mask(width, active), ir.Constant(vec_t, 0.0)])


def load_lanes(b: ir.IRBuilder, ptr, index, lanes: list[bool]) -> ir.Value:
    """len(lanes) float32 lanes from ptr[index], only those marked True read (the others 0): a plain load,
    a prefix-masked one, or any mask (the address may then lie before the buffer: no inbounds)."""
    width, active = len(lanes), sum(lanes)
    if lanes == [True] * active + [False] * (width - active):
        return load_vector(b, ptr, index, width, active)
    vec_t, mask_t = ir.VectorType(F32, width), ir.VectorType(I1, width)
    fn = _masked_intrinsic(b, "load", vec_t, [PTR, I32, mask_t, vec_t])
    addr = b.gep(ptr, [as_i64(index)], source_etype=F32)
    return b.call(fn, [addr, ir.Constant(I32, 4), ir.Constant(mask_t, [int(v) for v in lanes]),
                       ir.Constant(vec_t, 0.0)])


def store_vector(b: ir.IRBuilder, value, ptr, index, active: int | None = None) -> None:
    width = value.type.count
    addr = element(b, ptr, index)
    if active is None or active >= width:
        b.store(value, addr, align=4)
        return
    mask_t = ir.VectorType(I1, width)
    fn = _masked_intrinsic(b, "store", value.type, [value.type, PTR, I32, mask_t])
    b.call(fn, [value, addr, ir.Constant(I32, 4), lane_mask(width, active)])


def broadcast_load(b: ir.IRBuilder, ptr, index, width: int, etype=F32) -> ir.Value:
    """One element splatted over `width` lanes (a scalar when width is 1)."""
    return splat(b, load(b, ptr, index, etype), width)


def entry_alloca(b: ir.IRBuilder, typ, name: str = "") -> ir.Value:
    """A stack slot in the function's entry block, where SROA turns it into registers."""
    here = b.block
    b.position_at_start(b.function.entry_basic_block)
    slot = b.alloca(typ, name=name)
    b.position_at_end(here)
    return slot


def memcpy(b: ir.IRBuilder, dst, src, nbytes) -> None:
    """Copy `nbytes` (an int or i64) from `src` to `dst` (not overlapping): llvm.memcpy."""
    fn = b.module.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
        b.module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, I1]), "llvm.memcpy.p0.p0.i64")
    b.call(fn, [dst, src, as_i64(nbytes), ir.Constant(I1, 0)])


def memset(b: ir.IRBuilder, dst, byte: int, nbytes) -> None:
    """Fill `nbytes` at `dst` with `byte`: llvm.memset."""
    fn = b.module.globals.get("llvm.memset.p0.i64") or ir.Function(
        b.module, ir.FunctionType(ir.VoidType(), [PTR, ir.IntType(8), I64, I1]), "llvm.memset.p0.i64")
    b.call(fn, [dst, ir.Constant(ir.IntType(8), byte), as_i64(nbytes), ir.Constant(I1, 0)])


def byte_offset(b: ir.IRBuilder, ptr, nbytes) -> ir.Value:
    """`ptr` advanced by `nbytes` (an int or i64)."""
    return b.gep(ptr, [as_i64(nbytes)], inbounds=True, source_etype=ir.IntType(8))


def transpose_tile(b: ir.IRBuilder, src, src_at, src_stride, dst, dst_at, dst_stride, width: int) -> None:
    """Copy a width x width tile transposed: dst[dst_at + c·dst_stride + r] = src[src_at + r·src_stride + c],
    through registers (width vector loads, log2(width) rounds of shuffles, width vector stores; any 32-bit
    elements, since loads, shuffles and stores keep their bits). Offsets and strides are in elements.

    Each round swaps the off-diagonal blocks of every 2 x 2 block of size `half`: row i (its `half` bit
    clear) keeps its lanes without that bit and takes row i + half's lanes with it, and the other way."""
    rows = [load_vector(b, src, offset(b, [(r, src_stride)], src_at), width) for r in range(width)]
    half = width // 2
    while half:
        low = [j if not j & half else width + j - half for j in range(width)]
        high = [j + half if not j & half else width + j for j in range(width)]
        mask_t = ir.VectorType(I32, width)
        for i in range(width):
            if i & half:
                continue
            top, bottom = rows[i], rows[i + half]
            rows[i] = b.shuffle_vector(top, bottom, ir.Constant(mask_t, low))
            rows[i + half] = b.shuffle_vector(top, bottom, ir.Constant(mask_t, high))
        half //= 2
    for c in range(width):
        store_vector(b, rows[c], dst, offset(b, [(c, dst_stride)], dst_at))
