"""nnc: a declarative graph-based neural-network compiler.

    import nnc
    model = nnc.load("examples/circuit.nn")
    print(model.summary())
    model.eval({"x": -2, "y": 5, "z": -4})   # {'f': array(-12.)}
"""

from .version import __version__

__all__ = ["load", "loads", "Model", "NncError", "__version__"]


def __getattr__(name: str):
    # The names load on first use: the facade loads numpy, networkx and the front end (a few tenths of a second),
    # and the `nnc` command, whose modules all import this package first, answers a Ctrl-C only once it runs
    # (nnc.cli.main).
    if name in ("Model", "load", "loads"):
        from . import model

        return getattr(model, name)
    if name == "NncError":
        from .errors import NncError

        return NncError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
