"""The native backend: fused kernels compiled with llvmlite (see compiler.py for the stages).

    from nnc.backend import compile_graph
    exe = compile_graph(model.graph, {"B": 32})
    values = exe.run({"image": x, "label": y}, params)   # {node: array}
"""

from .compiler import compile_graph, lower_to_ir
from .executable import Executable

__all__ = ["compile_graph", "Executable", "lower_to_ir"]
