"""Code generation: a kernel plan and a memory plan -> one LLVM module with one entry point.

The module holds one internal function per kernel and the entry

    i32 nnc_run(ptr arena, ptr state, ptr inputs, i64 seed)

    i32 nnc_run(ptr arena, ptr state, ptr inputs, i64 seed, ptr pool)

which calls the kernels in order with pointers into the arena, the state
buffer (parameters, constants) and the caller's input arrays (`inputs` is an
array of pointers), copies state updates into their parameters, and returns 0
or the non-zero status a kernel reported (a label out of range). Compiled for
T > 1 threads, `nnc_body` runs on every thread of `pool` (see threads.py) and
the threads claim the shares of each work unit: a parallel kernel has T shares
(its generator splits its loops by share index), a serial one has one, and a
kernel that calls `barrier()` is cut into phases, each a unit of its own.

`KernelContext` is what a kernel generator sees: its anchor, concrete shapes
and attributes, a pointer per value, and the pointwise evaluator that computes
fused prologue / epilogue nodes at any index, scalar or vector.
"""

from __future__ import annotations

import math

from llvmlite import ir

from ..errors import NncError
from ..ir.ops import get
from ..ir.types import concrete
from . import llvmutil as u
from . import threads as mt
from .fusion import POINTWISE
from .irmath import F32, I32, I64, const
from .memory import constant_value, plan_memory

ENTRY = "nnc_run"
SHARES_PER_THREAD = 4
STATUS_BAD_LABEL = 1
ETYPES = {"float32": F32, "int32": I32}
PTR = u.PTR


def concrete_attrs(attrs: dict, bindings: dict) -> dict:
    """The op attributes a kernel needs, symbolic dims replaced by their sizes."""
    out = {}
    for k, v in attrs.items():
        if k in ("type", "name", "init", "trainable", "value"):
            continue
        if isinstance(v, (tuple, list)) and any(isinstance(d, str) for d in v):
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
            elif m in self.fused:
                op = get(self.g.op(m))
                xs = [value(o) for o in self.g.operands(m)]
                v = op.lower(b, xs, self.attrs_of(m))
            else:
                v = self._load(m, space, groups, index, width, active)
            memo[m] = v
            return v

        return value(n)

    def _load(self, m, space, groups, index, width, active):
        etype = ETYPES[self.dtype(m)]
        if self.g.op(m) in ("const", "count") and math.prod(self.shape(m)) == 1:
            scalar = constant_value(self.g, m, self.mb.bindings).reshape(()).item()
            return const(etype if width == 1 else ir.VectorType(etype, width), scalar)
        strides = broadcast_strides(self.shape(m), space)
        terms = [(i, strides[grp[-1]]) for i, grp in zip(index, groups)]
        at = u.offset(self.b, terms)
        ptr = self.ptr(m)
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

    def finish_epilogue(self) -> None:
        """For anchors that wrote their raw result to the output: apply the epilogue in place
        (in a parallel kernel, after every thread is done, each on its share)."""
        if self.kernel.epilogue:
            from .kernels.pointwise import emit_pointwise
            if self.parallel:
                self.barrier()
            emit_pointwise(self, reads_output=True, split=self.parallel)


class _always:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class ModuleBuilder:
    """Emits the module for one compiled graph: the kernels first (they say how much scratch
    they need), then the memory plan, then the entry that calls them."""

    def __init__(self, plan, bindings: dict, width: int, threads: int = 1):
        self.plan = plan
        self.bindings = bindings
        self.width = width
        self.threads = threads
        # a parallel kernel is cut into more shares than threads, so that a thread that comes late
        # (or loses its core for a while) still finds work and the others do not wait for it
        self.shares = threads * SHARES_PER_THREAD if threads > 1 else 1
        self.module = ir.Module(name="nnc")
        self.scratch_bytes: dict = {}

    def build(self):
        calls = []
        for k in self.plan.kernels:
            storages = list(dict.fromkeys(self.plan.storage_of(n) for n in (k.output, *k.inputs)))
            fn = ir.Function(self.module, ir.FunctionType(I32, [PTR] * (len(storages) + 1) + [I64, I64, I64]),
                             f"k{k.index}_{k.kind}")
            fn.linkage = "internal"
            fn.attributes.add("nounwind")
            for a in fn.args[:len(storages) + 1]:
                a.add_attribute("noalias")
            scratch, seed, tid, phase = fn.args[-4:]
            kc = KernelContext(self, k, fn, dict(zip(storages, fn.args)), scratch, seed, tid, phase)
            self._emit_kernel(kc)
            if kc.scratch_bytes:
                self.scratch_bytes[k.index] = kc.scratch_bytes * self.shares
            shares = self.shares if kc.parallel else 1
            calls += [(k, fn, storages, phase, shares) for phase in range(len(kc.phases))]
        sync = mt.UNIT_BYTES * len(calls) if self.threads > 1 else 0
        mem = plan_memory(self.plan, self.bindings, self.scratch_bytes, sync)
        body = self._emit_body(mem, calls)
        self._emit_entry(mem, body)
        return self.module, mem

    def _emit_entry(self, mem, body) -> None:
        entry = ir.Function(self.module, ir.FunctionType(I32, [PTR, PTR, PTR, I64, PTR]), ENTRY)
        regions = dict(zip(("arena", "state", "input"), entry.args[:3]))
        args, pool = list(entry.args[:4]), entry.args[4]
        b = ir.IRBuilder(entry.append_basic_block("entry"))
        gen = mt.emit_launch(b, pool, body, args) if self.threads > 1 else ir.Constant(I32, 0)
        status = b.call(body, args + [u.i64(0), gen, pool])
        failed = entry.append_basic_block("failed")
        ok = entry.append_basic_block("ok")
        b.cbranch(b.icmp_signed("!=", status, ir.Constant(I32, 0)), failed, ok)
        b.position_at_end(failed)
        b.ret(status)
        b.position_at_end(ok)
        self._write_back_updates(b, mem, regions)
        b.ret(ir.Constant(I32, 0))

    def _emit_body(self, mem, calls) -> ir.Function:
        """i32 nnc_body(arena, state, inputs, seed, tid, gen, pool): the work units in order, as thread `tid`
        in the step of generation `gen`."""
        body = ir.Function(self.module, mt.BODY_TYPE, "nnc_body")
        body.linkage = "internal"
        regions = dict(zip(("arena", "state", "input"), body.args[:3]))
        seed, tid, gen, pool = body.args[3:]
        b = ir.IRBuilder(body.append_basic_block("entry"))

        def kernel_args(k, storages):
            args = [self._pointer(b, mem.slots[s], regions) for s in storages]
            scratch = mem.scratch.get(k.index)
            return args + [self._pointer(b, scratch, regions) if scratch else ir.Constant(PTR, None), seed]

        if self.threads == 1:
            for k, fn, storages, phase, _ in calls:
                status = b.call(fn, kernel_args(k, storages) + [u.i64(0), u.i64(phase)])
                failed = body.append_basic_block(f"k{k.index}.failed")
                ok = body.append_basic_block(f"k{k.index}.ok")
                b.cbranch(b.icmp_signed("!=", status, ir.Constant(I32, 0)), failed, ok)
                b.position_at_end(failed)
                b.ret(status)
                b.position_at_end(ok)
            b.ret(ir.Constant(I32, 0))
            return body

        stale = body.append_basic_block("stale")          # a newer step was published: leave this one
        failed = body.append_basic_block("step_failed")   # a kernel of this step failed
        sync = self._pointer(b, mem.sync, regions)

        def counter(unit: int, which: int):
            return b.gep(sync, [u.i64(unit * mt.UNIT_BYTES + which * 64)], inbounds=True, source_etype=ir.IntType(8))

        for unit, (k, fn, storages, phase, shares) in enumerate(calls):
            if unit:
                mt.wait_done(b, pool, counter(unit - 1, 1), gen, calls[unit - 1][4], stale, failed)
            args = kernel_args(k, storages)
            mt.run_shares(b, pool, counter(unit, 0), counter(unit, 1), gen, shares,
                          lambda share, fn=fn, args=args, phase=phase: b.call(fn, args + [share, u.i64(phase)]),
                          stale)
        mt.wait_done(b, pool, counter(len(calls) - 1, 1), gen, calls[-1][4], stale, failed)
        b.ret(ir.Constant(I32, 0))
        b.position_at_end(stale)
        b.ret(ir.Constant(I32, 0))
        b.position_at_end(failed)
        mt.step_failed(b, pool)
        return body

    def _emit_kernel(self, kc: KernelContext) -> None:
        k = kc.kernel
        if k.kind == POINTWISE:
            from .kernels.pointwise import emit_pointwise
            emit_pointwise(kc)
        else:
            op = get(k.kind)
            if op.lower is None:
                raise NncError(f"the native backend cannot compile {k.kind} yet",
                               hint="run this model with --backend reference")
            op.lower(kc)
        if not kc.b.block.is_terminated:
            kc.b.ret(ir.Constant(I32, 0))
        kc.dispatch_phases()

    @staticmethod
    def _pointer(b, slot, regions):
        if slot.region == "input":
            return b.load(b.gep(regions["input"], [u.i64(slot.offset)], source_etype=PTR), typ=PTR)
        return b.gep(regions[slot.region], [u.i64(slot.offset)], inbounds=True, source_etype=ir.IntType(8))

    def _write_back_updates(self, b, mem, regions) -> None:
        g = self.plan.graph
        for name, n in g.graph["updates"].items():
            _, param_slot = mem.params[name]
            src = mem.slots[self.plan.storage_of(n)]
            if src == param_slot:
                continue
            memcpy = self.module.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
                self.module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, ir.IntType(1)]), "llvm.memcpy.p0.p0.i64")
            b.call(memcpy, [self._pointer(b, param_slot, regions), self._pointer(b, src, regions),
                            u.i64(param_slot.nbytes), ir.Constant(ir.IntType(1), 0)])


def build_module(plan, bindings: dict, width: int, threads: int = 1):
    """-> (the LLVM module, the memory plan its entry point assumes)."""
    return ModuleBuilder(plan, bindings, width, threads).build()

