"""The version of nnc, in one place (the package, the compile cache key and run folders read it)."""

__version__ = "0.1.0"
