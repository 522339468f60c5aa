"""Reading and writing user files: atomic writes, .npz archives without pickle.

A temporary file is named `.<final name>.<process id>.<random><suffix>`, so
that the leftovers of a process that was killed mid-write (it cannot delete
them) are recognised and removed by the next write of the same file.
"""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NncError

if TYPE_CHECKING:
    import numpy as np


def cache_dir() -> Path:
    """Where nnc keeps what it can rebuild (compiled code, the grammar's parse tables): $NNC_CACHE_DIR,
    else $XDG_CACHE_HOME/nnc, else ~/.cache/nnc."""
    if os.environ.get("NNC_CACHE_DIR"):
        return Path(os.environ["NNC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nnc"


@contextmanager
def reading(path, kind: str):
    """Around reading a file the user named: a missing file, a folder in its place or an unreadable
    file becomes one NncError saying which (`kind` is what was expected, e.g. "a CSV file")."""
    try:
        yield
    except FileNotFoundError:
        raise NncError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise NncError(f"{path} is a directory, expected {kind}") from None
    except OSError as err:
        raise NncError(f"cannot read {path}: {err.strerror}") from None


def atomic_write(path: str | Path, write) -> None:
    """Call write(fileobj) on a temporary file beside `path`, then rename it into place.

    A crash or kill mid-write leaves the previous file untouched; the temporary files of writers that were
    killed are removed.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise NncError(f"cannot write {path}: directory {directory} does not exist")
    remove_orphans(directory, path.name, TMP_SUFFIX)
    fd, tmp = private_temporary(directory, path.name, TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
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


TMP_SUFFIX = ".tmp"
ORPHAN_SECONDS = 3600  # a temporary file this old is an orphan even if its process id was reused


def private_temporary(directory: Path, name: str, suffix: str) -> tuple[int, str]:
    """(fd, path) of a new temporary file for `name` in `directory`, named after this process."""
    return tempfile.mkstemp(prefix=f".{name}.{os.getpid()}.", suffix=suffix, dir=directory)


def remove_orphans(directory: Path, name: str, suffix: str) -> None:
    """Delete the temporary files for `name` whose writer no longer runs (or that are an hour old)."""
    now = time.time()
    for tmp in directory.glob(f".{glob_escape(name)}.*{suffix}"):
        try:
            if not _writer_alive(tmp, suffix) or now - tmp.stat().st_mtime > ORPHAN_SECONDS:
                tmp.unlink()
        except OSError:
            pass


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _writer_alive(tmp: Path, suffix: str) -> bool:
    """Whether the process named in `.NAME.PID.RANDOM<suffix>` still runs (True when there is no id)."""
    fields = tmp.name.removesuffix(suffix).rsplit(".", 2)
    if len(fields) != 3 or not fields[1].isdigit():
        return True
    try:
        os.kill(int(fields[1]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz(path: str | Path, arrays: dict) -> None:
    import numpy as np  # here: the command-line options and the parser use this module without numpy

    atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive (the second: one with no arrays)
SAVEZ_HINT = "save arrays keyed by name with numpy.savez(FILE, name=array, ...)"


def load_npz(path: str | Path, what: str = "arrays") -> dict[str, np.ndarray]:
    """Load every array of an .npz file; pickled objects are refused, naming the array that holds them."""
    import numpy as np

    path = Path(path)
    where = str(path)
    with reading(path, "an .npz file"), open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head.startswith(NPY_MAGIC):
        raise NncError(f"got a single .npy array, expected an .npz archive of {what}", filename=where,
                       hint=SAVEZ_HINT)
    if not head.startswith(ZIP_MAGIC):
        raise NncError(f"not an .npz archive of {what}", filename=where, hint=SAVEZ_HINT)
    name = None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {}
            for name in data.files:
                arrays[name] = data[name]
                if not isinstance(arrays[name], np.ndarray):  # a member that is no .npy file comes as bytes
                    raise NncError(f"member '{name}' is not a NumPy array, expected only .npy arrays in an "
                                   f".npz archive of {what}", filename=where, hint=SAVEZ_HINT)
            return arrays
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise NncError(f"not a readable .npz file ({err})", filename=where) from None
    except ValueError as err:
        which = f"array '{name}'" if name is not None else "the archive"
        if "allow_pickle" in str(err):
            raise NncError(f"{which} holds Python objects, expected numbers: nnc loads {what} without pickle",
                           filename=where, hint=SAVEZ_HINT + " with numeric arrays") from None
        raise NncError(f"{which} is not a readable .npy array ({err})", filename=where) from None
