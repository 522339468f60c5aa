"""Decoded arrays of checksummed dataset files, kept beside the download cache.

Decompressing MNIST's 47 MB of training images takes about a quarter of a second
on every run. A file whose SHA-256 matched its published checksum always decodes
to the same array, so that array is kept as `<sha256>-<crc32>.npy` in
`$XDG_CACHE_HOME/nnc/decoded/<dataset>/`, written atomically. The CRC-32 of the
array's bytes, part of the name, is checked on every load; an entry that fails it
or cannot be read is removed and the file decoded again. A cache that cannot be
written costs only the time.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..fileio import atomic_write
from .fetch import cache_root


def decoded_folder(dataset: str) -> Path:
    return cache_root().parent / "decoded" / dataset


def decoded_array(dataset: str, sha256: str, decode: Callable[[], np.ndarray]) -> np.ndarray:
    """The array that `decode()` makes of the file whose checksum is `sha256`: from the cache when it
    holds an intact copy, else decoded and kept."""
    folder = decoded_folder(dataset)
    for path in sorted(folder.glob(f"{sha256}-*.npy")):
        try:
            array = np.load(path, allow_pickle=False)
            if f"{zlib.crc32(array):08x}" == path.stem.rsplit("-", 1)[1]:
                return array
        except (OSError, ValueError, EOFError):
            pass
        path.unlink(missing_ok=True)
    array = np.ascontiguousarray(decode())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{sha256}-{zlib.crc32(array):08x}.npy",
                     lambda f: np.save(f, array, allow_pickle=False))
    except OSError:
        pass
    return array
