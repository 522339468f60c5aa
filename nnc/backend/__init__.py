"""The native backend: fused kernels compiled with llvmlite (see compiler.py for the stages).

    from nnc.backend import compile_graph
    exe = compile_graph(model.graph, {"B": 32})
    values = exe.run({"image": x, "label": y}, params)   # {node: array}

Imports are lazy so that the op modules can import `irmath` for their lowerings.
"""

__all__ = ["compile_graph", "Executable", "lower_to_ir"]


def __getattr__(name):
    if name in ("compile_graph", "lower_to_ir"):
        from . import compiler
        return getattr(compiler, name)
    if name == "Executable":
        from .executable import Executable
        return Executable
    raise AttributeError(name)
