"""Data-parallel training on MPI (nnc.train.distributed, `nnc run --workers N`): 2 ranks on loopback give the
parameters of one process with the same global batch (within 1e-5 relative after 100 steps, for SGD, momentum
and Adam with clipping and weight decay), every rank holds the same parameters and optimizer state bit for bit
(batch norm's running statistics too), with sync_batchnorm a model with batch norm trains as one process does
(they differ without it), evaluation is shared and reduced, only rank 0 writes, a rank that dies
stops the others with one message naming it and the cause, the checkpoint resumes on 1 or 2 ranks, and a
missing mpi4py is one clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, nnc_env, run_cli

from nnc.runtime import checkpoint
from nnc.train import distributed

pytest.importorskip("mpi4py")
MPIRUN = Path(sys.executable).parent / "mpirun"
pytestmark = pytest.mark.skipif(not MPIRUN.exists(), reason="the mpi extra's mpirun is not installed")

SPIRAL = """
model spiral_mlp {
  input  x: [B, 2]
  input  label: int[B]
  h = relu(dense(x, 32))
  logits = dense(h, 3)
  output logits
  loss cross_entropy(logits, label)
}

model spiral_bn {
  input  x: [B, 2]
  input  label: int[B]
  h = relu(batchnorm(dense(x, 16)))
  logits = dense(h, 3)
  output logits
  loss cross_entropy(logits, label)
}

train {
  data      = spiral
  optimizer = momentum(lr=0.1)
  batch     = 30
  epochs    = 400
  clip      = 1.0
  weight_decay = 0.001
  val = 0.1
}
"""

# One process (size 1) or each rank: 100+ steps of each optimizer with clipping and weight decay, the state and
# the evaluation written per rank.
EQUIVALENCE = """
import sys
import numpy as np
from nnc.data import load_for_model
from nnc.model import load
from nnc.train import distributed
from nnc.train.config import run_config
from nnc.train.trainer import Trainer

path, out = sys.argv[1], sys.argv[2]
comm = distributed.world()
rank, size = (comm.rank, comm.size) if comm else (0, 1)
results = {}
for model_name, optimizer, lr, batch in [("spiral_mlp", "sgd", 0.2, 30), ("spiral_mlp", "momentum", 0.05, 30),
                                         ("spiral_mlp", "adam", 0.01, 30), ("spiral_mlp", "rmsprop", 0.01, 29),
                                         ("spiral_bn", "adam", 0.01, 30)]:
    m = load(path, model=model_name)
    cfg = run_config(m.settings, epochs=12, batch=batch, seed=3, threads=1, clip=0.5, weight_decay=0.01,
                     optimizer=optimizer, lr=lr)
    spec = cfg.optimizer
    data = load_for_model(m, val=0.1, seed=3)
    tr = Trainer(m, cfg, comm=comm)
    for _ in range(12):   # 12 epochs of 9 steps: 108 steps (29 rows: 14 on rank 0, 15 on rank 1)
        stats = tr.train_epoch(data.train)
    key = f"{model_name}-{spec.name}"
    for k, v in tr.state().items():
        results[f"{key}:{k}"] = v
    ev = tr.evaluate(data.test)
    results[f"{key}:eval-loss"] = np.float64(ev["loss"])
    results[f"{key}:eval-accuracy"] = np.float64(ev["accuracy"])
    results[f"{key}:train-loss"] = np.float64(stats.train_loss)
np.savez(f"{out}/size{size}-rank{rank}.npz", **results)
"""


def mpirun(*args, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(MPIRUN), "-n", "2", sys.executable, *map(str, args)], env=nnc_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def spiral(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dp") / "spiral.nn"
    path.write_text(SPIRAL)
    return path


def test_shards_cover_the_batch_in_order():
    for n in (30, 31, 7, 2):
        for size in (1, 2, 3, 4):
            rows = [distributed.shard(n, r, size) for r in range(size)]
            assert np.concatenate([np.arange(n)[s] for s in rows]).tolist() == list(range(n))
            assert max(s.stop - s.start for s in rows) - min(s.stop - s.start for s in rows) <= 1
    assert distributed.without_workers(["run", "m.nn", "--workers", "2", "--epochs", "3", "--workers=4"]) == \
        ["run", "m.nn", "--epochs", "3"]


def test_two_ranks_train_as_one_process_and_agree_bit_for_bit(spiral, tmp_path):
    script = tmp_path / "equivalence.py"
    script.write_text(EQUIVALENCE)
    one = subprocess.run([sys.executable, script, spiral, tmp_path], env=nnc_env(), cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    two = mpirun(script, spiral, tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr
    single, rank0, rank1 = (np.load(tmp_path / f) for f in ("size1-rank0.npz", "size2-rank0.npz", "size2-rank1.npz"))
    assert sorted(rank0.files) == sorted(single.files) == sorted(rank1.files)
    for k in single.files:
        assert rank0[k].tobytes() == rank1[k].tobytes(), f"{k} differs between the ranks"
        if k.startswith("spiral_bn"):   # per-rank batch statistics (DDP's default) are not one process's
            continue
        if k.endswith(("eval-accuracy",)):
            assert rank0[k] == single[k], k
        elif k.endswith(("eval-loss", "train-loss")):
            assert abs(rank0[k] - single[k]) <= 1e-5 * abs(single[k]), k
        else:   # parameters and optimizer state
            scale = max(float(np.abs(single[k]).max()), 1e-12)
            assert float(np.abs(rank0[k] - single[k]).max()) / scale <= 1e-5, k
    assert any("running_var" in k for k in single.files)   # batch norm's statistics were compared too
    assert float(single["spiral_mlp-sgd:train-loss"]) < 0.9   # and something was learned


# sync_batchnorm: the spiral_bn model trained with the whole batch's statistics (batch 30: 15 + 15 rows, 29:
# 14 + 15) and, for contrast, without them; 6 epochs of 9 steps of Adam each. Its dense layer has no bias here:
# batch norm cancels a bias exactly, so its gradient is rounding noise, which Adam scales up to full steps.
SYNC = """
import sys
import numpy as np
from nnc.data import load_for_model
from nnc.model import load
from nnc.train import distributed
from nnc.train.config import run_config
from nnc.train.trainer import Trainer

synced, plain, out = sys.argv[1], sys.argv[2], sys.argv[3]
comm = distributed.world()
rank, size = (comm.rank, comm.size) if comm else (0, 1)
results = {}
for key, path, batch in [("sync30", synced, 30), ("sync29", synced, 29), ("plain30", plain, 30)]:
    m = load(path, model="spiral_bn")
    cfg = run_config(m.settings, epochs=6, batch=batch, seed=3, threads=1, optimizer="adam", lr=0.01)
    data = load_for_model(m, val=0.1, seed=3)
    tr = Trainer(m, cfg, comm=comm)
    for _ in range(6):
        stats = tr.train_epoch(data.train)
    for k, v in tr.state().items():
        results[f"{key}:{k}"] = v
    results[f"{key}:train-loss"] = np.float64(stats.train_loss)
np.savez(f"{out}/size{size}-rank{rank}.npz", **results)
"""


def test_sync_batchnorm_on_two_ranks_trains_as_one_process(spiral, tmp_path):
    plain, synced = tmp_path / "spiral_bn.nn", tmp_path / "spiral_sync.nn"
    plain.write_text(SPIRAL.replace("batchnorm(dense(x, 16))", "batchnorm(dense(x, 16, bias=false))"))
    synced.write_text(plain.read_text().replace("  val = 0.1\n", "  val = 0.1\n  sync_batchnorm = true\n"))
    assert "bias=false" in plain.read_text() and "sync_batchnorm" in synced.read_text()
    script = tmp_path / "sync.py"
    script.write_text(SYNC)
    one = subprocess.run([sys.executable, script, synced, plain, tmp_path], env=nnc_env(), cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    two = mpirun(script, synced, plain, tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr
    single, rank0, rank1 = (np.load(tmp_path / f) for f in ("size1-rank0.npz", "size2-rank0.npz", "size2-rank1.npz"))
    assert sorted(rank0.files) == sorted(single.files) == sorted(rank1.files)
    assert any("running_var" in k for k in single.files) and any("optimizer/" in k for k in single.files)
    unsynced = {}
    for k in single.files:
        assert rank0[k].tobytes() == rank1[k].tobytes(), f"{k} differs between the ranks"
        scale = max(float(np.abs(single[k]).max()), 1e-12)
        error = float(np.abs(rank0[k] - single[k]).max()) / scale
        if k.startswith("sync"):   # parameters, running statistics, optimizer state and loss
            assert error <= 1e-5, (k, error)
        if k.startswith("sync30"):   # in one process the setting changes nothing but rounding
            plain_k = k.replace("sync30", "plain30")
            assert float(np.abs(single[k] - single[plain_k]).max()) / scale <= 1e-5, k
        else:
            unsynced[k] = error
    # without the setting each rank normalizes with its own statistics: another computation
    assert unsynced["plain30:h.batchnorm.running_var"] > 1e-3 and unsynced["plain30:logits.weight"] > 1e-3, unsynced


def test_only_rank_0_prints_and_writes(spiral, tmp_path):
    two = run_cli("run", spiral, "--model", "spiral_mlp", "--epochs", "3", "--workers", "2", cwd=tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("nnc run: spiral_mlp") == 1 and two.stdout.count("epoch 3/3") == 1
    assert "2 workers" in two.stdout and not two.stderr
    folders = list((tmp_path / "runs").iterdir())   # one run folder: no other rank made its own
    assert len(folders) == 1 and f"wrote runs/{folders[0].name}/" in two.stdout
    out = folders[0]
    one = run_cli("run", spiral, "--model", "spiral_mlp", "--epochs", "3", "--threads", "1", "--out",
                  tmp_path / "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (out, tmp_path / "one")]
    assert metrics[0]["workers"] == 2 and "workers" not in metrics[1]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
    assert metrics[0]["test_loss"] == pytest.approx(metrics[1]["test_loss"], rel=1e-5)


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the rank `rank` among the descendants of `launcher` (MPICH sets PMI_RANK in each)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if f"PMI_RANK={rank}".encode() in env and "python" in stat:
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            while parent > 1:
                if parent == launcher:
                    return int(pid)
                try:
                    parent = int(Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except OSError:
                    break
    return None


def test_a_killed_rank_stops_the_run_and_its_checkpoint_resumes_on_1_and_2_ranks(spiral, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nnc", "run", str(spiral), "--model", "spiral_mlp", "--epochs",
                             "30", "--batch", "2", "--workers", "2", "--out", str(out)], env=nnc_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        victim = None
        while victim is None and time.monotonic() < deadline:
            victim = _rank_pid(proc.pid, 1)
        assert victim is not None
        while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline:
            time.sleep(0.01)   # the first epoch's checkpoint, then the kill, in a later epoch
        assert (out / "checkpoint.npz").exists(), "no checkpoint was written"
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = proc.communicate(timeout=30)
        assert time.monotonic() - killed < 30
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert f"rank 1 of 2 (pid {victim}) died: Killed (signal 9)" in stderr, stderr
    assert "BAD TERMINATION" not in stdout + stderr   # MPICH's banner became that one line
    assert f"--resume {out} --workers 2" in stderr
    twice = tmp_path / "again"
    subprocess.run(["cp", "-r", str(out), str(twice)], check=True)
    reached = checkpoint.load(out / "checkpoint.npz")[1]["epoch"]
    assert 1 <= reached < 30
    for folder, workers in ((out, []), (twice, ["--workers", "2"])):
        resumed = run_cli("run", spiral, "--resume", folder, *workers, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"resuming {folder} after epoch {reached}" in resumed.stdout
        assert checkpoint.load(folder / "checkpoint.npz")[1]["epoch"] == 30


def test_a_rank_that_raises_names_itself_and_the_cause(spiral, tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import sys\n"
        "from nnc.train import distributed\n"
        "from nnc.cli.main import main\n"
        "run_batch = distributed.DataParallelEngine.run_batch\n"
        "def failing(self, *a, **k):\n"
        "    if self.comm.rank == 1 and self.steps_done == 20:\n"
        "        raise MemoryError('simulated: out of memory')\n"
        "    self.steps_done += 1\n"
        "    return run_batch(self, *a, **k)\n"
        "distributed.DataParallelEngine.steps_done = 0\n"
        "distributed.DataParallelEngine.run_batch = failing\n"
        "sys.exit(main(sys.argv[1:]))\n")
    started = time.monotonic()
    ran = mpirun(script, "run", spiral, "--model", "spiral_mlp", "--out", tmp_path / "run", timeout=60)
    assert time.monotonic() - started < 30
    assert ran.returncode != 0
    assert "nnc: rank 1 of 2 failed, stopping every rank: MemoryError: simulated: out of memory" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_a_failing_rank_waits_until_the_launcher_has_read_its_message(tmp_path):
    import threading

    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as writer, os.fdopen(read_end, "r") as reader:
        writer.write("nnc: rank 1 of 2 failed\n")
        writer.flush()
        assert not distributed.wait_until_read([writer], timeout=0.05)   # nobody reads: gives up at the timeout
        taken = []
        launcher = threading.Timer(0.2, lambda: taken.append((time.monotonic(), reader.readline())))
        launcher.start()
        assert distributed.wait_until_read([writer], timeout=10)
        returned = time.monotonic()
        launcher.join()
        assert taken[0][1] == "nnc: rank 1 of 2 failed\n" and taken[0][0] <= returned
    with open(tmp_path / "log", "w") as file:   # a file, not a pipe: nothing to wait for
        file.write("x")
        assert distributed.wait_until_read([file], timeout=0)


def test_a_mistake_every_rank_would_make_is_reported_once(spiral, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "settings.json").write_text("{}")
    ran = run_cli("run", spiral, "--out", tmp_path / "old", "--workers", "2", cwd=tmp_path)
    assert ran.returncode == 1
    assert ran.stderr.startswith("error: --out ") and ran.stderr.count("error:") == 1, ran.stderr
    assert "Abort" not in ran.stderr and not ran.stdout


def test_workers_without_mpi4py_is_one_clear_error(spiral, tmp_path):
    shim = tmp_path / "shim" / "mpi4py"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('mpi4py hidden by the test')\n")
    env = nnc_env()
    env["PYTHONPATH"] = f"{shim.parent}{os.pathsep}{env['PYTHONPATH']}"
    ran = subprocess.run([sys.executable, "-m", "nnc", "run", str(spiral), "--workers", "2"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1
    assert ran.stderr.strip() == ("error: workers need MPI, and mpi4py is not installed\n"
                                  "hint: pip install -e '.[mpi]'")
