"""Parameter initializers as the graph records them: a param node's `init` attribute.

An `Init` names a rule and its arguments (`normal(0, 0.01)`); nnc/runtime/init.py
turns it into an array. Which rules draw random numbers is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass

DETERMINISTIC = {"zeros", "ones", "constant"}


@dataclass(frozen=True)
class Init:
    """A parameter initializer: zeros, ones, constant(v), normal(mean, std), uniform(lo, hi), xavier, he, and
    forget_gate(lo, hi, units, bias), an LSTM's input bias: uniform, plus `bias` on its forget gate."""

    kind: str
    args: tuple = ()

    def __str__(self) -> str:
        return self.kind + (f"({', '.join(str(a) for a in self.args)})" if self.args else "")

    @property
    def random(self) -> bool:
        """Does it draw from a random generator (so its values depend on the seed)?"""
        return self.kind not in DETERMINISTIC
