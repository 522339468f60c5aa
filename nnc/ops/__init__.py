"""All primitive ops; importing this package fills the registry."""

from . import conv, elementwise, leaf, linalg, movement, nn, reduce  # noqa: F401
from .registry import (CONTRACTION, COMPARE, ELEMENTWISE, LEAF, MOVEMENT, NORMALIZE, POOL, RANDOM, REDUCE,
                       REGISTRY, UNARY, BINARY, NoGradient, Op, get, ops_in)

__all__ = ["REGISTRY", "Op", "NoGradient", "get", "ops_in", "LEAF", "ELEMENTWISE", "UNARY", "BINARY", "COMPARE",
           "REDUCE", "MOVEMENT", "CONTRACTION", "POOL", "NORMALIZE", "RANDOM"]
