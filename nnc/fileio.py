"""Reading and writing user files: atomic writes, .npz archives without pickle."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import NncError


def atomic_write(path: str | Path, write) -> None:
    """Call write(fileobj) on a temporary file beside `path`, then rename it into place.

    A crash or kill mid-write leaves the previous file untouched.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise NncError(f"cannot write {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_npz(path: str | Path, arrays: dict) -> None:
    atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def load_npz(path: str | Path, what: str = "arrays") -> dict[str, np.ndarray]:
    """Load every array of an .npz file; pickled objects are refused."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise NncError(f"{path}: expected an .npz archive of {what}, got a single .npy array")
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise NncError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise NncError(f"{path} is a directory, expected an .npz file") from None
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise NncError(f"{path}: not a readable .npz file ({err})") from None
    except ValueError as err:
        raise NncError(f"{path}: cannot load {what} without pickle ({err})") from None
