"""`nnc bench --json`: the structure of what it prints (its speed is measured in bench/, not here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnc.cli.main import main
from nnc.train.config import default_threads

XOR = str(Path(__file__).resolve().parents[1] / "examples" / "xor.nn")


def test_bench_json_structure(capsys):
    assert main(["bench", XOR, "--batch", "4", "--threads", "2", "--oversubscribe", "--optimizer", "sgd",
                 "--rounds", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "xor"
    assert (result["batch"], result["threads"], result["optimizer"]) == (4, 2, "sgd")
    assert len(result["rounds"]) == 2
    assert result["samples_per_second"] > 0 and result["compile_seconds"] > 0
    assert 0 < result["warm_compile_seconds"]
    assert result["kernels"] >= 1


def test_bench_text_and_unknown_optimizer(capsys):
    assert main(["bench", XOR, "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert f"xor: training step, batch 4, {default_threads()} thread(s), adam" in out and "samples/s" in out
    with pytest.raises(SystemExit) as exit:
        main(["bench", XOR, "--optimizer", "lbfgs"])
    assert exit.value.code == 2 and "argument --optimizer: invalid choice: 'lbfgs'" in capsys.readouterr().err
