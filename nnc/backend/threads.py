"""Threads for the native code: a pool of workers that all run the same compiled step (SPMD).

An executable compiled for T threads has an entry that, given a pool, publishes
its arguments in the pool, wakes the T − 1 workers and runs the step itself as
thread 0. Every thread walks the same list of kernels: a parallel kernel splits
its outermost loop (GEMM column or row blocks, images, planes) by thread id, a
serial kernel runs on thread 0 alone, and a barrier separates kernels wherever
one thread may read what another wrote. A status a serial kernel reports (a
label out of range) is stored in the pool with the step's generation, and
every thread returns at the next barrier, so the barrier count stays the same.

The pool is 704 bytes of memory shared with the workers, one cache line per
field. Workers are Python threads that call `nnc_worker` once and stay in
native code (ctypes releases the GIL): they spin on the generation for a
while after each step, then sleep on a futex until the next one. The pool is
process-wide per thread count; calls into it must not overlap (like
executables, it is not re-entrant).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import threading

import numpy as np
from llvmlite import ir
from llvmlite.ir import instructions

from . import jit
from . import llvmutil as u
from .irmath import I32, I64

PTR = u.PTR
POOL_BYTES = 704
GEN, SLEEPING, STOP, EPISODE, ARRIVED, FAILED_GEN, STATUS, WAITING, DONE, TASK = (i * 64 for i in range(10))
TASK_FIELDS = ("body", "arena", "state", "inputs", "seed")   # 8 bytes each from TASK
SPIN = 20000          # pause instructions a worker spins before it sleeps (~ a few hundred microseconds)
BARRIER_SPIN = 4000   # and a thread at a barrier, then it yields its core this many times (on a busy
BARRIER_YIELDS = 200  # machine the thread it waits for may be waiting for a core), then it sleeps
SYS_FUTEX, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 202, 128, 129
WORKER = "nnc_worker"
BODY_TYPE = ir.FunctionType(I32, [PTR, PTR, PTR, I64, I64, PTR])  # arena, state, inputs, seed, tid, pool


def field(b: ir.IRBuilder, pool, offset: int):
    return b.gep(pool, [u.i64(offset)], inbounds=True, source_etype=ir.IntType(8))


def store_atomic(b: ir.IRBuilder, value, ptr) -> None:
    """A sequentially consistent store (llvmlite's own checks the pointee type opaque pointers lack)."""
    b._insert(instructions.StoreAtomicInstr(b.block, value, ptr, "seq_cst", 4))


def _pause(b: ir.IRBuilder) -> None:
    fn = b.module.globals.get("llvm.x86.sse2.pause")
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
    b.call(fn, [])


def _sched_yield(b: ir.IRBuilder) -> None:
    fn = b.module.globals.get("sched_yield")
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(I32, []), "sched_yield")
    b.call(fn, [])


def _futex(b: ir.IRBuilder, addr, op: int, value) -> None:
    fn = b.module.globals.get("syscall")
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
    b.call(fn, [u.i64(SYS_FUTEX), addr, ir.Constant(I32, op), value, ir.Constant(PTR, None)])


def _wait_until_changed(b: ir.IRBuilder, pool, addr, old, name: str) -> None:
    """Wait while the i32 at `addr` equals `old`."""
    _wait_while(b, pool, addr, lambda now: b.icmp_unsigned("==", now, old), name)


def _wait_while(b: ir.IRBuilder, pool, addr, waiting_for, name: str) -> None:
    """Wait while waiting_for(the i32 at `addr`) holds: spin with pause a while, then sleep on a
    futex, counted in WAITING so that whoever changes the value knows to wake the sleepers."""
    fn = b.function
    spins = u.entry_alloca(b, I32, f"{name}.spins")
    b.store(ir.Constant(I32, 0), spins)
    head = fn.append_basic_block(f"{name}.spin")
    wait = fn.append_basic_block(f"{name}.pause")
    sleep = fn.append_basic_block(f"{name}.sleep")
    done = fn.append_basic_block(f"{name}.done")
    b.branch(head)
    b.position_at_end(head)
    now = b.load_atomic(addr, "acquire", 4, typ=I32)
    b.cbranch(waiting_for(now), wait, done)
    b.position_at_end(wait)
    count = b.add(b.load(spins, typ=I32), ir.Constant(I32, 1))
    b.store(count, spins)
    spin = fn.append_basic_block(f"{name}.pause_more")
    give = fn.append_basic_block(f"{name}.yield")
    b.cbranch(b.icmp_unsigned("<", count, ir.Constant(I32, BARRIER_SPIN)), spin, give)
    b.position_at_end(spin)
    _pause(b)
    b.branch(head)
    b.position_at_end(give)
    yielding = fn.append_basic_block(f"{name}.yield_now")
    b.cbranch(b.icmp_unsigned("<", count, ir.Constant(I32, BARRIER_SPIN + BARRIER_YIELDS)), yielding, sleep)
    b.position_at_end(yielding)
    _sched_yield(b)
    b.branch(head)
    b.position_at_end(sleep)
    waiting = field(b, pool, WAITING)
    b.atomic_rmw("add", waiting, ir.Constant(I32, 1), "seq_cst")
    _futex(b, addr, FUTEX_WAIT_PRIVATE, now)   # returns at once if the value already changed
    b.atomic_rmw("sub", waiting, ir.Constant(I32, 1), "seq_cst")
    b.store(ir.Constant(I32, 0), spins)
    b.branch(head)
    b.position_at_end(done)


def wake_waiters(b: ir.IRBuilder, pool, addr) -> None:
    """After changing the i32 at `addr`: wake the threads sleeping on it, if any."""
    fn = b.function
    wake = fn.append_basic_block("wake")
    go = fn.append_basic_block("woke")
    waiting = b.load_atomic(field(b, pool, WAITING), "seq_cst", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("!=", waiting, ir.Constant(I32, 0)), wake, go)
    b.position_at_end(wake)
    _futex(b, addr, FUTEX_WAKE_PRIVATE, ir.Constant(I32, 2 ** 31 - 1))
    b.branch(go)
    b.position_at_end(go)


def emit_barrier(module: ir.Module, threads: int) -> ir.Function:
    """internal void nnc_barrier(ptr pool): wait until all `threads` threads arrive (episode counter)."""
    fn = module.globals.get("nnc_barrier")
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR]), "nnc_barrier")
    fn.linkage = "internal"
    pool = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    episode = b.load_atomic(field(b, pool, EPISODE), "acquire", 4, typ=I32)
    arrived = b.atomic_rmw("add", field(b, pool, ARRIVED), ir.Constant(I32, 1), "seq_cst")
    last = fn.append_basic_block("last")
    wait = fn.append_basic_block("wait")
    b.cbranch(b.icmp_unsigned("==", arrived, ir.Constant(I32, threads - 1)), last, wait)
    b.position_at_end(last)
    store_atomic(b, ir.Constant(I32, 0), field(b, pool, ARRIVED))
    store_atomic(b, b.add(episode, ir.Constant(I32, 1)), field(b, pool, EPISODE))
    wake_waiters(b, pool, field(b, pool, EPISODE))
    b.ret_void()
    b.position_at_end(wait)
    _wait_until_changed(b, pool, field(b, pool, EPISODE), episode, "episode")
    b.ret_void()
    return fn


def emit_launch(b: ir.IRBuilder, pool, body, args) -> ir.Value:
    """In the entry: publish the step (body and its arguments) and wake the workers; -> the new generation."""
    for i, value in enumerate([body, *args]):
        b.store(value, field(b, pool, TASK + 8 * i))
    gen = b.atomic_rmw("add", field(b, pool, GEN), ir.Constant(I32, 1), "seq_cst")
    sleeping = b.load_atomic(field(b, pool, SLEEPING), "seq_cst", 4, typ=I32)
    fn = b.function
    wake = fn.append_basic_block("wake")
    go = fn.append_basic_block("go")
    b.cbranch(b.icmp_unsigned("!=", sleeping, ir.Constant(I32, 0)), wake, go)
    b.position_at_end(wake)
    _futex(b, field(b, pool, GEN), FUTEX_WAKE_PRIVATE, ir.Constant(I32, 2 ** 31 - 1))
    b.branch(go)
    b.position_at_end(go)
    return b.add(gen, ir.Constant(I32, 1))


def wait_for_workers(b: ir.IRBuilder, pool, gen, threads: int) -> None:
    """In the entry, after the body: wait until every worker has left the step of generation `gen`
    (its code may be freed as soon as the entry returns)."""
    target = b.mul(gen, ir.Constant(I32, threads - 1))
    _wait_while(b, pool, field(b, pool, DONE), lambda now: b.icmp_unsigned("!=", now, target), "done")


def fail(b: ir.IRBuilder, pool, status) -> None:
    """Thread 0 after a kernel reported `status`: record it for this step's generation."""
    store_atomic(b, status, field(b, pool, STATUS))
    gen = b.load_atomic(field(b, pool, GEN), "seq_cst", 4, typ=I32)
    store_atomic(b, gen, field(b, pool, FAILED_GEN))


def failed(b: ir.IRBuilder, pool, gen) -> ir.Value:
    """i1: did a kernel of the step of generation `gen` fail (checked right after a barrier)?"""
    return b.icmp_unsigned("==", b.load_atomic(field(b, pool, FAILED_GEN), "seq_cst", 4, typ=I32), gen)


def status(b: ir.IRBuilder, pool) -> ir.Value:
    return b.load_atomic(field(b, pool, STATUS), "seq_cst", 4, typ=I32)


def worker_module() -> str:
    """void nnc_worker(ptr pool, i64 tid): run each published step as thread `tid` until told to stop."""
    module = ir.Module(name="nnc_threads")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I64]), WORKER)
    pool, tid = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    gen_addr = field(b, pool, GEN)
    first = ir.Constant(I32, 0)   # the pool starts at generation 0, before any worker runs
    entry = b.block
    loop = fn.append_basic_block("loop")
    b.branch(loop)
    b.position_at_end(loop)
    seen = b.phi(I32, "seen")
    seen.add_incoming(first, entry)
    spins = u.entry_alloca(b, I64, "spins")
    b.store(u.i64(0), spins)
    spin = fn.append_basic_block("spin")
    pause = fn.append_basic_block("pause")
    sleep = fn.append_basic_block("sleep")
    wait = fn.append_basic_block("futex_wait")
    woken = fn.append_basic_block("woken")
    work = fn.append_basic_block("work")
    run = fn.append_basic_block("run")
    stop = fn.append_basic_block("stop")
    b.branch(spin)
    b.position_at_end(spin)
    now = b.load_atomic(gen_addr, "acquire", 4, typ=I32)
    count = b.load(spins, typ=I64)
    b.store(b.add(count, u.i64(1)), spins)
    changed = b.icmp_unsigned("!=", now, seen)
    b.cbranch(changed, work, pause)
    b.position_at_end(pause)
    _pause(b)
    b.cbranch(b.icmp_signed("<", count, u.i64(SPIN)), spin, sleep)
    b.position_at_end(sleep)
    store_atomic(b, ir.Constant(I32, 1), field(b, pool, SLEEPING))
    again = b.load_atomic(gen_addr, "seq_cst", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("==", again, seen), wait, woken)
    b.position_at_end(wait)
    _futex(b, gen_addr, FUTEX_WAIT_PRIVATE, seen)
    b.branch(woken)
    b.position_at_end(woken)
    store_atomic(b, ir.Constant(I32, 0), field(b, pool, SLEEPING))
    b.store(u.i64(0), spins)
    b.branch(spin)
    b.position_at_end(work)
    halt = b.load_atomic(field(b, pool, STOP), "seq_cst", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("!=", halt, ir.Constant(I32, 0)), stop, run)
    b.position_at_end(run)
    body = b.load(field(b, pool, TASK), typ=BODY_TYPE.as_pointer())
    args = [b.load(field(b, pool, TASK + 8 * i), typ=I64 if name == "seed" else PTR)
            for i, name in enumerate(TASK_FIELDS) if name != "body"]
    b.call(body, [*args, tid, pool])
    b.atomic_rmw("add", field(b, pool, DONE), ir.Constant(I32, 1), "seq_cst")
    wake_waiters(b, pool, field(b, pool, DONE))
    seen.add_incoming(now, b.block)
    b.branch(loop)
    b.position_at_end(stop)
    b.ret_void()
    return str(module)


class Pool:
    """`threads` − 1 worker threads parked in native code, and the memory they watch."""

    def __init__(self, threads: int):
        self.threads = threads
        self.memory = np.zeros(POOL_BYTES + 64, dtype=np.uint8)
        start = (-self.memory.ctypes.data) % 64
        self.memory = self.memory[start:start + POOL_BYTES]
        self.address = self.memory.ctypes.data
        self._loaded = jit.Loaded(jit.emit_object(jit.optimize(worker_module())))
        worker = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(self._loaded.address(WORKER))
        self._worker = worker
        self._threads = [threading.Thread(target=worker, args=(self.address, tid), daemon=True,
                                          name=f"nnc-worker-{tid}") for tid in range(1, threads)]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        """Tell the workers to return and wait for them (at exit)."""
        self.memory[STOP:STOP + 4].view(np.int32)[0] = 1
        wake = ctypes.CDLL(None).syscall
        gen = self.memory[GEN:GEN + 4].view(np.int32)
        gen[0] += 1
        wake(ctypes.c_long(SYS_FUTEX), ctypes.c_void_p(self.address + GEN), ctypes.c_int(FUTEX_WAKE_PRIVATE),
             ctypes.c_int(2 ** 31 - 1), None)
        for t in self._threads:
            t.join(timeout=1.0)


_lock = threading.Lock()
_pools: dict[int, Pool] = {}


def pool(threads: int) -> Pool:
    """The process-wide pool for `threads` threads, started on first use."""
    with _lock:
        if threads not in _pools:
            _pools[threads] = Pool(threads)
        return _pools[threads]


@atexit.register
def _close_all() -> None:
    for p in _pools.values():
        p.close()


@functools.cache
def available_cores() -> int:
    import os
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
