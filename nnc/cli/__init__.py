"""The `nnc` command line: one module per command, wired together by main.py."""

from .main import main

__all__ = ["main"]
