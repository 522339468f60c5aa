"""nnc: a declarative graph-based neural-network compiler.

    import nnc
    model = nnc.load("examples/circuit.nn")
    print(model.summary())
    model.eval({"x": -2, "y": 5, "z": -4})   # {'f': array(-12.)}
"""

__version__ = "0.1.0"

from .errors import NncError  # noqa: E402
from .model import Model, load, loads  # noqa: E402

__all__ = ["load", "loads", "Model", "NncError", "__version__"]
