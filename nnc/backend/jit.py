"""LLVM set-up for the backend: the host target machine, the O3 pipeline, object code in and out.

Owns every call into `llvmlite.binding`: initialisation of the native target,
the host CPU name and features (and the vector width they allow), optimising
textual IR at O3 with loop and SLP vectorization, emitting assembly or object
code, and loading object code into an MCJIT engine to get function addresses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import llvmlite.binding as llvm


@dataclass(frozen=True)
class Host:
    triple: str
    cpu: str
    features: str
    vector_width: int  # float32 lanes of the widest vector register the features allow

    @property
    def description(self) -> str:
        return f"{self.triple} {self.cpu} {self.vector_width * 32}-bit vectors"


@functools.cache
def _initialized() -> bool:
    # llvm.initialize() raises in llvmlite 0.50: only the native target is set up.
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return True


@functools.cache
def host() -> Host:
    _initialized()
    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        width = 16
        # Without this LLVM keeps 512-bit code to 256-bit vectors on many CPUs.
        features["prefer-256-bit"] = False
    elif features.get("avx"):
        width = 8
    else:
        width = 4
    return Host(llvm.get_process_triple(), llvm.get_host_cpu_name(), features.flatten(), width)


@functools.cache
def target_machine():
    h = host()
    target = llvm.Target.from_triple(h.triple)
    return target.create_target_machine(cpu=h.cpu, features=h.features, opt=3, jit=True)


def optimize(llvm_ir: str) -> llvm.ModuleRef:
    """Parse and verify textual IR, then run the O3 pipeline with both vectorizers on (no unrolling)."""
    tm = target_machine()
    module = llvm.parse_assembly(llvm_ir)
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    module.verify()
    tuning = llvm.create_pipeline_tuning_options(speed_level=3)
    tuning.loop_vectorization = True
    tuning.slp_vectorization = True
    # Full unrolling of constant-trip loops (im2col taps, GEMM tails) multiplies code size and
    # triples compile time for little gain: the GEMM micro-kernel is unrolled by construction.
    tuning.loop_unrolling = False
    tuning.loop_interleaving = True
    builder = llvm.create_pass_builder(tm, tuning)
    builder.getModulePassManager().run(module, builder)
    return module


def emit_object(module: llvm.ModuleRef) -> bytes:
    return target_machine().emit_object(module)


def emit_assembly(module: llvm.ModuleRef) -> str:
    return target_machine().emit_assembly(module)


class Loaded:
    """Object code linked into this process; keeps the engine (and so the code) alive."""

    def __init__(self, object_code: bytes):
        tm = target_machine()
        holder = llvm.parse_assembly("")
        holder.triple = tm.triple
        holder.data_layout = str(tm.target_data)
        # The engine owns the target machine it is given, so it gets its own.
        h = host()
        own_tm = llvm.Target.from_triple(h.triple).create_target_machine(
            cpu=h.cpu, features=h.features, opt=3, jit=True)
        self.engine = llvm.create_mcjit_compiler(holder, own_tm)
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
        self.engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self.engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"compiled code has no function {name!r}")
        return addr
