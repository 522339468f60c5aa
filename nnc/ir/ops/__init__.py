"""All primitive ops; importing this package fills the registry."""

from . import conv, elementwise, leaf, linalg, movement, nn, reduce  # noqa: F401
from .registry import (
    CONTRACTION, COMPARE, ELEMENTWISE, LEAF, MOVEMENT, NORMALIZE, POOL, RANDOM, REDUCE, REGISTRY, UNARY, BINARY, VJP,
    NoGradient, Op, defvjp, get, nograd, ops_in)

__all__ = ["REGISTRY", "Op", "NoGradient", "VJP", "defvjp", "nograd", "get", "ops_in", "LEAF", "ELEMENTWISE", "UNARY", "BINARY", "COMPARE",
           "REDUCE", "MOVEMENT", "CONTRACTION", "POOL", "NORMALIZE", "RANDOM"]
