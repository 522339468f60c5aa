"""Code generation: a kernel plan and a memory plan -> one LLVM module with one entry point.

The module holds one internal function per kernel and the entry

    i32 nnc_run(ptr arena, ptr state, ptr inputs, i64 seed)

    i32 nnc_run(ptr arena, ptr state, ptr inputs, i64 seed, ptr pool)

which first copies the batch's rows where the caller asks for it (batch_rows.py),
then calls the kernels in order with pointers into the arena, the state
buffer (parameters, constants) and the caller's input arrays (`inputs` is an
array of pointers), copies state updates into their parameters, and returns 0
or the non-zero status a kernel reported (a label out of range). Compiled for
T > 1 threads, `nnc_body` runs on every thread of `pool` (see threads.py) and
the threads claim the shares of each work unit: a parallel kernel has
SHARES_PER_THREAD · T shares (its generator splits its loops by share index),
each thread claiming from its own run of them first, a serial one has one, and
a kernel that calls `barrier()` is cut into phases, each a unit of its own.

Each kernel of the plan is emitted by its generator from the kernel table
(nnc/backend/lower_kernels.py), or as a pointwise loop, through a
`KernelContext` (nnc/backend/kernel_context.py).
"""

from __future__ import annotations

from llvmlite import ir

from . import batch_rows, llvmutil as u, threads as mt
from .fusion import fuse
from .irmath import I32, I64
from .kernel_context import KernelContext
from .kernels.pointwise import emit_pointwise
from .lower_kernels import KERNELS
from .memory import plan_memory

ENTRY = "nnc_run"
# 2, not 4: with 4, LeNet-5's 2-thread step was 3% slower, and 2% slower than the 1-thread build when `Pace` runs
# it on one thread (more partial sums to add, smaller GEMM blocks); late threads are covered by the claiming
SHARES_PER_THREAD = 2
PTR = u.PTR


class ModuleBuilder:
    """Emits the module for one compiled graph: the kernels first (they say how much scratch
    they need), then the memory plan, then the entry that calls them."""

    def __init__(self, plan, bindings: dict, width: int, threads: int = 1, module: ir.Module | None = None,
                 prefix: str = ""):
        self.plan = plan
        self.bindings = bindings
        self.width = width
        self.threads = threads
        # a parallel kernel is cut into more shares than threads, so that a thread that comes late
        # (or loses its core for a while) still finds work and the others do not wait for it
        self.shares = threads * SHARES_PER_THREAD if threads > 1 else 1
        self.module = module or ir.Module(name="nnc")
        self.prefix = prefix      # of the function names, for a subgraph emitted into an outer module
        self.scratch_bytes: dict = {}
        self.subgraphs = 0

    def build(self):
        calls = self._emit_kernels()
        gather = batch_rows.emit(self.module, len(self.plan.graph.inputs), self.prefix)
        sync = mt.unit_bytes(self.threads) * (1 + len(calls)) if self.threads > 1 else 0
        mem = plan_memory(self.plan, self.bindings, self.scratch_bytes, sync)
        body = self._emit_body(mem, calls, gather)
        self._emit_entry(mem, body)
        return self.module, mem

    def subgraph_function(self, g, targets, bindings: dict | None = None, external=()):
        """Emit the graph `g` (a loop's body) into this module as one function that one thread runs:
        i32 (arena, state, inputs, seed, tid, gen, pool), like nnc_body; -> (function, memory plan, plan).
        `bindings` may size its symbols differently (a share of the batch). Each of the targets `external`
        that a kernel stores (one per storage) is written where the caller's input table points after
        the inputs (`mem.external`), so the caller need not copy it out."""
        self.subgraphs += 1
        bindings = bindings or self.bindings
        plan = fuse(g, targets)
        sub = ModuleBuilder(plan, bindings, self.width, 1, self.module, f"{self.prefix}loop{self.subgraphs}_")
        calls = sub._emit_kernels()
        computed = {n for k in plan.kernels for n in k.stored}
        external = tuple(dict.fromkeys(plan.storage_of(t) for t in external if plan.storage_of(t) in computed))
        mem = plan_memory(plan, bindings, sub.scratch_bytes, external=external)
        return sub._emit_body(mem, calls), mem, plan

    def _emit_kernels(self) -> list:
        """One function per kernel; -> the work units: (kernel, function, storages, phase, shares)."""
        calls = []
        for k in self.plan.kernels:
            storages = list(dict.fromkeys(self.plan.storage_of(n) for n in (*k.stored, *k.inputs)))
            fn = ir.Function(self.module, ir.FunctionType(I32, [PTR] * (len(storages) + 1) + [I64, I64, I64]),
                             f"{self.prefix}k{k.index}_{k.kind}")
            fn.linkage = "internal"
            fn.attributes.add("nounwind")
            # optimised on its own, not again inlined into the entry: LeNet's step compiles in ~0.9 s instead
            # of ~1.2 s (CPU), and runs as fast (a call per kernel and step)
            fn.attributes.add("noinline")
            for a in fn.args[:len(storages) + 1]:
                a.add_attribute("noalias")
            scratch, seed, tid, phase = fn.args[-4:]
            kc = KernelContext(self, k, fn, dict(zip(storages, fn.args)), scratch, seed, tid, phase)
            self._emit_kernel(kc)
            if kc.scratch_bytes:
                self.scratch_bytes[k.index] = kc.scratch_bytes * self.shares
            shares = self.shares if kc.parallel else 1
            calls += [(k, fn, storages, phase, shares) for phase in range(len(kc.phases))]
        return calls

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

    def _emit_body(self, mem, calls, gather: ir.Function | None = None) -> ir.Function:
        """i32 nnc_body(arena, state, inputs, seed, tid, gen, pool): the work units in order, as thread `tid`
        in the step of generation `gen`; first, where given, the batch gather (nnc/backend/batch_rows.py)."""
        body = ir.Function(self.module, mt.BODY_TYPE, f"{self.prefix}nnc_body")
        body.linkage = "internal"
        regions = dict(zip(("arena", "state", "input"), body.args[:3]))
        seed, tid, gen, pool = body.args[3:]
        b = ir.IRBuilder(body.append_basic_block("entry"))

        def kernel_args(k, storages):
            args = [self.pointer(b, mem.slots[s], regions) for s in storages]
            scratch = mem.scratch.get(k.index)
            return args + [self.pointer(b, scratch, regions) if scratch else ir.Constant(PTR, None), seed]

        if self.threads == 1:
            if gather is not None:
                b.call(gather, [regions["input"], u.i64(0), u.i64(1)])
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
        sync = self.pointer(b, mem.sync, regions)

        unit_bytes = mt.unit_bytes(self.threads)

        def counter(unit: int, which: int):   # which: 0 the claim counters, 1 the done counter
            at = unit * unit_bytes + (which and unit_bytes - 64)
            return b.gep(sync, [u.i64(at)], inbounds=True, source_etype=ir.IntType(8))

        first = 0
        if gather is not None:   # unit 0: its rows cut into as many shares as a parallel kernel's
            mt.run_shares(b, pool, counter(0, 0), counter(0, 1), gen, self.shares,
                          lambda share: b.call(gather, [regions["input"], share, u.i64(self.shares)]),
                          stale, tid, self.threads)
            first = 1
        shares_of = [self.shares] * first + [call[4] for call in calls]
        for unit, (k, fn, storages, phase, shares) in enumerate(calls, start=first):
            if unit:
                mt.wait_done(b, pool, counter(unit - 1, 1), gen, shares_of[unit - 1], stale, failed)
            args = kernel_args(k, storages)
            mt.run_shares(b, pool, counter(unit, 0), counter(unit, 1), gen, shares,
                          lambda share, fn=fn, args=args, phase=phase: b.call(fn, args + [share, u.i64(phase)]),
                          stale, tid, self.threads if shares == self.shares else 1)
        mt.wait_done(b, pool, counter(len(shares_of) - 1, 1), gen, shares_of[-1], stale, failed)
        b.ret(ir.Constant(I32, 0))
        b.position_at_end(stale)
        b.ret(ir.Constant(I32, 0))
        b.position_at_end(failed)
        mt.step_failed(b, pool)
        return body

    def _emit_kernel(self, kc: KernelContext) -> None:
        if kc.anchor is None:
            emit_pointwise(kc)
        else:
            KERNELS[kc.g.op(kc.anchor)](kc)
        if not kc.b.block.is_terminated:
            kc.b.ret(ir.Constant(I32, 0))
        kc.dispatch_phases()

    @staticmethod
    def pointer(b, slot, regions):
        """A pointer to `slot` given the regions' base pointers ({"arena", "state", "input"})."""
        if slot.region == "input":
            return b.load(b.gep(regions["input"], [u.i64(slot.offset)], source_etype=PTR), typ=PTR)
        return b.gep(regions[slot.region], [u.i64(slot.offset)], inbounds=True, source_etype=ir.IntType(8))

    def _write_back_updates(self, b, mem, regions) -> None:
        g = self.plan.graph
        for name, n in g.updates.items():
            _, param_slot = mem.params[name]
            src = mem.slots[self.plan.storage_of(n)]
            if src == param_slot:
                continue
            u.memcpy(b, self.pointer(b, param_slot, regions), self.pointer(b, src, regions), param_slot.nbytes)


def build_module(plan, bindings: dict, width: int, threads: int = 1):
    """-> (the LLVM module, the memory plan its entry point assumes)."""
    return ModuleBuilder(plan, bindings, width, threads).build()

