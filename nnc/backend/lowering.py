"""How kernel-sized ops name their generator without importing the backend at op-definition time.

`matmul.lower = kernel("matmul", "emit_matmul")` registers a lowering that
imports `nnc.backend.kernels.matmul` the first time a kernel is emitted and
calls `emit_matmul(kernel_context)`.
"""

from __future__ import annotations

from importlib import import_module


def kernel(module: str, generator: str):
    def lower(kc):
        return getattr(import_module(f"nnc.backend.kernels.{module}"), generator)(kc)
    lower.__qualname__ = f"kernels.{module}.{generator}"
    return lower
