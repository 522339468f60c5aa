"""The backend's driver: graph + symbol sizes -> an `Executable`, through the disk cache.

Stages (each a named function, each visible through `nnc compile --emit`):
fuse (graph -> kernel plan), build_module (plan -> LLVM IR + memory plan),
jit.optimize (O3 + vectorizers), jit.emit_object (machine code), then loading
the object code into this process.
"""

from __future__ import annotations

import time

from ..errors import NncError
from ..ir.types import TupleType, concrete
from . import cache, jit
from .codegen import ENTRY, build_module
from .executable import Executable
from .fusion import fuse
from .memory import plan_memory

SUPPORTED_DTYPES = ("float32", "int32")


def effective_targets(g, targets=None) -> tuple:
    """The requested targets (default: outputs, loss, updates) plus every state update."""
    chosen = list(targets) if targets is not None else g.roots()
    return tuple(dict.fromkeys(chosen + list(g.updates.values())))


def check_supported(g, targets, bindings: dict) -> None:
    for n in g.needed_for(targets):
        t = g.type_of(n)
        if isinstance(t, TupleType):   # its results are checked as the item nodes that read them
            continue
        if t.dtype not in SUPPORTED_DTYPES:
            raise NncError(f"the native backend computes in float32; {g.describe(n)} is {t.dtype}",
                           g.nodes[n].get("loc"), hint="use the reference interpreter for float64")
        missing = [d for d in t.shape if isinstance(d, str) and d not in bindings]
        if missing:
            raise NncError(f"no size given for the symbolic dim {missing[0]} of {g.describe(n)}",
                           hint=f"compile with bindings={{'{missing[0]}': N}}")
        if any(d < 1 for d in concrete(t.shape, bindings)):
            raise NncError(f"sizes must be at least 1, got {bindings}")


def lower_to_ir(g, bindings: dict, targets=None, threads: int = 1):
    """-> (kernel plan, LLVM module, memory plan): everything before LLVM runs."""
    targets = effective_targets(g, targets)
    check_supported(g, targets, bindings)
    plan = fuse(g, targets)
    module, mem = build_module(plan, bindings, jit.host().vector_width, threads)
    return plan, module, mem


def check_threads(threads) -> int:
    threads = 1 if threads is None else int(threads)
    if threads < 1:
        raise NncError(f"threads must be at least 1, got {threads}")
    return threads


def compile_graph(g, bindings: dict, targets=None, *, use_cache: bool = True, threads: int | None = 1) -> Executable:
    """Compile the nodes `targets` need (default: outputs, loss, updates) for these symbol sizes,
    to run on `threads` threads."""
    start = time.perf_counter()
    threads = check_threads(threads)
    bindings = {k: int(v) for k, v in bindings.items()}
    all_targets = effective_targets(g, targets)
    key = cache.cache_key(g, all_targets, bindings, jit.host(), threads)
    entry = cache.load(key) if use_cache else None
    if entry is not None:
        object_code, meta = entry
        check_supported(g, all_targets, bindings)
        plan = fuse(g, all_targets)
        mem = plan_memory(plan, bindings, {int(k): v for k, v in meta["scratch"].items()}, meta.get("sync", 0))
        cached = True
    else:
        plan, module, mem = lower_to_ir(g, bindings, targets, threads)
        object_code = jit.emit_object(jit.optimize(str(module)))
        if use_cache:
            cache.store(key, object_code, {"scratch": {str(k): v for k, v in mem_scratch(mem).items()},
                                           "sync": mem.sync.nbytes if mem.sync else 0})
        cached = False
    loaded = jit.Loaded(object_code)
    stats = {"kernels": len(plan.kernels), "primitive_ops": plan.primitive_ops,
             "arena_bytes": mem.arena_bytes, "param_bytes": mem.param_bytes,
             "compile_seconds": time.perf_counter() - start, "cached": cached}
    stats["threads"] = threads
    return Executable(plan, mem, bindings, loaded, loaded.address(ENTRY), stats, threads)


def mem_scratch(mem) -> dict:
    return {index: slot.nbytes for index, slot in mem.scratch.items()}


def compile_report(g, bindings: dict, emit: str) -> str:
    """What `nnc compile --emit` prints: the kernel plan ("graph"), optimized LLVM IR ("llvm"),
    assembly ("asm") or a summary of kernels, memory and compile time ("summary")."""
    start = time.perf_counter()
    plan, module, mem = lower_to_ir(g, bindings)
    if emit == "graph":
        return plan.describe()
    optimized = jit.optimize(str(module))
    if emit == "llvm":
        return str(optimized)
    if emit == "asm":
        return jit.emit_assembly(optimized)
    jit.emit_object(optimized)
    seconds = time.perf_counter() - start
    sizes = ", ".join(f"{k}={v}" for k, v in bindings.items())
    return "\n".join([
        f"target      {jit.host().description}",
        f"bindings    {sizes or 'none'}",
        f"kernels     {len(plan.kernels)} for {plan.primitive_ops} primitive ops",
        f"arena       {mem.arena_bytes:,} bytes",
        f"parameters  {mem.param_bytes:,} bytes",
        f"compile     {seconds:.2f} s (cold: fusion, codegen, O3, machine code)",
    ])
