"""The compile cache under faults: damaged entries of every kind, many processes writing one entry, no cache.

tests/backend/test_backend_guards_cache.py covers a hit, a truncated entry
rebuilt and two processes compiling at once. Here: every way an entry can be
broken (header that is not an object, binary junk, empty, wrong key, a
folder in its place) is discarded and rebuilt, never an exception; readers
racing several writers of the same entry never see half an entry; a cache
folder that cannot be created costs the cache, not the compile.
"""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np
import pytest
from conftest import EXAMPLES

import nnc
from nnc.backend import cache, compile_graph


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NNC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "nnc"


def xor_inputs(model, batch: int = 4) -> dict:
    rng = np.random.default_rng(0)
    return {"x": rng.random((batch, 2), np.float32), "target": np.ones((batch, 1), np.float32)}


def damage_header(entry, header: bytes) -> None:
    entry.write_bytes(header + b"\n" + entry.read_bytes().partition(b"\n")[2])


DAMAGES = {
    "header-a-number": lambda e: damage_header(e, b"5"),
    "header-a-list": lambda e: damage_header(e, b"[1, 2]"),
    "header-null": lambda e: damage_header(e, b"null"),
    "header-binary": lambda e: damage_header(e, b"\xff\xfe\x00"),
    "wrong-key": lambda e: damage_header(e, json.dumps({**json.loads(e.read_bytes().partition(b"\n")[0]),
                                                         "key": "0" * 64}).encode()),
    "empty": lambda e: e.write_bytes(b""),
    "payload-flipped": lambda e: e.write_bytes(e.read_bytes()[:-1] + bytes([e.read_bytes()[-1] ^ 1])),
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_entry_is_discarded_and_rebuilt(private_cache, damage):
    model = nnc.load(EXAMPLES / "xor.nn")
    params, inputs = model.init_params(0), xor_inputs(model)
    good = compile_graph(model.graph, {"B": 4}).run(inputs, params)
    (entry,) = private_cache.glob("*.nncobj")
    DAMAGES[damage](entry)
    rebuilt = compile_graph(model.graph, {"B": 4})
    assert not rebuilt.stats["cached"]
    for node, value in rebuilt.run(inputs, params).items():
        np.testing.assert_array_equal(value, good[node])
    assert compile_graph(model.graph, {"B": 4}).stats["cached"]  # the rebuilt entry is sound


def test_a_folder_where_the_entry_should_be_costs_only_the_cache(private_cache):
    model = nnc.load(EXAMPLES / "xor.nn")
    first = compile_graph(model.graph, {"B": 4})
    (entry,) = private_cache.glob("*.nncobj")
    entry.unlink()
    entry.mkdir()
    again = compile_graph(model.graph, {"B": 4})
    assert not again.stats["cached"]
    params, inputs = model.init_params(0), xor_inputs(model)
    for node, value in again.run(inputs, params).items():
        np.testing.assert_array_equal(value, first.run(inputs, params)[node])


def test_a_cache_folder_that_cannot_be_made_costs_only_the_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NNC_CACHE_DIR", str(blocker / "nnc"))
    model = nnc.load(EXAMPLES / "xor.nn")
    exe = compile_graph(model.graph, {"B": 4})
    assert not exe.stats["cached"]
    assert exe.run(xor_inputs(model), model.init_params(0))
    assert blocker.read_text() == "not a folder"


KEY = "f" * 64
PAYLOAD_BYTES = 1 << 20


def _writer(cache_dir: str, seed: int, rounds: int) -> None:
    os.environ["NNC_CACHE_DIR"] = cache_dir
    payload = bytes([seed]) * PAYLOAD_BYTES
    for _ in range(rounds):
        cache.store(KEY, payload, {"writer": seed})


def _reader(cache_dir: str, rounds: int, results) -> None:
    os.environ["NNC_CACHE_DIR"] = cache_dir
    outcomes = []
    for _ in range(rounds):
        entry = cache.load(KEY)
        if entry is None:
            outcomes.append("unsound")
        else:
            payload, meta = entry
            whole = payload == bytes([meta["writer"]]) * PAYLOAD_BYTES
            outcomes.append("whole" if whole else "mixed")
    results.put(outcomes)


def test_readers_racing_several_writers_never_see_half_an_entry(tmp_path):
    """Three processes rewrite one 1 MB entry while two read it: every read finds one writer's whole entry
    (a reader that saw a partial entry would call it unsound and delete it)."""
    cache_dir = str(tmp_path / "cache")
    _writer(cache_dir, 9, 1)  # the entry exists before the race starts
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(cache_dir, seed, 60)) for seed in (1, 2, 3)]
    readers = [ctx.Process(target=_reader, args=(cache_dir, 150, results)) for _ in range(2)]
    for p in writers + readers:
        p.start()
    outcomes = [results.get(timeout=120) for _ in readers]
    for p in writers + readers:
        p.join(timeout=120)
        assert p.exitcode == 0
    flat = [o for r in outcomes for o in r]
    assert flat.count("whole") == len(flat), {o: flat.count(o) for o in set(flat)}
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"{KEY}.nncobj"]
