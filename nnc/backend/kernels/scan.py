"""The scan kernel: a loop over time that calls the body graph, compiled once, at every step.

The body (nnc/ir/ops/control.py) is compiled into the same module as a
function of its own (`ModuleBuilder.subgraph_function`): its kernels, its
memory plan (its arena lives in this kernel's scratch; its constants in a
global of the module) and an input table of pointers. Each step points the
body's inputs at the carries (the initial value, then the history's step
before), one time step of each sequence and the constants, runs the body,
then copies the new carries and per-step outputs into their stacked results
and adds the sums. Compile time and code size do not depend on the number of
steps.

Threads split the batch: when every row of the body's batch-shaped values
depends only on the same row of its inputs (`rows_independent`: no sum over
the batch, no op along its axis), the body is compiled for a part of the
batch and each thread runs the whole loop on its rows. Otherwise the loop
runs on one thread.
"""

from __future__ import annotations

import math

from llvmlite import ir

from ...ir import ops
from ...ir.ops import ELEMENTWISE, EXPAND, LEAF, NORMALIZE, REDUCE, VIEW
from ...ir.types import concrete
from .. import llvmutil as u
from ..irmath import F32, I32
from ..memory import nbytes

PTR = u.PTR


def emit_scan(kc) -> None:
    g, b, scan = kc.g, kc.b, kc.anchor
    a = kc.attrs_of(scan)
    body, length, reverse = a["body"], a["length"], a["reverse"]
    carry_in, carry_out, seq_in, const_in = a["carry_in"], a["carry_out"], a["seq_in"], a["const_in"]
    ys, accs = a["ys"], a["accs"]
    n_c, n_s = len(carry_in), len(seq_in)
    outputs = [body.outputs[name] for name in (*carry_out, *ys, *accs)]
    symbol = _batch_symbol(body, carry_in)
    bindings = kc.mb.bindings
    parts = _parts(kc, body, symbol, accs)
    if parts > 1:
        bindings = {**bindings, symbol: bindings[symbol] // parts}
    written = [body.outputs[name] for name in (*carry_out, *ys)]
    fn, mem, plan = kc.mb.subgraph_function(body, outputs, bindings, external=written)
    result_types = g.type_of(scan).types
    result_bytes = [nbytes(concrete(t.shape, kc.mb.bindings), t.dtype) for t in result_types]

    def part_bytes(t):   # the bytes of one step of a body value, for this part of the batch
        return nbytes(concrete(t.shape, bindings), t.dtype)

    # every result's buffer: its item node's storage, or scratch when nothing reads it (then shared by all
    # parts; each writes its own rows)
    stored = {g.nodes[r]["attrs"]["index"]: r for r in kc.kernel.results}
    missing = [i for i in range(len(result_types)) if i not in stored]
    offsets, total = {}, _aligned(mem.arena_bytes)
    for i in missing:
        offsets[i] = total
        total += _aligned(result_bytes[i])
    scratch = kc.request_scratch(max(total, 64))
    shared = kc.thread_scratch(0)   # the results nothing reads: one buffer, written by every part
    results = [kc.ptr(stored[i]) if i in stored else u.byte_offset(b, shared, offsets[i])
               for i in range(len(result_types))]
    state = _constants(kc, mem)
    table = _pointer_array(b, max(len(mem.inputs) + len(mem.external), 1))
    operand = [kc.ptr(o) for o in g.operands(scan)]
    step_types = [body.type_of(body.inputs[name]) for name in (*carry_in, *seq_in)]
    out_types = [body.type_of(body.outputs[name]) for name in (*carry_out, *ys)]

    lo, hi = kc.share(parts) if parts > 1 else (0, 1)
    with u.for_range(b, hi, start=lo, name="part", vectorize=False) as part:
        def rows(t):  # where this part's rows start in one step of a value of type t (0 when not split)
            return b.mul(part, u.i64(part_bytes(t))) if parts > 1 and _led_by(t, symbol) else u.i64(0)

        for k in range(len(accs)):   # the sums start at 0
            u.memset(b, results[n_c + len(ys) + k], 0, result_bytes[n_c + len(ys) + k])
        with u.for_range(b, length, name="step", vectorize=False) as i:
            t = b.sub(u.i64(length - 1), i) if reverse else i
            before = b.add(t, u.i64(1)) if reverse else b.sub(t, u.i64(1))
            first = b.icmp_signed("==", i, u.i64(0))
            for name, (_, slot) in mem.inputs.items():
                if name in carry_in:
                    c = carry_in.index(name)
                    full = nbytes(concrete(step_types[c].shape, kc.mb.bindings), step_types[c].dtype)
                    own = rows(step_types[c])
                    ptr = b.select(first, u.byte_offset(b, operand[c], own),
                                   u.byte_offset(b, results[c], b.add(b.mul(before, u.i64(full)), own)))
                elif name in seq_in:
                    j = seq_in.index(name)
                    st = step_types[n_c + j]
                    full = nbytes(concrete(st.shape, kc.mb.bindings), st.dtype)
                    own = rows(st)
                    ptr = u.byte_offset(b, operand[n_c + j], b.add(b.mul(t, u.i64(full)), own))
                else:
                    ptr = operand[n_c + n_s + const_in.index(name)]
                b.store(ptr, b.gep(table, [u.i64(slot.offset)], inbounds=True, source_etype=PTR))
            copies, direct = [], set()   # the body writes a step's carries and outputs in place when it can
            for index, (name, ot) in enumerate(zip((*carry_out, *ys), out_types)):
                full = nbytes(concrete(ot.shape, kc.mb.bindings), ot.dtype)
                dst = u.byte_offset(b, results[index], b.add(b.mul(t, u.i64(full)), rows(ot)))
                storage = plan.storage_of(body.outputs[name])
                if storage in mem.external and storage not in direct:
                    direct.add(storage)
                    offset = mem.external[storage].offset
                    b.store(dst, b.gep(table, [u.i64(offset)], inbounds=True, source_etype=PTR))
                else:
                    copies.append((dst, storage, part_bytes(ot)))
            status = b.call(fn, [scratch, state, table, kc.seed, u.i64(0), ir.Constant(I32, 0),
                                 ir.Constant(PTR, None)])
            _return_if_failed(kc, status)
            regions = {"arena": scratch, "state": state, "input": table}
            for dst, storage, size in copies:
                u.memcpy(b, dst, kc.mb.pointer(b, mem.slots[storage], regions), size)
            for k, name in enumerate(accs):
                out = body.outputs[name]
                src = kc.mb.pointer(b, mem.slots[plan.storage_of(out)], regions)
                _add_into(b, results[n_c + len(ys) + k], src, math.prod(concrete(body.type_of(out).shape, bindings)))


def _batch_symbol(body, carry_in) -> str | None:
    """The symbol (the batch) that leads the carries' shapes, if any."""
    dims = {body.type_of(body.inputs[name]).shape[0] for name in carry_in if body.type_of(body.inputs[name]).shape}
    symbols = [d for d in dims if isinstance(d, str)]
    return symbols[0] if len(symbols) == 1 else None


def _led_by(t, symbol) -> bool:
    return bool(t.shape) and t.shape[0] == symbol and symbol not in t.shape[1:]


def _parts(kc, body, symbol, accs) -> int:
    """How many parts of the batch the threads run (1: the loop runs on one thread)."""
    threads = kc.mb.threads
    if threads == 1 or symbol is None or accs or not rows_independent(body, symbol):
        return 1
    if kc.mb.bindings[symbol] % threads:
        return 1
    return threads


def rows_independent(body, symbol: str) -> bool:
    """Does every row of the body's values led by the batch `symbol` depend only on the same row of its
    inputs? Inputs and outputs are led by it or free of it; every node that reads a row is led by it and
    is elementwise, a broadcast, a reshape (kept rows), a product with the batch on the left only, or a
    reduction, softmax, slice or concat along another axis."""
    def led(n):
        return _led_by(body.type_of(n), symbol)

    def free(n):
        return symbol not in body.type_of(n).shape

    for n in body.nodes:
        op, operands, attrs = body.op(n), body.operands(n), body.nodes[n]["attrs"]
        if op.is_a(LEAF):
            ok = led(n) or free(n)
        elif free(n) and all(free(o) for o in operands):
            ok = True   # weights only
        elif not led(n):
            ok = False
        elif op.is_a(ELEMENTWISE) or op.is_a(EXPAND) or op.is_a(VIEW):
            ok = True
        elif op is ops.matmul:
            ok = led(operands[0]) and free(operands[1]) and not attrs.get("ta")
        elif op.is_a(REDUCE) or op.is_a(NORMALIZE) or op in (ops.slice, ops.concat):
            rank = len(body.type_of(operands[0]).shape)
            axis = attrs.get("axis", -1)
            axes = (axis,) if isinstance(axis, int) else tuple(axis) if axis is not None else tuple(range(rank))
            ok = 0 not in [a % rank for a in axes]
        else:
            ok = False
        if not ok:
            return False
    return True


def _constants(kc, mem):
    """The body's constants, laid out as its memory plan says, in a global of the module."""
    data = bytearray(max(mem.state_bytes, 8))
    for arr, slot in mem.constants.values():
        data[slot.offset:slot.offset + arr.nbytes] = arr.tobytes()
    typ = ir.ArrayType(ir.IntType(8), len(data))
    glob = ir.GlobalVariable(kc.mb.module, typ, f"{kc.fn.name}.constants")
    glob.initializer = ir.Constant(typ, data)
    glob.global_constant = True
    glob.linkage = "internal"
    glob.align = 64
    return glob


def _pointer_array(b, count: int):
    """`count` pointers on the stack (allocated in the entry block)."""
    here = b.block
    b.position_at_start(b.function.entry_basic_block)
    table = b.alloca(PTR, size=u.i64(count), name="inputs")
    b.position_at_end(here)
    return table


def _return_if_failed(kc, status) -> None:
    b = kc.b
    failed = kc.fn.append_basic_block("step.failed")
    ok = kc.fn.append_basic_block("step.ok")
    b.cbranch(b.icmp_signed("!=", status, ir.Constant(I32, 0)), failed, ok)
    b.position_at_end(failed)
    b.ret(status)
    b.position_at_end(ok)


def _add_into(b, dst, src, count: int) -> None:
    """dst[i] += src[i] for float32 i < count (a loop LLVM vectorizes)."""
    with u.for_range(b, count, name="acc") as i:
        u.store(b, b.fadd(u.load(b, dst, i, F32), u.load(b, src, i, F32)), dst, i)


def _aligned(n: int) -> int:
    return -(-n // 64) * 64
