"""Checkpoints: an interrupted save never damages the previous one; a checkpoint meant for another model says what
does not fit; no pickle.

The kill test runs a process that saves a large checkpoint over and over with
nnc.runtime.checkpoint.save and SIGKILLs it at random moments, then checks that the
file under the final name is always one whole, loadable checkpoint (its
arrays agree with its metadata), that the temporary files a killed save
leaves are hidden names, never the checkpoint's, and that the next save
removes them.
(tests/test_run.py covers a checkpoint of another model rejected by
`nnc eval` for a missing parameter; here: extra and wrong-shape ones too.)
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, nnc_env

import nnc
from nnc.errors import NncError
from nnc.runtime import checkpoint

SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from nnc.runtime import checkpoint
    path = sys.argv[1]
    big = np.random.default_rng(0).standard_normal(6_000_000).astype(np.float32)  # 24 MB
    step = 0
    while True:
        step += 1
        checkpoint.save(path, {"big": big, "step": np.full(1000, step, np.int64)}, {"step": step})
        print(step, flush=True)
""")


def read_steps(proc: subprocess.Popen) -> list[int]:
    return [int(line) for line in proc.stdout.read().split()]


def test_killing_a_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "checkpoint.npz"
    rng = random.Random()
    killed_mid_save = 0
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], env=nnc_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()  # one whole save done
            assert first.strip().isdigit(), proc.stderr.read()
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        done = [int(first), *read_steps(proc)]
        arrays, meta = checkpoint.load(path)  # the checkpoint under the final name loads ...
        assert meta["step"] >= done[-1]  # ... and is the last save that finished or one that finished unreported
        np.testing.assert_array_equal(arrays["step"], np.full(1000, meta["step"]))
        assert arrays["big"].shape == (6_000_000,)
        leftovers = [p for p in tmp_path.iterdir() if p != path]
        assert all(p.name.startswith(".checkpoint.npz.") and p.name.endswith(".tmp") for p in leftovers), leftovers
        killed_mid_save += bool(leftovers)
    assert killed_mid_save, "no kill landed in the middle of a save: the test proved nothing"
    checkpoint.save(path, {"step": np.zeros(1)}, {"step": 0})  # the next save clears the killed ones' files
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_a_failing_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"w": np.ones(3)}, {"epoch": 1})

    class Unsaveable:
        def __array__(self, *args, **kwargs):
            raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"w": np.zeros(3), "bad": Unsaveable()}, {"epoch": 2})
    arrays, meta = checkpoint.load(path)
    assert meta == {"epoch": 1}
    np.testing.assert_array_equal(arrays["w"], np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_a_checkpoint_of_another_shape_names_missing_extra_and_wrong_shape_parameters(tmp_path):
    model = nnc.load(EXAMPLES / "xor.nn")
    params = model.init_params(0)
    assert set(params) == {"h.weight", "h.bias", "z.weight", "z.bias"}
    params.pop("z.bias")
    params["h.weight"] = np.zeros((3, 2), np.float32)
    params["extra.weight"] = np.zeros((2, 1), np.float32)
    params["optimizer/h.weight/m"] = np.zeros((2, 2), np.float32)  # optimizer state is not a mismatch
    path = tmp_path / "other.npz"
    checkpoint.save(path, params, {"epoch": 3})
    with pytest.raises(NncError) as err:
        checkpoint.model_params(path, model)
    assert err.value.format().split("\n")[0] == (
        f"{path}: error: the parameters do not fit this model: 'h.weight' has shape [3, 2], expected [2, 8]; "
        f"missing 'z.bias' [1]; extra 'extra.weight'")


def test_a_plain_parameter_file_may_hold_a_subset_but_not_a_wrong_shape(tmp_path):
    model = nnc.load(EXAMPLES / "xor.nn")
    path = tmp_path / "p.npz"
    np.savez(path, **{"z.bias": np.ones(1, np.float32)})
    assert set(checkpoint.model_params(path, model)) == {"z.bias"}
    np.savez(path, **{"z.bias": np.ones(2, np.float32)})
    with pytest.raises(NncError, match=r"'z.bias' has shape \[2\], expected \[1\]"):
        checkpoint.model_params(path, model)


def test_many_mismatches_are_summarized():
    expected = {f"p{i}": (2,) for i in range(10)}
    with pytest.raises(NncError) as err:
        checkpoint.check_against("c.npz", {}, expected)
    assert err.value.message.endswith("missing 'p5' [2]; and 4 more")


@pytest.mark.parametrize("damage, message", [
    (lambda p: np.savez(p, w=np.array([object()], dtype=object)),
     "array 'w' holds Python objects, expected numbers: nnc loads a checkpoint without pickle"),
    (lambda p: np.savez(p, w=np.ones(2), __meta__=np.frombuffer(b"\xff{", np.uint8)),
     "the checkpoint's metadata is corrupt (not JSON text)"),
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a readable .npz file"),
], ids=["pickled-object", "bad-metadata", "truncated"])
def test_damaged_checkpoints_give_one_message(tmp_path, damage, message):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"w": np.ones(2)}, {"epoch": 1})
    damage(path)
    with pytest.raises(NncError) as err:
        checkpoint.load(path)
    assert err.value.format().startswith(f"{path}: error: {message}")


def test_checkpoints_round_trip_without_pickle(tmp_path):
    path = tmp_path / "c.npz"
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.int64(4)}
    checkpoint.save(path, arrays, {"epoch": 2, "history": [{"loss": 0.5}]})
    loaded, meta = checkpoint.load(path)
    assert meta == {"epoch": 2, "history": [{"loss": 0.5}]}
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded[name], value)
    with np.load(path, allow_pickle=False) as data:  # any pickled member would make this raise
        assert sorted(data.files) == ["__meta__", "n", "w"]
    assert Path(path).stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode
