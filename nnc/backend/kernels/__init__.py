"""Kernel generators: one module per family of anchor ops, plus the pointwise loop.

Each generator takes a `codegen.KernelContext` and emits the body of one kernel
function; the ops register them as their `lower` rule (kernel-sized ops).
"""
