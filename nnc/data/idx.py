"""Reading IDX files, the format of MNIST and Fashion-MNIST, gzip-compressed or plain.

An IDX file is a big-endian header (two zero bytes, a type code, the number of
dimensions, then one 32-bit size per dimension) followed by the values,
row-major. Every way a file can be broken (a gzip stream cut short or
corrupt, a wrong magic number, too few or too many bytes, images and labels
that do not pair up) is one `NncError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..fileio import reading

GZIP_MAGIC = b"\x1f\x8b"
IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, columns)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
KIND_BY_MAGIC = {IMAGES_MAGIC: "an image file", LABELS_MAGIC: "a label file"}
REDOWNLOAD_HINT = "replace it with the original distribution file"


def read_file_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip (as the distributed `.gz` files are)."""
    with reading(path, "an IDX file"):
        raw = path.read_bytes()
    if not raw.startswith(GZIP_MAGIC):
        if path.suffix == ".gz":
            raise NncError(f"not a gzip file: got the bytes {raw[:4].hex(' ') or 'of an empty file'}, "
                           f"expected 1f 8b", filename=str(path), hint=REDOWNLOAD_HINT)
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise NncError(f"the gzip stream is truncated: the file ends after {len(raw):,} bytes, "
                       f"before the end of the compressed data", filename=str(path), hint=REDOWNLOAD_HINT) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as err:
        raise NncError(f"corrupt gzip data ({err})", filename=str(path), hint=REDOWNLOAD_HINT) from None


def parse_idx(data: bytes, path: Path, magic: int) -> np.ndarray:
    """The uint8 array of an IDX file whose magic number must be `magic`."""
    where = str(path)
    if len(data) < 4:
        raise NncError(f"too short for an IDX file: got {len(data)} bytes, expected at least a 4-byte header",
                       filename=where, hint=REDOWNLOAD_HINT)
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise NncError(f"wrong magic number: got {got} (0x{got:08x}), expected {magic} (0x{magic:08x}) for "
                       f"{KIND_BY_MAGIC[magic]}", filename=where, hint=_magic_hint(got))
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise NncError(f"truncated header: got {len(data)} bytes, expected {header} for {ndim} dimensions",
                       filename=where, hint=REDOWNLOAD_HINT)
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)
    body = len(data) - header
    layout = " x ".join(str(d) for d in dims)
    if body < expected:
        raise NncError(f"truncated: got {body:,} bytes of data, expected {expected:,} ({layout})",
                       filename=where, hint=REDOWNLOAD_HINT)
    if body > expected:
        raise NncError(f"{body - expected:,} bytes after the data: got {body:,} bytes, expected {expected:,} "
                       f"({layout})", filename=where, hint=REDOWNLOAD_HINT)
    return np.frombuffer(data, np.uint8, count=expected, offset=header).reshape(dims)


def _magic_hint(got: int) -> str:
    if got in KIND_BY_MAGIC:
        return f"this is {KIND_BY_MAGIC[got]}: are the image and label files swapped?"
    return f"not an IDX file, or a corrupt one: {REDOWNLOAD_HINT}"


def read_images(path: Path) -> np.ndarray:
    """An IDX image file as uint8 [count, rows, columns]."""
    return parse_idx(read_file_bytes(path), path, IMAGES_MAGIC)


def read_labels(path: Path) -> np.ndarray:
    """An IDX label file as uint8 [count]."""
    return parse_idx(read_file_bytes(path), path, LABELS_MAGIC)


def read_labelled_images(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 [count, rows, columns] and their int32 labels [count]."""
    return labelled_images(read_images(images_path), read_labels(labels_path), images_path, labels_path)


def labelled_images(images: np.ndarray, labels: np.ndarray, images_path: Path,
                    labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels read from these files, checked to pair up: labels as int32."""
    if len(labels) != len(images):
        raise NncError(f"got {len(labels):,} labels, expected {len(images):,}: one per image of {images_path.name}",
                       filename=str(labels_path), hint="the image and label files come from different sets")
    return images, labels.astype(np.int32)
