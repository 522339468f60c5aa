"""nnc: a declarative graph-based neural-network compiler.

    import nnc
    model = nnc.load("examples/circuit.nn")
    print(model.summary())
    model.eval({"x": -2, "y": 5, "z": -4})   # {'f': array(-12.)}
"""

from .errors import NncError
from .model import Model, load, loads
from .version import __version__

__all__ = ["load", "loads", "Model", "NncError", "__version__"]
