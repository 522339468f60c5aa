"""The scan kernel: a loop over time that calls the body graph, compiled once, at every step.

The body (nnc/ir/ops/control.py) is compiled into the same module as a
function of its own (`ModuleBuilder.subgraph_function`): its kernels, its
memory plan (its arena lives in this kernel's scratch; its constants in a
global of the module) and an input table of pointers. Each step points the
body's inputs at the carries (the initial value, then the history's step
before), one time step of each sequence and the constants, runs the body,
then copies the new carries and per-step outputs into their stacked results
and adds the sums. Compile time and code size do not depend on the number of
steps. The loop runs on one thread (the body's kernels are single-threaded).
"""

from __future__ import annotations

import math

from llvmlite import ir

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
    fn, mem, plan = kc.mb.subgraph_function(body, outputs)
    result_types = g.type_of(scan).types
    result_bytes = [nbytes(_shape(kc, t), t.dtype) for t in result_types]

    # every result's buffer: its item node's storage, or scratch when nothing reads it
    stored = {g.nodes[r]["attrs"]["index"]: r for r in kc.kernel.results}
    missing = [i for i in range(len(result_types)) if i not in stored]
    offsets, total = {}, _aligned(mem.arena_bytes)
    for i in missing:
        offsets[i] = total
        total += _aligned(result_bytes[i])
    scratch = kc.request_scratch(max(total, 64))
    results = [kc.ptr(stored[i]) if i in stored else u.byte_offset(b, scratch, offsets[i])
               for i in range(len(result_types))]
    state = _constants(kc, mem)
    table = _pointer_array(b, max(len(mem.inputs), 1))
    operand = [kc.ptr(o) for o in g.operands(scan)]
    step_bytes = [nbytes(_shape(kc, body.type_of(body.inputs[name])), body.type_of(body.inputs[name]).dtype)
                  for name in (*carry_in, *seq_in)]

    for k in range(len(accs)):   # the sums start at 0
        u.memset(b, results[n_c + len(ys) + k], 0, result_bytes[n_c + len(ys) + k])
    with u.for_range(b, length, name="step", vectorize=False) as i:
        t = b.sub(u.i64(length - 1), i) if reverse else i
        before = b.add(t, u.i64(1)) if reverse else b.sub(t, u.i64(1))
        first = b.icmp_signed("==", i, u.i64(0))
        for name, (_, slot) in mem.inputs.items():
            if name in carry_in:
                c = carry_in.index(name)
                ptr = b.select(first, operand[c], u.byte_offset(b, results[c], b.mul(before, u.i64(step_bytes[c]))))
            elif name in seq_in:
                j = seq_in.index(name)
                ptr = u.byte_offset(b, operand[n_c + j], b.mul(t, u.i64(step_bytes[n_c + j])))
            else:
                ptr = operand[n_c + n_s + const_in.index(name)]
            b.store(ptr, b.gep(table, [u.i64(slot.offset)], inbounds=True, source_etype=PTR))
        status = b.call(fn, [scratch, state, table, kc.seed, u.i64(0), ir.Constant(I32, 0),
                             ir.Constant(PTR, None)])
        _return_if_failed(kc, status)
        regions = {"arena": scratch, "state": state, "input": table}
        for index, name in enumerate((*carry_out, *ys)):
            out = body.outputs[name]
            src = kc.mb.pointer(b, mem.slots[plan.storage_of(out)], regions)
            size = nbytes(_shape(kc, body.type_of(out)), body.type_of(out).dtype)
            u.memcpy(b, u.byte_offset(b, results[index], b.mul(t, u.i64(size))), src, size)
        for k, name in enumerate(accs):
            out = body.outputs[name]
            src = kc.mb.pointer(b, mem.slots[plan.storage_of(out)], regions)
            _add_into(b, results[n_c + len(ys) + k], src, math.prod(_shape(kc, body.type_of(out))))


def _constants(kc, mem):
    """The body's constants, laid out as its memory plan says, in a global of the module."""
    data = bytearray(max(mem.state_bytes, 8))
    for arr, slot in mem.constants.values():
        data[slot.offset:slot.offset + arr.nbytes] = arr.tobytes()
    module = kc.mb.module
    name = f"{kc.fn.name}.constants"
    typ = ir.ArrayType(ir.IntType(8), len(data))
    glob = ir.GlobalVariable(module, typ, name)
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


def _shape(kc, t) -> tuple:
    return concrete(t.shape, kc.mb.bindings)


def _aligned(n: int) -> int:
    return -(-n // 64) * 64


