"""The counter-based random stream of dropout masks and noise (random_normal), and its NumPy twins.

Element i of the mask of a dropout node with salt s under step seed k is kept
when `uniform(k, s, i) >= p`, where `uniform` hashes (k, s, i) with the
lowbias32 mixer (Chris Wellons) to 24 random bits. The same seed gives the same
masks in native code and in `dropout_mask_numpy`, at any batch size's prefix.
"""

from __future__ import annotations

import numpy as np

GOLDEN = 0x9E3779B9
MASK32 = 0xFFFFFFFF


def mix32(x):
    """lowbias32 on uint32 NumPy values (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def stream_key(seed: int, salt: int) -> int:
    """The per-node key: seed (64 bits) and salt folded into 32 bits."""
    lo, hi = seed & MASK32, (seed >> 32) & MASK32
    k = mix32((salt + GOLDEN) & MASK32)
    k = mix32(np.uint32(hi) ^ k)
    return int(mix32(np.uint32(lo) ^ k))


def uniform_numpy(count: int, seed: int, salt: int, offset: float = 0.0) -> np.ndarray:
    key = np.uint32(stream_key(seed, salt))
    with np.errstate(over="ignore"):
        index = np.arange(count, dtype=np.uint32)
        h = mix32(index * np.uint32(GOLDEN) + key)
        h = mix32(h ^ key)
    return ((h >> np.uint32(8)).astype(np.float32) + np.float32(offset)) * np.float32(2.0 ** -24)


def normal_numpy(shape, seed: int, salt: int, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """The native random_normal's draws: Box–Muller on the uniforms 2i (shifted into (0, 1)) and 2i + 1."""
    count = int(np.prod(shape))
    u = uniform_numpy(2 * count, seed, salt).reshape(count, 2)
    u1 = uniform_numpy(2 * count, seed, salt, offset=0.5).reshape(count, 2)[:, 0]
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(np.float32(2 * np.pi) * u[:, 1])
    return (mean + std * z).reshape(shape).astype(np.float32)


def dropout_mask_numpy(shape, p: float, seed: int, salt: int) -> np.ndarray:
    keep = uniform_numpy(int(np.prod(shape)), seed, salt) >= np.float32(p)
    return (keep.reshape(shape) * np.float32(1.0 / (1.0 - p))).astype(np.float32)
