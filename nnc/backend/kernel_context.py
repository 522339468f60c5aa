"""What a kernel generator sees: `KernelContext`, and the index arithmetic kernels share.

A `KernelContext` is one kernel being emitted: its function and IR builder,
its anchor, concrete shapes and attributes, a pointer per value it reads or
writes, its share of the work when the kernel is split across threads, and the
pointwise evaluator (`value_at`) that computes fused prologue / epilogue nodes
at any index, scalar or vector, with the rules of nnc/backend/lower_pointwise.py.
"""

from __future__ import annotations

import math

from llvmlite import ir

from ..ir.ops import CONSTANT
from ..ir.types import concrete, is_dims
from . import llvmutil as u
from .irmath import F32, I32, const
from .lower_pointwise import POINTWISE, READ_IN_PLACE
from .memory import constant_value

STATUS_BAD_LABEL = 1   # what a kernel returns when a class index is out of range
ETYPES = {"float32": F32, "int32": I32}


def concrete_attrs(attrs: dict, bindings: dict) -> dict:
    """The op attributes a kernel needs, symbolic dims replaced by their sizes."""
    out = {}
    for k, v in attrs.items():
        if k in ("type", "name", "init", "trainable", "value"):
            continue
        if is_dims(v, bindings):
            v = concrete(v, bindings)
        out[k] = v
    return out


def contiguous_strides(shape) -> list[int]:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return strides[::-1]


def broadcast_strides(shape, space) -> list[int]:
    """Element strides of a row-major `shape` read at indices of the broadcast `space` (0 where broadcast)."""
    shape = (1,) * (len(space) - len(shape)) + tuple(shape)
    return [0 if d == 1 and s != 1 else st for d, s, st in zip(shape, space, contiguous_strides(shape))]


def collapse(space, stride_lists) -> list[list[int]]:
    """Group adjacent dims of `space` that every stride list walks as one dim (row-major)."""
    groups: list[list[int]] = []
    for d in range(len(space)):
        if groups and all(st[groups[-1][-1]] == st[d] * space[d] for st in stride_lists):
            groups[-1].append(d)
        else:
            groups.append([d])
    return groups


class KernelContext:
    """One kernel being emitted: its function, builder and the values it reads and writes."""

    def __init__(self, module_builder, kernel, fn, args: dict, scratch, seed, tid, phase):
        self.scratch_bytes = 0    # how much of `scratch` the generator asked for (per share)
        self.threads = module_builder.shares    # shares of a parallel kernel (1 when single-threaded)
        self.tid = tid            # i64 share index (0 when single-threaded or serial)
        self.phase = phase        # i64: which phase of the kernel this call runs
        self.parallel = False     # is the kernel split into shares?
        self.mb = module_builder
        self.g = module_builder.plan.graph
        self.kernel = kernel
        self.fn = fn
        self.args = args          # storage node -> pointer argument
        self.scratch = scratch    # pointer to this kernel's scratch bytes, or None
        self.seed = seed          # i64 step seed
        self.width = module_builder.width
        fn.append_basic_block("entry")   # allocas, then the jump to the phase asked for
        self.phases = [fn.append_basic_block("phase0")]
        self.b = ir.IRBuilder(self.phases[0])
        self.fused = set(kernel.prologue) | set(kernel.epilogue)
        self.aliases: dict = {}   # node -> node whose memory holds its value (the anchor, once stored)

    # ---- what the kernel is about ----------------------------------------------------------

    @property
    def anchor(self):
        return self.kernel.anchor

    @property
    def attrs(self) -> dict:
        return self.attrs_of(self.anchor)

    def attrs_of(self, n) -> dict:
        return concrete_attrs(self.g.nodes[n]["attrs"], self.mb.bindings)

    def shape(self, n) -> tuple:
        return concrete(self.g.type_of(n).shape, self.mb.bindings)

    def dtype(self, n) -> str:
        return self.g.type_of(n).dtype

    def operand(self, i: int):
        return self.g.operands(self.anchor)[i]

    def ptr(self, n):
        return self.args[self.mb.plan.storage_of(self.aliases.get(n, n))]

    @property
    def out(self):
        return self.ptr(self.kernel.output)

    def request_scratch(self, nbytes: int):
        """Reserve `nbytes` of arena scratch per thread, alive only during this kernel; returns this
        thread's pointer (call once per kernel)."""
        assert not self.scratch_bytes, "one scratch request per kernel"
        self.scratch_bytes = -(-nbytes // 64) * 64
        return self.thread_scratch(self.tid)

    def thread_scratch(self, tid):
        """The scratch of thread `tid` (an i64 value or int)."""
        if self.threads == 1:
            return self.scratch
        at = u.offset(self.b, [(tid, self.scratch_bytes)])
        return self.b.gep(self.scratch, [at], inbounds=True, source_etype=ir.IntType(8))

    # ---- threads ---------------------------------------------------------------------------

    def share(self, count: int):
        """This share's part [lo, hi) of range(count); makes the kernel parallel. Ints when single-threaded."""
        if self.threads == 1:
            return 0, count
        self.parallel = True
        b, t = self.b, self.threads

        def bound(tid):
            return b.sdiv(b.mul(tid, u.i64(count)), u.i64(t))
        return bound(self.tid), bound(b.add(self.tid, u.i64(1)))

    def on_thread(self, tid: int):
        """`with kc.on_thread(t):` emits code only share t runs (everything, when single-threaded)."""
        if self.threads == 1:
            return _always()
        self.parallel = True
        return self.b.if_then(self.b.icmp_signed("==", self.tid, u.i64(tid)))

    def barrier(self) -> None:
        """What follows runs once every share of what precedes is done: a new phase of the kernel
        (nothing when single-threaded). Values computed before it cannot be used after it."""
        if self.threads > 1:
            self.b.ret(ir.Constant(I32, 0))
            self.phases.append(self.fn.append_basic_block(f"phase{len(self.phases)}"))
            self.b.position_at_end(self.phases[-1])

    def dispatch_phases(self) -> None:
        """Close the entry block: jump to the phase the caller asked for."""
        b = ir.IRBuilder(self.fn.entry_basic_block)
        if len(self.phases) == 1:
            b.branch(self.phases[0])
            return
        switch = b.switch(self.phase, self.phases[0])
        for i, block in enumerate(self.phases[1:], start=1):
            switch.add_case(u.i64(i), block)

    def check(self, ok, status: int) -> None:
        """Return `status` from the kernel unless the i1 `ok` holds (serial kernels only)."""
        assert not self.parallel, "a parallel kernel cannot fail"
        b = self.b
        fail = self.fn.append_basic_block("fail")
        cont = self.fn.append_basic_block("ok")
        b.cbranch(ok, cont, fail)
        b.position_at_end(fail)
        b.ret(ir.Constant(I32, status))
        b.position_at_end(cont)

    # ---- pointwise evaluation ------------------------------------------------------------------

    def value_at(self, n, space, groups, index, width: int = 1, active=None, bound=None, memo=None):
        """The value of node `n` at `index` (one entry per group of `space` dims), computing fused
        pointwise nodes in registers and loading everything else with broadcasting."""
        memo = {} if memo is None else memo
        bound = bound or {}
        b = self.b

        def value(m):
            if m in memo:
                return memo[m]
            if m in bound:
                v = bound[m]
            elif m in self.fused and not self.reads_memory(m):
                xs = [value(o) for o in self.g.operands(m)]
                v = POINTWISE[self.g.op(m)](b, xs, self.attrs_of(m))
            else:
                v = self._load(m, space, groups, index, width, active)
            memo[m] = v
            return v

        return value(n)

    def reads_memory(self, m) -> bool:
        """Is `m` loaded from memory by this kernel: not computed in it, or a fused slice (read at its
        place in its operand's storage)?"""
        return m not in self.fused or self.g.op(m) in READ_IN_PLACE

    def read_strides(self, m, space) -> list[int]:
        """Element strides of the memory read for `m` at indices of the broadcast `space`: its own
        row-major layout, or for a fused slice its operand's."""
        if m not in self.fused:
            return broadcast_strides(self.shape(m), space)
        shape = self.shape(m)
        layout = contiguous_strides(self.shape(self.g.operands(m)[0]))
        lead = len(space) - len(shape)
        return [0] * lead + [0 if d == 1 and s != 1 else st for d, s, st in zip(shape, space[lead:], layout)]

    def _read_base(self, m) -> tuple:
        """(storage node, element offset) where the memory read for `m` starts."""
        if m not in self.fused:
            return m, 0
        x = self.g.operands(m)[0]
        attrs = self.attrs_of(m)
        axis = attrs["axis"] % len(self.shape(x))
        return x, attrs["start"] * contiguous_strides(self.shape(x))[axis]

    def _load(self, m, space, groups, index, width, active):
        etype = ETYPES[self.dtype(m)]
        if self.g.op(m).is_a(CONSTANT) and math.prod(self.shape(m)) == 1:
            scalar = constant_value(self.g, m, self.mb.bindings).reshape(()).item()
            return const(etype if width == 1 else ir.VectorType(etype, width), scalar)
        strides = self.read_strides(m, space)
        source, base = self._read_base(m)
        terms = [(i, strides[grp[-1]]) for i, grp in zip(index, groups)]
        at = u.offset(self.b, terms, base)
        ptr = self.ptr(source)
        if width == 1:
            return u.load(self.b, ptr, at, etype)
        if terms[-1][1] == 0:
            return u.broadcast_load(self.b, ptr, at, width, etype)
        return u.load_vector(self.b, ptr, at, width, active)

    def emit_result(self, index, value, width: int = 1, active=None, space=None, groups=None) -> None:
        """Store the anchor's `value` at `index` of the output after applying the epilogue."""
        space = space or self.shape(self.kernel.output)
        groups = groups or [[d] for d in range(len(space))]
        if self.kernel.epilogue:
            value = self.value_at(self.kernel.output, space, groups, index, width, active, {self.anchor: value})
        at = u.offset(self.b, [(i, contiguous_strides(space)[grp[-1]]) for i, grp in zip(index, groups)])
        if width == 1:
            u.store(self.b, value, self.out, at)
        else:
            u.store_vector(self.b, value, self.out, at, active)

class _always:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
