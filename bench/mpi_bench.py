"""Data-parallel training speed on MPI (nnc.train.distributed) against one process with as many threads.

    .venv/bin/pip install -e '.[mpi]'
    .venv/bin/python bench/mpi_bench.py                     # MLP and LeNet-5, 1, 2 and 4 ranks, batch 128
    .venv/bin/python bench/mpi_bench.py --models mlp --ranks 1 2 --seconds 2

For each model (examples/mnist_mlp.nn, examples/lenet5.nn, trained with SGD, lr 0.01, on synthetic
MNIST-shaped data: standard-normal images, uniform labels) and each rank count N it runs
`mpirun -n N python bench/mpi_bench.py --worker ...`: N ranks of one thread each share every global batch
(the same global batch for every N), and it times whole epochs after a warm-up epoch; against that, one process
(no MPI) with N threads trains on the same global batch. Each worker also times its in-place Allreduce of the
gradient buffer (the model's gradients, float32, plus three values), the median of ALLREDUCE_REPEATS calls.
More ranks or threads than cores oversubscribe the machine: the table says so. Samples/s are global samples
(every rank's) per second; the figures land in docs/distributed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"mlp": ROOT / "examples" / "mnist_mlp.nn", "lenet": ROOT / "examples" / "lenet5.nn"}
NAMES = {"mlp": "MLP 784-256-128-10", "lenet": "LeNet-5"}
STEPS_PER_EPOCH = 16
ALLREDUCE_REPEATS = 200


def worker(model_file: str, batch: int, seconds: float, threads: int) -> dict:
    """One rank (or the one process): samples/s over whole epochs and the Allreduce time of its gradients."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from nnc.model import load
    from nnc.train import distributed
    from nnc.train.config import run_config
    from nnc.train.trainer import Trainer

    comm = distributed.world()
    model = load(model_file)
    config = run_config(model.settings, batch=batch, optimizer="sgd", lr=0.01, threads=threads, seed=0,
                        schedule="constant")
    trainer = Trainer(model, config, comm=comm)
    train = model.random_inputs(batch=batch * STEPS_PER_EPOCH, seed=1)
    trainer.train_epoch(train)   # warm-up
    epochs, start = 0, time.perf_counter()
    while True:
        trainer.train_epoch(train)
        epochs += 1
        elapsed = time.perf_counter() - start
        done = np.array([elapsed >= seconds], np.float32)
        if comm is not None:   # every rank stops after the same epoch
            comm.allreduce(done)
        if done[0]:
            break
    result = {"samples_per_second": epochs * STEPS_PER_EPOCH * batch / elapsed,
              "step_ms": 1000 * elapsed / (epochs * STEPS_PER_EPOCH),
              "gradient_mb": sum(v.size for k, v in trainer.state().items() if k in model.graph.params
                                 and model.graph.nodes[model.graph.params[k]]["attrs"]["trainable"]) * 4 / 1e6}
    if comm is not None:
        buffer = trainer.step.buffer.copy()
        times = []
        comm.comm.Barrier()
        for _ in range(ALLREDUCE_REPEATS):
            t0 = time.perf_counter()
            comm.allreduce(buffer)
            times.append(time.perf_counter() - t0)
        result["allreduce_ms"] = 1000 * statistics.median(times)
        result["allreduce_bytes"] = buffer.nbytes
        if comm.rank:
            return {}
    return result


def measure(model: str, batch: int, seconds: float, ranks: int, threads: int) -> dict:
    """`ranks` ranks of `threads` threads under mpirun (ranks > 1), or one process of `threads` threads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, __file__, "--worker", str(EXAMPLES[model]), str(batch), str(seconds), str(threads)]
    if ranks > 1:
        command = [str(Path(sys.executable).parent / "mpirun"), "-n", str(ranks), *command]
    ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if ran.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{ran.stdout}{ran.stderr}")
    return json.loads(ran.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=4, metavar=("MODEL", "BATCH", "SECONDS", "THREADS"), help=argparse.SUPPRESS)
    p.add_argument("--models", nargs="+", default=["mlp", "lenet"], choices=sorted(EXAMPLES))
    p.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--batch", type=int, default=128, help="the global batch (default 128)")
    p.add_argument("--seconds", type=float, default=3.0, help="timed training per measurement")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    args = p.parse_args()
    if args.worker:
        model, batch, seconds, threads = args.worker
        result = worker(model, int(batch), float(seconds), int(threads))
        if result:
            print(json.dumps(result))
        return
    cores = len(os.sched_getaffinity(0))
    print(f"global batch {args.batch}, {cores} cores; ranks of 1 thread each against 1 process with as many threads")
    rows = []
    for model in args.models:
        for n in args.ranks:
            over = " (oversubscribed)" if n > cores else ""
            dp = measure(model, args.batch, args.seconds, n, 1)
            alone = measure(model, args.batch, args.seconds, 1, n) if n > 1 else dp
            rows.append({"model": model, "ranks": n, "data_parallel": dp, "one_process": alone})
            allreduce = (f"allreduce {dp['allreduce_ms']:.3f} ms of {dp['allreduce_bytes'] / 1e6:.2f} MB"
                         if "allreduce_ms" in dp else "no allreduce")
            print(f"{NAMES[model]:>18}  {n} rank{'s' if n > 1 else ' '}{over:16}  "
                  f"{dp['samples_per_second']:9.0f} samples/s ({dp['step_ms']:.2f} ms/step)   "
                  f"1 process × {n} threads {alone['samples_per_second']:9.0f} samples/s "
                  f"({alone['step_ms']:.2f} ms/step)   {allreduce}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
