"""Finding a dataset's files on disk or downloading them, each checked against its SHA-256.

`fetch_files` looks for every file of a dataset `<name>` in this order:

1. `$NNC_DATA_DIR/<name>/`: files the user put there. A checksum mismatch is
   an error; nnc never deletes a user's file.
2. The cache, `$XDG_CACHE_HOME/nnc/datasets/<name>/` (default
   `~/.cache/nnc/datasets/<name>/`). A mismatch there is a damaged cache
   entry: it is deleted and fetched again.
3. Each mirror in turn (`NNC_DATASET_MIRROR`, a space- or comma-separated list
   of base URLs, overrides the dataset's own list). A download goes to a
   temporary `.part` file in the cache folder and is renamed into place only
   once its checksum matches, so a partial or corrupt download never stays in
   the cache; a failed one is deleted and the next mirror tried. The `.part`
   name carries the downloading process's id: the part of a download whose
   process was killed is deleted by the next download (or after an hour, in
   case the id was reused).

A download shows its progress on stderr (`DownloadProgress`): the bytes so
far of the total, the rate and the time left, rewritten in place on a terminal
and as a line every LOG_SECONDS elsewhere, so a piped log shows it is alive.

When a file is neither on disk nor downloadable, one error says where to put
the files and what they are called.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import NncError
from ..fileio import private_temporary, remove_orphans

DATA_DIR_ENV = "NNC_DATA_DIR"
MIRROR_ENV = "NNC_DATASET_MIRROR"
CHUNK = 1 << 20
READ_CHUNK = 1 << 16        # a download reads this much at a time: its progress moves even on a slow line
LIVE_SECONDS = 0.5          # a terminal's progress line is rewritten at most this often
LOG_SECONDS = 30.0          # elsewhere (a pipe, a log file) a progress line this often
DOWNLOAD_TIMEOUT_SECONDS = 30
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class KnownFile:
    """A file of a published dataset: its name, size and checksums."""

    name: str
    size: int
    md5: str
    sha256: str


def user_data_dir() -> Path | None:
    """`$NNC_DATA_DIR`, where the user keeps datasets, if set."""
    value = os.environ.get(DATA_DIR_ENV, "")
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/nnc/datasets` (an absolute XDG_CACHE_HOME only, per the XDG spec), else ~/.cache/..."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "nnc" / "datasets"


def mirrors_from_env(default: tuple[str, ...]) -> list[str]:
    """The base URLs to download from: `$NNC_DATASET_MIRROR` when set, else `default`."""
    value = os.environ.get(MIRROR_ENV, "")
    bases = value.replace(",", " ").split() if value.strip() else list(default)
    return [b if b.endswith("/") else b + "/" for b in bases]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_files(dataset: str, files: tuple[KnownFile, ...], mirrors: list[str], *, download: bool = True,
                log: Callable[[str], None] | None = None, alternative: str = "") -> dict[str, Path]:
    """A verified local path for each file (by name), found or downloaded in the order the module describes;
    `alternative` ends the hint of the error when they are not available (what else the user may provide)."""
    user_dir = user_data_dir()
    cache = cache_root() / dataset
    found, missing = {}, []
    for f in files:
        path = _verified_local(f, user_dir / dataset if user_dir else None, cache, log)
        if path is None:
            missing.append(f)
        else:
            found[f.name] = path
    failures: list[str] = []
    for f in missing:
        path = _download(f, mirrors, cache, failures, log) if download else None
        if path is None:
            lacking = [m for m in missing if m.name not in found]
            raise _not_available(dataset, files, lacking, failures, user_dir, cache, download, alternative)
        found[f.name] = path
    return found


def _verified_local(f: KnownFile, user_dir: Path | None, cache: Path, log) -> Path | None:
    if user_dir is not None and (user_dir / f.name).is_file():
        path = user_dir / f.name
        got = sha256_of(path)
        if got != f.sha256:
            raise NncError(f"checksum mismatch: got sha256 {got}, expected {f.sha256} (md5 {f.md5}, "
                           f"{f.size:,} bytes)", filename=str(path),
                           hint=f"this is not the original {f.name}, or it is damaged: replace it with the "
                                f"original file, or remove it to have nnc download it")
        return path
    path = cache / f.name
    if path.is_file():
        if sha256_of(path) == f.sha256:
            return path
        if log:
            log(f"{path}: damaged cache entry (checksum mismatch), fetching it again")
        path.unlink(missing_ok=True)
    return None


def _download(f: KnownFile, mirrors: list[str], cache: Path, failures: list[str], log) -> Path | None:
    """Try each mirror until one serves the file with the right checksum; None if none does."""
    import http.client  # here: the HTTP client (and its ssl, email) is paid only by a download
    import urllib.error

    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        failures.append(f"cannot create the cache folder {cache}: {err.strerror}")
        return None
    for base in mirrors:
        url = base + f.name
        remove_orphans(cache, f.name, PART_SUFFIX)
        fd, tmp = private_temporary(cache, f.name, PART_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                got = _stream_to(url, out, f.size)
            if got != f.sha256:
                failures.append(f"{url}: checksum mismatch (got sha256 {got}, expected {f.sha256}); discarded")
                if log:
                    log(failures[-1])
                continue
            final = cache / f.name
            os.replace(tmp, final)
            return final
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            failures.append(f"{url}: {_reason(err)}")
            if log:
                log(failures[-1])
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone already when renamed into place
    return None


def _stream_to(url: str, out, expected_size: int) -> str:
    """Download url into `out`, showing its progress; the SHA-256 of what arrived. Stops early past the expected
    size."""
    import urllib.request

    digest = hashlib.sha256()
    total = 0
    progress = DownloadProgress(url, expected_size)
    request = urllib.request.Request(url, headers={"User-Agent": "nnc"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            while chunk := response.read(READ_CHUNK):
                total += len(chunk)
                if total > expected_size:
                    raise ValueError(f"larger than the expected {expected_size:,} bytes")
                digest.update(chunk)
                out.write(chunk)
                progress.update(total)
        if total < expected_size:  # read(n) returns what came before the connection closed, without an error
            raise ValueError(f"the connection closed early: got {total:,} of the expected {expected_size:,} bytes")
    finally:
        progress.end(total, complete=total == expected_size)
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest()


class DownloadProgress:
    """One download's progress on stderr: `downloading URL (size)`, then the bytes so far, the rate and the time
    left (on a terminal one line rewritten at most every LIVE_SECONDS, elsewhere a line every LOG_SECONDS), and
    the size and time taken at the end. `clock` is for tests."""

    def __init__(self, url: str, size: int, stream=None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.size = size
        self.clock = clock
        self.started = self.shown = clock()
        self.on_screen = False  # a live line waits to be ended
        self._write(f"downloading {url} ({_size(size)})\n")

    def update(self, done: int) -> None:
        now = self.clock()
        if now - self.shown < (LIVE_SECONDS if self.live else LOG_SECONDS):
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        self._line(f"  {_size(done)} of {_size(self.size)} ({100 * done // max(self.size, 1)}%), {_size(rate)}/s, "
                   f"{_duration((self.size - done) / rate) if rate else '?'} left")

    def end(self, done: int, complete: bool) -> None:
        """The last line of a complete download; a failed one only ends the live line (its error follows)."""
        if complete:
            seconds = self.clock() - self.started
            self._line(f"  {_size(done)} in {_duration(seconds)} ({_size(done / max(seconds, 1e-9))}/s)")
        if self.on_screen:
            self._write("\n")
            self.on_screen = False

    def _line(self, text: str) -> None:
        if self.live:
            self._write(f"\r{text}\033[K")
            self.on_screen = True
        else:
            self._write(text + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} bytes"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def _reason(err: Exception) -> str:
    import http.client
    import urllib.error

    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    if isinstance(err, http.client.IncompleteRead):
        return f"the connection closed early ({len(err.partial):,} bytes received)"
    return str(err) or type(err).__name__


def _not_available(dataset: str, files, missing, failures: list[str], user_dir: Path | None, cache: Path,
                   download: bool, alternative: str = "") -> NncError:
    names = ", ".join(f.name for f in files)
    where_user = (f"${DATA_DIR_ENV}/{dataset}/ (here {user_dir / dataset}/)" if user_dir
                  else f"${DATA_DIR_ENV}/{dataset}/ ({DATA_DIR_ENV} is not set)")
    lacking = ", ".join(f.name for f in missing)
    how = "downloads are off" if not download else "the download failed"
    what = f"the {len(files)} original files" if len(files) > 1 else "the original file"
    also = f"; {alternative}" if alternative else ""
    err = NncError(f"dataset '{dataset}' is not available: {lacking} not found on disk and {how}",
                   hint=f"put {what} {names} in {where_user} or in {cache}/{also}")
    err.notes.extend(failures)
    return err
