"""bench/train_bench.py runs end to end (nnc at 2 threads and on 1, tiny rounds, under its own --busy load): the
figures the docs and the issue notes quote come from it, so a broken mode must fail here, not on the day of a
measurement.
Nothing here times anything."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, nnc_env


def test_train_bench_runs_nnc_and_the_gemm_under_a_busy_load(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "train_bench.py"), "--frameworks", "nnc,nnc-1t",
                           "--models", "mlp", "--batches", "8", "--threads", "2", "--rounds", "1", "--busy", "1",
                           "--json", str(out)], capture_output=True, text=True, env=nnc_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    model = [r for r in rows if r["kind"] != "gemm"]
    gemm = [r for r in rows if r["kind"] == "gemm"]
    assert [r["framework"] for r in model] == ["nnc", "nnc-1t"]
    assert all(r["busy"] == 1 and r["threads"] == 2 and r["samples_per_second"] > 0 for r in model)
    assert gemm and gemm[0]["nnc"] > 0 and gemm[0]["numpy"] > 0
    assert "| MLP | 8 | 2 |" in proc.stdout and "Under load: 1 process(es)" in proc.stdout
    assert "| nnc on 1 thread, same rounds |" in proc.stdout
