"""This machine's float32 FMA peak, per core and with every thread at once: the yardstick for nnc's kernels.

    .venv/bin/python bench/fma_peak.py              # 1 thread, then one per core
    .venv/bin/python bench/fma_peak.py --threads 2

A loop of 12 independent chains of fused multiply-adds on the widest vectors the host has (enough chains
to cover the FMA latency on the CPUs we know), compiled with nnc's LLVM settings, run by each thread for
about 0.2 s. Prints GFLOP/s by the wall clock and per CPU-second (the second is what a core gives when it
runs: on a machine shared with other jobs, the first drops and the second does not).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import threading
import time

from llvmlite import ir

CHAINS = 12
ITERATIONS = 20_000_000


def peak_function(width: int) -> str:
    """float fma_loop(i64 n): CHAINS chains of n FMAs each on <width x float>, their lanes summed."""
    f32 = ir.FloatType()
    vec = ir.VectorType(f32, width)
    module = ir.Module(name="fma_peak")
    fma = ir.Function(module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{width}f32")
    fn = ir.Function(module, ir.FunctionType(f32, [ir.IntType(64)]), "fma_loop")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    entry, loop, done = b.block, fn.append_basic_block("loop"), fn.append_basic_block("done")
    x = ir.Constant(vec, [1.0000001] * width)
    y = ir.Constant(vec, [0.9999999] * width)
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(ir.IntType(64))
    i.add_incoming(ir.Constant(ir.IntType(64), 0), entry)
    accs = []
    for c in range(CHAINS):
        acc = b.phi(vec)
        acc.add_incoming(ir.Constant(vec, [float(c)] * width), entry)
        accs.append(acc)
    nxt = [b.call(fma, [acc, x, y]) for acc in accs]
    for acc, new in zip(accs, nxt):
        acc.add_incoming(new, loop)
    i_next = b.add(i, ir.Constant(ir.IntType(64), 1))
    i.add_incoming(i_next, loop)
    b.cbranch(b.icmp_signed("<", i_next, fn.args[0]), loop, done)
    b.position_at_end(done)
    total = nxt[0]
    for new in nxt[1:]:
        total = b.fadd(total, new)
    lanes = [b.extract_element(total, ir.Constant(ir.IntType(32), k)) for k in range(width)]
    s = lanes[0]
    for lane in lanes[1:]:
        s = b.fadd(s, lane)
    b.ret(s)
    return str(module)


def measure(threads: int) -> tuple[float, float]:
    """(GFLOP/s by the wall clock, GFLOP/s per CPU-second) with `threads` threads running the loop."""
    from nnc.backend import jit

    width = jit.host().vector_width
    loaded = jit.Loaded(jit.emit_object(jit.optimize(peak_function(width))))
    loop = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64)(loaded.address("fma_loop"))   # releases the GIL
    loop(1000)
    workers = [threading.Thread(target=loop, args=(ITERATIONS,)) for _ in range(threads)]
    start, cpu = time.perf_counter(), time.process_time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    flops = 2 * CHAINS * width * ITERATIONS * threads
    return flops / wall / 1e9, flops / cpu / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, nargs="*", default=[1, len(os.sched_getaffinity(0))])
    p.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    args = p.parse_args()
    for threads in dict.fromkeys(args.threads):
        runs = [measure(threads) for _ in range(args.rounds)]
        wall, per_cpu = max(r[0] for r in runs), max(r[1] for r in runs)
        print(f"{threads} thread(s): {wall:.1f} GFLOP/s (wall clock), {per_cpu:.1f} GFLOP/s per CPU-second")


if __name__ == "__main__":
    main()
