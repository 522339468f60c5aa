"""Threads for the native code: a pool of workers that all run the same compiled step.

An executable compiled for T threads has an entry that, given a pool, publishes
its step in the pool (the body, its arguments and the step's generation), wakes
the T − 1 workers and runs the step itself as thread 0. Every thread walks the
same list of work units (a kernel, or one phase of a kernel that needs all of
its first phase done before its second): a parallel unit has 2 shares per
thread (GEMM column or row blocks, images, planes), a serial one a single share,
and the threads *claim* shares, first come first served, with atomic counters
per unit tagged with the step's generation. A parallel unit's shares are cut in
one run per thread, each with its own counter: a thread claims from its own run
first (so on time it gets the same shares, and their data in its cache, step
after step), then from the others'. A unit starts once every share of the unit
before it is done. So a thread that is late (woken late, or waiting for a core
on a busy machine) never holds the others up: whoever is there takes the work,
and the late thread finds the step finished and walks through it. A status a
kernel reports (a label out of range) is stored in the pool with the
generation, and every thread returns. The waiting, claiming and counting are
functions of the module that every unit calls (nnc_wait, nnc_claim,
nnc_count_done), not code copied into each unit.

A thread waiting for a unit to finish spins briefly, then sleeps on a futex
(the low word of the unit's done counter) that the thread finishing its last
share wakes: a waiter must not keep a core busy, since on a machine shared
with other jobs the thread it waits for (holding a share, descheduled) may be
queued for that very core, and an idle core is one the kernel's load balancer
hands to it at once. Where one thread is still faster (a share held by a
thread without a core stalls the unit), `Pace` runs the steps on the caller's
thread alone (SOLO: the workers sleep): while the machine's count of runnable
tasks shows other jobs wanting the cores (`Contention`), or when timed trials
find one thread faster, until a later trial finds all threads faster again.

The pool is memory shared with the workers, one cache line per field; each
executable keeps its unit counters in its arena. Workers are Python threads
that call `nnc_worker` once and stay in native code (ctypes releases the GIL):
they spin on the generation for a while after each step, then sleep on a
futex until the next one. The published step is a seqlock: a worker counts
itself in INSIDE, then reads the task's generation, the task, and the
generation again, and runs the body only if both reads agree (so never with
one step's body and another's arguments, nor with a generation that is not
the task's). Before an executable's code and memory are freed, `Pool.quiesce`
retires the published step and waits until INSIDE is 0. The pool is
process-wide per thread count; calls into it must not overlap (like
executables, it is not re-entrant).
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import functools
import os
import statistics
import threading
import time

import numpy as np
from llvmlite import ir
from llvmlite.ir import instructions

from . import jit, llvmutil as u
from .irmath import I32, I64

PTR = u.PTR
POOL_BYTES = 576
# GEN: the last published generation (the futex word); SLEEPING, INSIDE: how many workers are asleep,
# and inside a step (from before reading the task to after the body returns); WAITERS: how many threads
# sleep (or are about to) on a unit's done counter; SOLO: set by the caller (see Pace) when its steps
# run faster on its own thread than on all of them (a busy machine): workers sleep, and are not woken
GEN, SLEEPING, STOP, INSIDE, FAILED_GEN, STATUS, TASK, WAITERS, SOLO = (i * 64 for i in range(9))
TASK_FIELDS = ("gen", "body", "arena", "state", "inputs", "seed")   # 8 bytes each from TASK; gen 0: no task
SPIN_CYCLES = 4_000_000   # time-stamp counter ticks a worker spins after a step before it sleeps
                          # (~1.5 ms: longer than the Python work between two training steps)
WAIT_SPIN_CYCLES = 100_000     # a thread waiting for a unit to finish spins this long (~40 µs), then it
                               # sleeps on the unit's done counter (on a busy machine the thread it waits
                               # for may need that core)
WAIT_SLEEP_NS = 200_000        # each such sleep ends after at most this long: the thread checks again
                               # (a failed or newer step wakes no one)
SYS_FUTEX, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 202, 128, 129
WORKER, QUIESCE, STOP_ALL = "nnc_worker", "nnc_quiesce", "nnc_stop"
BODY_TYPE = ir.FunctionType(I32, [PTR, PTR, PTR, I64, I64, I32, PTR])  # arena, state, inputs, seed, tid, gen, pool


def field(b: ir.IRBuilder, pool, offset: int):
    return b.gep(pool, [u.i64(offset)], inbounds=True, source_etype=ir.IntType(8))


def store_atomic(b: ir.IRBuilder, value, ptr, align: int = 4) -> None:
    """A sequentially consistent store (llvmlite's own checks the pointee type opaque pointers lack)."""
    b._insert(instructions.StoreAtomicInstr(b.block, value, ptr, "seq_cst", align))


def _task_field(b: ir.IRBuilder, pool, name: str):
    return field(b, pool, TASK + 8 * TASK_FIELDS.index(name))


def _count(b: ir.IRBuilder, pool, offset: int, op: str) -> None:
    b.atomic_rmw(op, field(b, pool, offset), ir.Constant(I32, 1), "seq_cst")


def _pause(b: ir.IRBuilder) -> None:
    fn = b.module.globals.get("llvm.x86.sse2.pause")
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
    b.call(fn, [])


def _cycles(b: ir.IRBuilder) -> ir.Value:
    fn = b.module.globals.get("llvm.readcyclecounter")
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(I64, []), "llvm.readcyclecounter")
    return b.call(fn, [])


def _sched_yield(b: ir.IRBuilder) -> None:
    fn = b.module.globals.get("sched_yield")
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(I32, []), "sched_yield")
    b.call(fn, [])


def _futex(b: ir.IRBuilder, addr, op: int, value, timeout=None) -> None:
    fn = b.module.globals.get("syscall")
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
    b.call(fn, [u.i64(SYS_FUTEX), addr, ir.Constant(I32, op), value, timeout or ir.Constant(PTR, None)])


def _timespec(b: ir.IRBuilder, nanoseconds: int):
    """A struct timespec {i64 seconds, i64 nanoseconds} of `nanoseconds` (< 1 s) in the entry block."""
    ts = u.entry_alloca(b, ir.ArrayType(I64, 2), "timeout")
    for i, value in enumerate((0, nanoseconds)):
        b.store(u.i64(value), b.gep(ts, [ir.Constant(I32, 0), ir.Constant(I32, i)], inbounds=True))
    return ts


def emit_launch(b: ir.IRBuilder, pool, body, args) -> ir.Value:
    """In the entry: publish the step (body and its arguments) and wake the workers; -> the new generation.

    The task is written as a seqlock (every access seq_cst): its generation set to 0, the fields, then
    the generation, all before GEN moves, so a worker that sees the new GEN finds the whole task."""
    gen = b.add(b.load_atomic(field(b, pool, GEN), "seq_cst", 4, typ=I32), ir.Constant(I32, 1))  # only we write it
    store_atomic(b, ir.Constant(I32, 0), _task_field(b, pool, "gen"))
    for name, value in zip(TASK_FIELDS[1:], [body, *args]):
        store_atomic(b, value, _task_field(b, pool, name), 8)
    store_atomic(b, gen, _task_field(b, pool, "gen"))
    store_atomic(b, gen, field(b, pool, GEN))
    # Dekker with the worker's sleep path: GEN is stored before SLEEPING is read and a worker counts
    # itself in SLEEPING before it reads GEN, so either we see it and wake it or it sees the new GEN
    sleeping = b.load_atomic(field(b, pool, SLEEPING), "seq_cst", 4, typ=I32)
    solo = b.load_atomic(field(b, pool, SOLO), "monotonic", 4, typ=I32)
    fn = b.function
    wake = fn.append_basic_block("wake")
    go = fn.append_basic_block("go")
    zero = ir.Constant(I32, 0)
    b.cbranch(b.and_(b.icmp_unsigned("!=", sleeping, zero), b.icmp_unsigned("==", solo, zero)), wake, go)
    b.position_at_end(wake)
    _futex(b, field(b, pool, GEN), FUTEX_WAKE_PRIVATE, ir.Constant(I32, 2 ** 31 - 1))
    b.branch(go)
    b.position_at_end(go)
    return gen


def fail(b: ir.IRBuilder, pool, gen, status) -> None:
    """A kernel of the step of generation `gen` reported `status`: record it for every thread."""
    store_atomic(b, status, field(b, pool, STATUS))
    store_atomic(b, gen, field(b, pool, FAILED_GEN))


def _pack(b: ir.IRBuilder, gen, count) -> ir.Value:
    """A unit counter: the step's generation in the high 32 bits, a count in the low 32."""
    return b.or_(b.shl(b.zext(gen, I64), u.i64(32)), b.zext(count, I64) if count.type == I32 else count)


def _unpack(b: ir.IRBuilder, value):
    return b.trunc(b.lshr(value, u.i64(32)), I32), b.trunc(value, I32)


def _atomic_i64(b: ir.IRBuilder, ptr) -> ir.Value:
    return b.load_atomic(ptr, "seq_cst", 8, typ=I64)


WAIT, CLAIM, COUNT = "nnc_wait", "nnc_claim", "nnc_count_done"   # a module's sync functions (emitted once)
DONE, STALE, FAILED = 0, 1, 2        # what nnc_wait says
NONE_LEFT, NEWER_STEP = -1, -2       # what nnc_claim says instead of a share


def _shared_function(module: ir.Module, name: str, ret, args: list, emit) -> ir.Function:
    """The module's function `name`, emitted by emit(builder, *arguments) on first use: the sync code of a
    step is called from every unit, not copied into each (compile time grows with code size)."""
    fn = module.globals.get(name)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(ret, args), name)
    fn.linkage = "internal"
    for attr in ("noinline", "nounwind"):
        fn.attributes.add(attr)
    emit(ir.IRBuilder(fn.append_basic_block("entry")), *fn.args)
    return fn


def wait_done(b: ir.IRBuilder, pool, done, gen, shares: int, stale, failed_step) -> None:
    """Wait until all `shares` of a unit are done in the step `gen`; branch to `failed_step` if a
    kernel of this step failed, to `stale` if a newer step was published (a late worker)."""
    fn = _shared_function(b.module, WAIT, I32, [PTR, PTR, I32, I32], _emit_wait)
    said = b.call(fn, [pool, done, gen, ir.Constant(I32, shares)])
    go_on = b.function.append_basic_block("waited")
    switch = b.switch(said, go_on)
    switch.add_case(ir.Constant(I32, STALE), stale)
    switch.add_case(ir.Constant(I32, FAILED), failed_step)
    b.position_at_end(go_on)


def _emit_wait(b: ir.IRBuilder, pool, done, gen, shares) -> None:
    """i32 nnc_wait(pool, done, gen, shares): DONE, STALE or FAILED (see wait_done). Spins briefly, then
    sleeps on the done counter, woken by the thread that finishes the last share (nnc_count_done)."""
    fn = b.function
    since = _cycles(b)
    head = fn.append_basic_block("wait")
    check = fn.append_basic_block("wait.check")
    newer = fn.append_basic_block("wait.newer")
    pause = fn.append_basic_block("wait.pause")
    give = fn.append_basic_block("wait.sleep_or_not")
    done_block = fn.append_basic_block("wait.done")
    failed = fn.append_basic_block("wait.failed")
    stale = fn.append_basic_block("wait.stale")
    complete = _pack(b, gen, b.zext(shares, I64))
    b.branch(head)
    b.position_at_end(head)
    b.cbranch(b.icmp_unsigned("==", _atomic_i64(b, done), complete), done_block, check)
    b.position_at_end(check)
    bad = b.load_atomic(field(b, pool, FAILED_GEN), "seq_cst", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("==", bad, gen), failed, newer)
    b.position_at_end(newer)
    now = b.load_atomic(field(b, pool, GEN), "seq_cst", 4, typ=I32)
    go_on = fn.append_basic_block("wait.more")
    b.cbranch(b.icmp_unsigned("==", now, gen), go_on, stale)
    b.position_at_end(go_on)
    spun = b.sub(_cycles(b), since)
    b.cbranch(b.icmp_signed("<", spun, u.i64(WAIT_SPIN_CYCLES)), pause, give)
    b.position_at_end(pause)
    _pause(b)
    b.branch(head)
    b.position_at_end(give)
    # Dekker with the wake in nnc_count_done: we count ourselves in WAITERS before we read the counter
    # again, the last share's thread moves the counter before it reads WAITERS
    _count(b, pool, WAITERS, "add")
    seen = _atomic_i64(b, done)
    sleep = fn.append_basic_block("wait.sleep")
    awake = fn.append_basic_block("wait.awake")
    b.cbranch(b.icmp_unsigned("==", seen, complete), awake, sleep)
    b.position_at_end(sleep)
    _futex(b, done, FUTEX_WAIT_PRIVATE, b.trunc(seen, I32), _timespec(b, WAIT_SLEEP_NS))
    b.branch(awake)
    b.position_at_end(awake)
    _count(b, pool, WAITERS, "sub")
    b.branch(head)
    for block, said in ((done_block, DONE), (failed, FAILED), (stale, STALE)):
        b.position_at_end(block)
        b.ret(ir.Constant(I32, said))


def unit_bytes(threads: int) -> int:
    """A work unit's counters in the arena: a claim counter per run of shares (8 bytes each), then on a
    line of its own the done counter."""
    return 64 * (1 + -(-8 * threads // 64))


def run_shares(b: ir.IRBuilder, pool, claims, done, gen, shares: int, run, stale, tid=None, runs: int = 1) -> None:
    """Claim shares of a unit in the step `gen` until none is left, calling run(share: i64) -> i32
    status for each and counting it done; a non-zero status is recorded and returned.

    With `runs` > 1 the shares are cut into that many runs of consecutive shares, each with its claim
    counter (8 bytes apart from `claims`), and thread `tid` claims from run `tid` first, then from the
    runs after it (wrapping around): on time, a thread gets the same shares step after step and finds
    their data (a GEMM's column panel, its rows of the result) in its own cache; late, its shares are
    still taken by the others."""
    fn = b.function
    claim = _shared_function(b.module, CLAIM, I64, [PTR, I32, I32, I64, I64], _emit_claim)
    count = _shared_function(b.module, COUNT, ir.VoidType(), [PTR, PTR, I32, I32], _emit_count_done)
    head = fn.append_basic_block("claim")
    got = fn.append_basic_block("claim.got")
    not_got = fn.append_basic_block("claim.none")
    after = fn.append_basic_block("claim.none_left")
    b.branch(head)
    b.position_at_end(head)
    share = b.call(claim, [claims, gen, ir.Constant(I32, shares // runs), tid if runs > 1 else u.i64(0), u.i64(runs)])
    b.cbranch(b.icmp_signed(">=", share, u.i64(0)), got, not_got)
    b.position_at_end(not_got)
    b.cbranch(b.icmp_signed("==", share, u.i64(NEWER_STEP)), stale, after)
    b.position_at_end(got)
    status = run(share)
    count_done = fn.append_basic_block("claim.count")
    failed_here = fn.append_basic_block("claim.failed")
    b.cbranch(b.icmp_signed("!=", status, ir.Constant(I32, 0)), failed_here, count_done)
    b.position_at_end(failed_here)
    fail(b, pool, gen, status)
    b.ret(status)
    b.position_at_end(count_done)
    b.call(count, [pool, done, gen, ir.Constant(I32, shares)])
    b.branch(head)
    b.position_at_end(after)


def _emit_claim(b: ir.IRBuilder, claims, gen, per, tid, runs) -> None:
    """i64 nnc_claim(claims, gen, per, tid, runs): a share of the step `gen` no thread has claimed, taken
    from run `tid` first, then from the runs after it (each `per` shares, its counter 8 bytes after the
    last); NONE_LEFT, or NEWER_STEP when a newer step has claimed from a counter (a late thread)."""
    fn = b.function
    entry = b.block
    visit_head = fn.append_basic_block("run")
    visit_body = fn.append_basic_block("run.body")
    none_left = fn.append_basic_block("none_left")
    newer = fn.append_basic_block("newer")
    b.branch(visit_head)
    b.position_at_end(visit_head)
    visit = b.phi(I64, "visit")
    visit.add_incoming(u.i64(0), entry)
    b.cbranch(b.icmp_unsigned("<", visit, runs), visit_body, none_left)
    b.position_at_end(visit_body)
    which = b.urem(b.add(tid, visit), runs)
    claim = b.gep(claims, [b.mul(which, u.i64(8))], inbounds=True, source_etype=ir.IntType(8))
    head = fn.append_basic_block("claim")
    fresh = fn.append_basic_block("claim.first")
    current = fn.append_basic_block("claim.next")
    attempt = fn.append_basic_block("claim.try")
    exhausted = fn.append_basic_block("claim.run_done")
    b.branch(head)
    b.position_at_end(head)
    seen = _atomic_i64(b, claim)
    seen_gen, seen_count = _unpack(b, seen)
    ahead = b.sub(seen_gen, gen)
    older = fn.append_basic_block("claim.older_or_same")
    b.cbranch(b.icmp_signed(">", ahead, ir.Constant(I32, 0)), newer, older)
    b.position_at_end(older)
    b.cbranch(b.icmp_signed("<", ahead, ir.Constant(I32, 0)), fresh, current)
    b.position_at_end(fresh)
    b.branch(attempt)
    b.position_at_end(current)
    b.cbranch(b.icmp_unsigned("<", seen_count, per), attempt, exhausted)
    b.position_at_end(attempt)
    share = b.phi(I32, "share")
    share.add_incoming(ir.Constant(I32, 0), fresh)
    share.add_incoming(seen_count, current)
    want = _pack(b, gen, b.add(share, ir.Constant(I32, 1)))
    swapped = b.extract_value(b.cmpxchg(claim, seen, want, "seq_cst", "seq_cst"), 1)
    got = fn.append_basic_block("claim.got")
    b.cbranch(swapped, got, head)
    b.position_at_end(got)
    b.ret(b.add(b.mul(which, b.zext(per, I64)), b.zext(share, I64)))
    b.position_at_end(exhausted)
    visit.add_incoming(b.add(visit, u.i64(1)), exhausted)
    b.branch(visit_head)
    b.position_at_end(none_left)
    b.ret(u.i64(NONE_LEFT))
    b.position_at_end(newer)
    b.ret(u.i64(NEWER_STEP))


def _emit_count_done(b: ir.IRBuilder, pool, done, gen, shares) -> None:
    """void nnc_count_done(pool, done, gen, shares): one more share of the unit is done in the step `gen`;
    the thread that finishes the last one wakes the threads asleep on the counter (see nnc_wait)."""
    fn = b.function
    mark = fn.append_basic_block("done.add")
    b.branch(mark)
    b.position_at_end(mark)
    old = _atomic_i64(b, done)
    old_gen, _ = _unpack(b, old)
    bumped = b.select(b.icmp_unsigned("==", old_gen, gen), b.add(old, u.i64(1)), _pack(b, gen, u.i64(1)))
    counted = fn.append_basic_block("done.counted")
    b.cbranch(b.extract_value(b.cmpxchg(done, old, bumped, "seq_cst", "seq_cst"), 1), counted, mark)
    b.position_at_end(counted)
    last = b.icmp_unsigned("==", bumped, _pack(b, gen, b.zext(shares, I64)))
    waiting = b.icmp_unsigned("!=", b.load_atomic(field(b, pool, WAITERS), "seq_cst", 4, typ=I32), ir.Constant(I32, 0))
    wake = fn.append_basic_block("done.wake")
    leave = fn.append_basic_block("done.leave")
    b.cbranch(b.and_(last, waiting), wake, leave)
    b.position_at_end(wake)
    _futex(b, done, FUTEX_WAKE_PRIVATE, ir.Constant(I32, 2 ** 31 - 1))
    b.branch(leave)
    b.position_at_end(leave)
    b.ret_void()


def step_failed(b: ir.IRBuilder, pool) -> None:
    """Return the status a kernel of this step recorded."""
    b.ret(b.load_atomic(field(b, pool, STATUS), "seq_cst", 4, typ=I32))


def worker_module() -> str:
    """void nnc_worker(ptr pool, i64 tid): run each published step as thread `tid` until told to stop;
    void nnc_quiesce(ptr pool) and void nnc_stop(ptr pool) (see Pool)."""
    module = ir.Module(name="nnc_threads")
    _emit_quiesce(module)
    _emit_stop(module)
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
    since = u.entry_alloca(b, I64, "since")
    b.store(_cycles(b), since)
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
    changed = b.icmp_unsigned("!=", now, seen)
    check_solo = fn.append_basic_block("check_solo")
    nap = fn.append_basic_block("nap")
    b.cbranch(changed, work, pause)
    b.position_at_end(check_solo)
    solo = b.load_atomic(field(b, pool, SOLO), "monotonic", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("!=", solo, ir.Constant(I32, 0)), nap, run)
    # the caller runs its steps alone: sleep until a step wakes us (one that is not solo), with the
    # generation seen now as the last one
    b.position_at_end(nap)
    _count(b, pool, SLEEPING, "add")
    nap_wait = fn.append_basic_block("nap.wait")
    nap_end = fn.append_basic_block("nap.end")
    unchanged = b.icmp_unsigned("==", b.load_atomic(gen_addr, "seq_cst", 4, typ=I32), now)
    b.cbranch(unchanged, nap_wait, nap_end)
    b.position_at_end(nap_wait)
    _futex(b, gen_addr, FUTEX_WAIT_PRIVATE, now)
    b.branch(nap_end)
    b.position_at_end(nap_end)
    _count(b, pool, SLEEPING, "sub")
    seen.add_incoming(now, b.block)
    b.branch(loop)
    b.position_at_end(pause)
    _pause(b)
    spun = b.sub(_cycles(b), b.load(since, typ=I64))
    b.cbranch(b.icmp_signed("<", spun, u.i64(SPIN_CYCLES)), spin, sleep)
    b.position_at_end(sleep)
    _count(b, pool, SLEEPING, "add")   # a count: one worker waking must not hide another asleep
    again = b.load_atomic(gen_addr, "seq_cst", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("==", again, seen), wait, woken)
    b.position_at_end(wait)
    _futex(b, gen_addr, FUTEX_WAIT_PRIVATE, seen)
    b.branch(woken)
    b.position_at_end(woken)
    _count(b, pool, SLEEPING, "sub")
    b.store(_cycles(b), since)
    b.branch(spin)
    b.position_at_end(work)
    halt = b.load_atomic(field(b, pool, STOP), "seq_cst", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("!=", halt, ir.Constant(I32, 0)), stop, check_solo)
    b.position_at_end(run)
    # Counted in INSIDE before the task is read (see nnc_quiesce); the body runs only if the task's
    # generation is the same before and after the fields are read (a seqlock, see emit_launch): a
    # worker that read one step's body may otherwise get the next step's arguments, or run a body
    # with another step's generation (and then do its whole step alone, after its caller returned).
    _count(b, pool, INSIDE, "add")
    gen = b.load_atomic(_task_field(b, pool, "gen"), "seq_cst", 4, typ=I32)
    types = {"body": BODY_TYPE.as_pointer(), "seed": I64}
    task = [b.load_atomic(_task_field(b, pool, name), "seq_cst", 8, typ=types.get(name, PTR))
            for name in TASK_FIELDS[1:]]
    again = b.load_atomic(_task_field(b, pool, "gen"), "seq_cst", 4, typ=I32)
    call = fn.append_basic_block("call")
    finish = fn.append_basic_block("finish")
    valid = b.and_(b.icmp_unsigned("!=", gen, ir.Constant(I32, 0)), b.icmp_unsigned("==", gen, again))
    b.cbranch(valid, call, finish)
    b.position_at_end(call)
    b.call(task[0], [*task[1:], tid, gen, pool])
    b.branch(finish)
    b.position_at_end(finish)
    _count(b, pool, INSIDE, "sub")   # seq_cst, so a release: the body's accesses come before it
    seen.add_incoming(now, b.block)
    b.branch(loop)
    b.position_at_end(stop)
    b.ret_void()
    return str(module)


def _emit_quiesce(module: ir.Module) -> None:
    """nnc_quiesce(pool): retire the published task, then wait until no worker is inside a step.

    Every access is seq_cst, so they fall in one total order. A worker adds itself to INSIDE before
    it reads the task's generation; we clear that generation before we read INSIDE. If the worker's
    increment comes first, we see it and wait for its decrement (after its body returned); if it comes
    after our read, its reads of the generation come after our clear and it finds no task."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR]), QUIESCE)
    pool = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    store_atomic(b, ir.Constant(I32, 0), _task_field(b, pool, "gen"))
    check = fn.append_basic_block("check")
    wait = fn.append_basic_block("wait")
    done = fn.append_basic_block("done")
    b.branch(check)
    b.position_at_end(check)
    inside = b.load_atomic(field(b, pool, INSIDE), "seq_cst", 4, typ=I32)
    b.cbranch(b.icmp_unsigned("==", inside, ir.Constant(I32, 0)), done, wait)
    b.position_at_end(wait)
    _sched_yield(b)
    b.branch(check)
    b.position_at_end(done)
    b.ret_void()


def _emit_stop(module: ir.Module) -> None:
    """nnc_stop(pool): set STOP, move GEN and wake every sleeper; each worker then returns."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR]), STOP_ALL)
    pool = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    store_atomic(b, ir.Constant(I32, 1), field(b, pool, STOP))
    b.atomic_rmw("add", field(b, pool, GEN), ir.Constant(I32, 1), "seq_cst")
    _futex(b, field(b, pool, GEN), FUTEX_WAKE_PRIVATE, ir.Constant(I32, 2 ** 31 - 1))
    b.ret_void()


class Pool:
    """`threads` − 1 worker threads parked in native code, and the memory they watch."""

    def __init__(self, threads: int):
        self.threads = threads
        self.memory = np.zeros(POOL_BYTES + 64, dtype=np.uint8)
        start = (-self.memory.ctypes.data) % 64
        self.memory = self.memory[start:start + POOL_BYTES]
        self.address = self.memory.ctypes.data
        self._solo = self.memory[SOLO:SOLO + 4].view(np.int32)
        self._loaded = jit.Loaded(jit.emit_object(jit.optimize(worker_module())))
        worker = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(self._loaded.address(WORKER))
        self._worker = worker
        # ctypes releases the GIL around these calls: quiesce may wait for a worker
        self._quiesce = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(self._loaded.address(QUIESCE))
        self._stop = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(self._loaded.address(STOP_ALL))
        self._threads = [threading.Thread(target=worker, args=(self.address, tid), daemon=True,
                                          name=f"nnc-worker-{tid}") for tid in range(1, threads)]
        for t in self._threads:
            t.start()

    @property
    def solo(self) -> bool:
        return bool(self._solo[0])

    @solo.setter
    def solo(self, value: bool) -> None:
        """The next steps run on the calling thread alone (the workers sleep), or on all threads."""
        self._solo[0] = int(value)

    def quiesce(self) -> None:
        """Retire the published step and wait until no worker is inside one (before the code and
        memory of an executable are freed)."""
        self._quiesce(self.address)

    def close(self) -> None:
        """Tell the workers to return and wait for them (at exit)."""
        self._stop(self.address)
        for t in self._threads:
            t.join(timeout=1.0)


LOADAVG = "/proc/loadavg"


def runnable_reader(path: str = LOADAVG):
    """A function giving the machine's runnable tasks now (the fourth field of /proc/loadavg, "2/345":
    the kernel's count of tasks running or waiting for a core, read in a few µs), or None where there
    is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None

    def runnable() -> int:
        return int(os.pread(fd, 128, 0).split()[3].split(b"/")[0])

    try:
        runnable()
    except (OSError, ValueError, IndexError):
        os.close(fd)
        return None
    return runnable


class Contention:
    """Whether other jobs want more of the machine's cores than our threads leave them, from the count
    of runnable tasks sampled right after a step: our caller and workers (still spinning) are then
    `threads` of them, or 1 when the step ran alone (the workers asleep), and the rest are others'.
    A worker of ours that has no core holds up every kernel it has a share of, so others wanting
    cores is reason enough to run alone; unlike timing a few steps each way it costs no slow steps
    to find out, and a busy process is seen within a few steps. The verdict is the majority of the
    last `WINDOW` samples, one every `EVERY` steps once the first `WINDOW` (one per step) are in, so a
    task that wakes for a moment changes nothing."""

    EVERY, WINDOW = 4, 8

    def __init__(self, threads: int, cores: int, runnable):
        # cores others may use without a clash (none when our threads outnumber the cores: the trials decide then)
        self.threads, self.spare = threads, max(cores - threads, 0)
        self.runnable = runnable
        self.samples: collections.deque = collections.deque(maxlen=self.WINDOW)
        self.countdown = 0
        self.busy = False

    def sample(self, solo: bool) -> None:
        """After a step that ran alone (`solo`) or on every thread."""
        if self.countdown:
            self.countdown -= 1
            return
        # every step until the window is full: a busy machine is seen after 5 steps, not 20 (one of LeNet's first
        # steps beside a busy process took 26 ms, a worker holding a share while it waited for a core)
        self.countdown = self.EVERY - 1 if len(self.samples) >= self.WINDOW - 1 else 0
        others = self.runnable() - (1 if solo else self.threads)
        self.samples.append(others > self.spare)
        self.busy = 2 * sum(self.samples) > self.WINDOW


@functools.cache
def _machine_runnable():
    """The process's one reader of /proc/loadavg (its file stays open), shared by every executable."""
    return runnable_reader()


def machine_contention(threads: int) -> Contention | None:
    """This machine's `Contention` for `threads` threads, or None where the runnable count is unknown."""
    runnable = _machine_runnable()
    return Contention(threads, os.cpu_count() or threads, runnable) if runnable else None


class Pace:
    """Whether an executable's steps run on all of the pool's threads or on the caller's alone.

    On a quiet machine all threads win; on one where other jobs keep cores busy a worker may hold a
    share of a kernel while it waits for a core, and one thread can be faster. While `contention`
    (where the machine tells its runnable tasks) sees other jobs wanting the cores, every step runs
    alone. Otherwise, now and then a trial: a few steps each way, timed, and the faster way is kept
    until the next trial (which also catches what the count cannot see, such as a container's CPU
    quota). Trials come every `period` steps, twice as far apart each time the choice stays (so a
    quiet machine pays little for them), back to `FIRST_PERIOD` when it changes."""

    FIRST_PERIOD, MAX_PERIOD, TRIAL = 64, 2048, 5

    def __init__(self, pool, clock=time.perf_counter, contention: Contention | None = None):
        self.pool = pool
        self.clock = clock
        self.contention = contention
        self.solo = False
        self.period = self.FIRST_PERIOD
        self.countdown = self.period
        self.trial: list = []   # [(solo, seconds)] of the current trial

    def call(self, entry, args) -> int:
        """entry(*args), one step, on the threads this pace chooses."""
        if self.contention is None:
            return self._timed(entry, args)
        if self.contention.busy:
            self.pool.solo = True
            status = entry(*args)
        else:
            status = self._timed(entry, args)
        self.contention.sample(self.pool.solo)
        return status

    def _timed(self, entry, args) -> int:
        """A step run the way the trials chose."""
        if self.countdown:
            self.countdown -= 1
            self.pool.solo = self.solo
            return entry(*args)
        # a trial: the way we run now first (its workers are awake), then the other; the medians decide
        solo = self.solo if len(self.trial) < self.TRIAL else not self.solo
        self.pool.solo = solo
        start = self.clock()
        status = entry(*args)
        self.trial.append((solo, self.clock() - start))
        if len(self.trial) == 2 * self.TRIAL:
            seconds = {way: statistics.median(t for s, t in self.trial if s == way) for way in (False, True)}
            best = seconds[True] < seconds[False]
            self.period = min(2 * self.period, self.MAX_PERIOD) if best == self.solo else self.FIRST_PERIOD
            self.solo, self.countdown, self.trial = best, self.period, []
        return status


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
