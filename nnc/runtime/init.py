"""Parameter initialization: each param node's `init` turned into an array, reproducibly.

Each parameter draws from its own generator seeded by (seed, name), so adding
a layer never changes the initial values of the others.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from ..ir.types import numpy_dtype


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out): dense weight [in, out]; conv weight [F, C, kh, kw]."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        field = shape[2] * shape[3]
        return shape[1] * field, shape[0] * field
    n = math.prod(shape) if shape else 1
    return n, n


def init_value(init, shape, dtype, rng: np.random.Generator) -> np.ndarray:
    kind, args = init.kind, init.args
    if kind == "zeros":
        v = np.zeros(shape)
    elif kind == "ones":
        v = np.ones(shape)
    elif kind == "constant":
        v = np.full(shape, args[0])
    elif kind == "normal":
        v = rng.normal(args[0], args[1], shape)
    elif kind == "uniform":
        v = rng.uniform(args[0], args[1], shape)
    elif kind == "forget_gate":   # an LSTM bias: uniform(lo, hi), plus `bias` on the forget gate's units
        lo, hi, units, bias = args
        v = rng.uniform(lo, hi, shape)
        v[units:2 * units] += bias
    elif kind == "xavier":  # Glorot uniform
        fan_in, fan_out = fans(shape)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        v = rng.uniform(-limit, limit, shape)
    elif kind == "he":  # He normal
        fan_in, _ = fans(shape)
        v = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    else:  # pragma: no cover - the builder only makes the kinds above
        raise ValueError(f"unknown initializer {kind}")
    return np.asarray(v, dtype=dtype)


def init_params(graph, seed: int = 0, float_dtype=np.float32) -> dict[str, np.ndarray]:
    out = {}
    for name, node in graph.params.items():
        attrs = graph.nodes[node]["attrs"]
        typ = attrs["type"]
        rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(name.encode())])
        out[name] = init_value(attrs["init"], typ.shape, numpy_dtype(typ.dtype, float_dtype), rng)
    return out
