"""The guarded entry point and the disk cache.

Wrong arrays are fed in a subprocess, so a crash (instead of a clear NncError)
fails the test rather than the test run. The cache tests use a private
XDG_CACHE_HOME: a second compile is a hit, a corrupt entry is rebuilt.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import nnc
from nnc.backend import cache, compile_graph, jit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GUARD_SCRIPT = textwrap.dedent("""
    import numpy as np, nnc
    from nnc.backend import compile_graph
    from nnc.errors import NncError
    model = nnc.load({path!r})
    exe = compile_graph(model.graph, {{"B": 4}}, use_cache=False)
    params = model.init_params(0)
    good = {{"image": np.zeros((4, 784), np.float32), "label": np.zeros(4, np.int32)}}
    readonly = np.zeros((4, 10), np.float32); readonly.flags.writeable = False
    logits = model.graph.outputs["logits"]
    cases = {{
        "shape": dict(good, image=np.zeros((5, 784), np.float32)),
        "rank": dict(good, image=np.zeros(784, np.float32)),
        "dtype": dict(good, image=np.zeros((4, 784), np.float64)),
        "label dtype": dict(good, label=np.zeros(4, np.int64)),
        "not contiguous": dict(good, image=np.zeros((784, 4), np.float32).T),
        "list": dict(good, image=[[0.0] * 784] * 4),
        "missing": {{"label": good["label"]}},
        "bad label": dict(good, label=np.array([0, 1, 10, 2], np.int32)),
    }}
    for name, inputs in cases.items():
        try:
            exe.run(inputs, params)
            print(name, "ACCEPTED")
        except NncError as err:
            print(name, "->", err.message)
    for name, out in {{"read-only out": readonly, "wrong out": np.zeros((4, 9), np.float32)}}.items():
        try:
            exe.run(good, params, out={{logits: out}})
            print(name, "ACCEPTED")
        except NncError as err:
            print(name, "->", err.message)
    print("good", exe.run(good, params)[logits].shape)
""")


def test_wrong_arrays_give_clear_errors_not_crashes():
    script = GUARD_SCRIPT.format(path=str(EXAMPLES / "mnist_mlp.nn"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" -> ", 1) if " -> " in line else (line, "") for line in done.stdout.splitlines())
    assert "ACCEPTED" not in done.stdout
    assert "has shape [5, 784], expected [4, 784] (compiled for B=4)" in lines["shape"]
    assert "has shape [784], expected [4, 784]" in lines["rank"]
    assert "has dtype float64, expected float32" in lines["dtype"]
    assert "has dtype int64, expected int32" in lines["label dtype"]
    assert "not a C-contiguous" in lines["not contiguous"]
    assert "expected a NumPy array" in lines["list"]
    assert "missing input 'image'" in lines["missing"]
    assert "label out of range: got class 10, expected 0 to 9" in lines["bad label"]
    assert "read-only" in lines["read-only out"]
    assert "has shape [4, 9], expected [4, 10]" in lines["wrong out"]
    assert "good (4, 10)" in done.stdout


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NNC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "nnc"


def test_cache_hit_and_corrupt_entry_rebuilt(private_cache):
    model = nnc.load(EXAMPLES / "mnist_mlp.nn")
    first = compile_graph(model.graph, {"B": 3})
    assert not first.stats["cached"]
    entries = list(private_cache.glob("*.nncobj"))
    assert len(entries) == 1
    second = compile_graph(model.graph, {"B": 3})
    assert second.stats["cached"]
    inputs = {"image": np.ones((3, 784), np.float32), "label": np.zeros(3, np.int32)}
    params = model.init_params(0)
    a, b = first.run(inputs, params), second.run(inputs, params)
    for n in a:
        np.testing.assert_array_equal(a[n], b[n])

    entries[0].write_bytes(entries[0].read_bytes()[:-100] + b"garbage")
    third = compile_graph(model.graph, {"B": 3})
    assert not third.stats["cached"]
    assert compile_graph(model.graph, {"B": 3}).stats["cached"]
    for n, value in third.run(inputs, params).items():
        np.testing.assert_array_equal(value, a[n])


def test_cache_key_covers_batch_size_and_graph(private_cache):
    model = nnc.load(EXAMPLES / "linreg.nn")
    g = model.graph
    host = jit.host()
    base = cache.cache_key(g, g.roots(), {"B": 4}, host)
    assert base == cache.cache_key(g, g.roots(), {"B": 4}, host)
    assert base != cache.cache_key(g, g.roots(), {"B": 5}, host)
    other = nnc.load(EXAMPLES / "apartment.nn").graph
    assert base != cache.cache_key(other, other.roots(), {"B": 4}, host)


def test_the_cache_keeps_to_its_limit_by_dropping_the_least_recently_used(private_cache, monkeypatch):
    private_cache.mkdir(parents=True)
    for i in range(10):   # ten entries of the same size, the oldest first
        cache.store(f"{i:064x}", bytes(900), {})
        os.utime(private_cache / f"{i:064x}.nncobj", (1000 + i, 1000 + i))
    size = (private_cache / f"{0:064x}.nncobj").stat().st_size
    assert cache.load(f"{0:064x}") is not None   # used now: the newest
    monkeypatch.setattr(cache, "LIMIT_BYTES", 10 * size)
    monkeypatch.setattr(cache, "_stores", itertools.count())   # as the first store of a process
    cache.store(f"{10:064x}", bytes(900), {})     # 11 entries, past the limit: down to 7.5 entries' bytes
    kept = sorted(int(p.stem, 16) for p in private_cache.glob("*.nncobj"))
    assert kept == [0, 5, 6, 7, 8, 9, 10]


def test_two_processes_compiling_at_once(private_cache, tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np, nnc
        from nnc.backend import compile_graph
        m = nnc.load({str(EXAMPLES / "xor.nn")!r})
        exe = compile_graph(m.graph, {{"B": 4}})
        inputs = {{k: np.zeros(tuple(4 if isinstance(d, str) else d for d in t.shape), t.dtype)
                  for k, t in m.inputs.items()}}
        out = exe.run(inputs, m.init_params(0))
        print("ok", len(out))
    """)
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.startswith("ok")
    assert len(list(private_cache.glob("*.nncobj"))) == 1
    assert not list(private_cache.glob("*.tmp"))
