"""The cross_rank_sum kernel (nnc/ir/ops/collective.py) and how a run connects its collective to compiled code.

A module with the op holds one exported pointer, `nnc_collective`, null when compiled. The kernel copies its
operand to its output, then, when the pointer is set, calls it on the output in place:

    i32 collective(ptr data, i64 count, i32 adjoint)

which returns 0, or a non-zero status that stops the step (the executable raises it). `connect` sets the
pointer of one executable to a Python function (nnc.train.distributed makes it an MPI Allreduce). The kernel
never splits across threads: it is one unit of work run by one thread of the pool, which may be a worker
rather than the caller (a ctypes callback takes the GIL itself; mpi4py asks MPI for MPI_THREAD_MULTIPLE).
"""

from __future__ import annotations

import ctypes
import math

from llvmlite import ir

from .. import llvmutil as u
from ..irmath import I32, I64
from .pointwise import finish_epilogue

GLOBAL = "nnc_collective"
COLLECTIVE_TYPE = ir.FunctionType(I32, [u.PTR, I64, I32])
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32)


class _FunctionPointer(ir.LoadInstr):
    """The collective's pointer, loaded: llvmlite calls a value through the type it declares (an opaque
    pointer declares none)."""

    function_type = COLLECTIVE_TYPE


def _pointer_global(module: ir.Module):
    existing = module.globals.get(GLOBAL)
    if existing is not None:
        return existing
    slot = ir.GlobalVariable(module, u.PTR, GLOBAL)
    slot.initializer = ir.Constant(u.PTR, None)
    return slot


def emit_cross_rank_sum(kc) -> None:
    b = kc.b
    x = kc.operand(0)
    count = math.prod(kc.shape(x))
    if kc.ptr(x) is not kc.out:
        u.memcpy(b, kc.out, kc.ptr(x), count * 4)   # float32, the native code's float
    fn = _FunctionPointer(b.block, _pointer_global(b.module), typ=u.PTR)
    b._insert(fn)   # what IRBuilder.load does with a LoadInstr
    connected = b.icmp_unsigned("!=", fn, ir.Constant(u.PTR, None))
    with b.if_then(connected):
        status = b.call(fn, [kc.out, u.i64(count), ir.Constant(I32, int(bool(kc.attrs.get("adjoint", False))))])
        with b.if_then(b.icmp_signed("!=", status, ir.Constant(I32, 0))):
            b.ret(status)
    finish_epilogue(kc)


def connect(exe, fn) -> None:
    """Make executable `exe`'s cross_rank_sum kernels call `fn(array_address, count, adjoint) -> status` (a
    float32 array of `count` elements, summed in place); a no-op when `exe` has none. The executable keeps the
    ctypes wrapper alive."""
    address = exe._loaded.engine.get_global_value_address(GLOBAL)
    if not address:
        return
    exe._collective = CALLBACK(fn)
    ctypes.c_void_p.from_address(address).value = ctypes.cast(exe._collective, ctypes.c_void_p).value
