"""The on-disk compile cache: object code keyed by everything that shapes it.

Key: the graph's structure (ops, operands, attributes, constant values,
types, names), the targets, the symbol sizes, the thread count, the host CPU and its features,
the nnc version and a hash of the compiler's own source, so editing a kernel
generator invalidates old entries. An entry is one file, a JSON header line
(with the SHA-256 of the payload) followed by the object code; it is written
to a temporary file and renamed into place, so two processes compiling the
same model both succeed and a reader never sees half an entry. An entry that
fails its checks is deleted and the model rebuilt. The entries are kept to
about LIMIT_BYTES: past it, a store (a process's first, then every PRUNE_EVERY-th)
removes the least recently used ones (a load marks an entry used), as ccache
keeps to its max_size.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..fileio import cache_dir
from ..ir.graph import Graph
from ..version import __version__

FORMAT = 1
LIMIT_BYTES = 256 << 20   # a test suite run leaves ~130 MB; a model's entries are 50 KB to 2 MB
PRUNE_EVERY = 32          # stores: listing 3,000 entries takes ~14 ms, a compile 0.1-1 s
_stores = itertools.count()


@functools.cache
def compiler_fingerprint() -> str:
    """A hash of the source of everything that decides what code a graph becomes."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(__version__.encode())
    for path in sorted([*root.glob("backend/**/*.py"), *root.glob("ir/ops/*.py")]):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _canonical(value):
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        arr = np.asarray(value)
        return ["array", str(arr.dtype), list(arr.shape), hashlib.sha256(arr.tobytes()).hexdigest()]
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Graph):
        return structure(value)
    return repr(value)


def structure(g) -> list:
    """Everything about a graph that decides its code, as JSON-able data (a loop's body included)."""
    nodes = []
    for n in g.topo():
        d = g.nodes[n]
        attrs = {k: v for k, v in d["attrs"].items() if k != "init"}
        nodes.append([n, d["op"].name, list(d["operands"]), _canonical(attrs), str(d["type"])])
    meta = {k: _canonical(getattr(g, k)) for k in ("inputs", "params", "outputs", "updates", "loss")}
    return [meta, nodes]


def cache_key(g, targets, bindings: dict, host, threads: int = 1) -> str:
    meta, nodes = structure(g)
    text = json.dumps([FORMAT, compiler_fingerprint(), host.triple, host.cpu, host.features,
                       sorted(bindings.items()), list(targets), threads, meta, nodes], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load(key: str):
    """(object code, metadata) of a sound entry, or None; an unsound entry is removed."""
    path = cache_dir() / f"{key}.nncobj"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        header, _, payload = data.partition(b"\n")
        meta = json.loads(header)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != key or \
                meta.get("sha256") != hashlib.sha256(payload).hexdigest():
            raise ValueError("entry does not match its header")
        try:
            os.utime(path)   # used now: the last entry `prune` removes
        except OSError:
            pass
        return payload, meta
    except (ValueError, UnicodeDecodeError):
        try:
            path.unlink()
        except OSError:
            pass
        return None


def store(key: str, object_code: bytes, meta: dict) -> None:
    """Write an entry atomically; a cache that cannot be written is skipped, not an error."""
    directory = cache_dir()
    header = dict(meta, format=FORMAT, key=key, sha256=hashlib.sha256(object_code).hexdigest())
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(header).encode() + b"\n" + object_code)
            os.replace(tmp, directory / f"{key}.nncobj")
        except BaseException:
            os.unlink(tmp)
            raise
        if next(_stores) % PRUNE_EVERY == 0:   # the first store of a process, then every PRUNE_EVERY-th
            prune(directory)
    except OSError:
        pass


def prune(directory: Path, limit: int | None = None) -> None:
    """Remove the least recently used entries (by modification time, which `load` renews) until they take at
    most three quarters of `limit` bytes (LIMIT_BYTES), if they take more than `limit`. Entries another
    process removes meanwhile are skipped."""
    limit = LIMIT_BYTES if limit is None else limit
    entries = []
    for entry in os.scandir(directory):
        if entry.name.endswith(".nncobj"):
            try:
                st = entry.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    if total <= limit:
        return
    for _, size, path in sorted(entries):
        try:
            os.unlink(path)
        except OSError:
            continue
        total -= size
        if total <= limit * 3 // 4:
            return
