"""Allocating the large float arrays of a dataset with their memory committed up front.

Touching fresh memory page by page costs a fault per 4 KiB page, which on
virtual machines dominates the time to convert MNIST to floats (about 0.8 s
against 0.2 s here). On Linux, large arrays are mapped with MAP_POPULATE so
the kernel commits every page in one call; elsewhere, and for small arrays,
this is `numpy.empty`.
"""

from __future__ import annotations

import mmap

import numpy as np

POPULATE_FROM_BYTES = 1 << 24  # below 16 MiB the faults cost little


def committed_empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialized, writable array of `shape` and `dtype`."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    flags = getattr(mmap, "MAP_POPULATE", None)
    if flags is None or size < POPULATE_FROM_BYTES:
        return np.empty(shape, dtype)
    mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flags)
    return np.frombuffer(mapping, dtype).reshape(shape)
