"""Training speed of nnc against PyTorch (eager) and JAX (jit) on this machine.

    .venv/bin/pip install -e '.[bench]'          # torch==2.13.0 (CPU build) and jax
    .venv/bin/python bench/train_bench.py         # full table: 1 and 2 threads, batch 32 and 128
    .venv/bin/python bench/train_bench.py --threads 2 --batches 128 --rounds 5 --models mlp

The models: MLP 784-256-128-10 (ReLU, softmax cross-entropy; examples/mnist_mlp.nn) and LeNet-5
(examples/lenet5.nn), both trained with plain SGD (lr 0.01) on the same synthetic MNIST-shaped
data (standard-normal images, uniform labels), each step on a batch gathered from a shuffled
index array. For each thread count one worker process (thread counts must be fixed before
the libraries start their pools: OMP/MKL/OpenBLAS variables, torch.set_num_threads, XLA flags)
runs the frameworks interleaved, round by round, so that a noisy neighbour hits them alike;
the table shows the median samples/s over the rounds, the ratios nnc / PyTorch and
nnc / JAX, and first-step (compile) times: nnc cold (empty disk cache) and warm (cached),
JAX's first jitted step. The GEMM line times C = A·B for 128×784×256 float32 in nnc and in
NumPy (OpenBLAS), same thread count.
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
LR = 0.01
ROWS_PER_BATCH = 8          # the synthetic dataset holds this many batches
ROUND_SECONDS = 0.4


def thread_environment(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    flags = env.get("XLA_FLAGS", "")
    if threads == 1:
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["XLA_FLAGS"] = flags.strip()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---- the worker: one thread count, every framework interleaved ------------------------------


def synthetic(model: str, rows: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (rows, 784) if model == "mlp" else (rows, 1, 28, 28)
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, rows).astype(np.int32)


class Orders:
    """Shuffled batch indices, a fresh permutation per pass over the data."""

    def __init__(self, rows: int, batch: int, seed: int = 1):
        import numpy as np

        self.rng = np.random.default_rng(seed)
        self.rows, self.batch, self.i = rows, batch, 0
        self.order = self.rng.permutation(rows)

    def next(self):
        if (self.i + 1) * self.batch > self.rows:
            self.order, self.i = self.rng.permutation(self.rows), 0
        idx = self.order[self.i * self.batch:(self.i + 1) * self.batch]
        self.i += 1
        return idx


class NncRunner:
    name = "nnc"

    def __init__(self, model: str, batch: int, threads: int):
        import nnc
        from nnc.bench import empty_compile_cache
        from nnc.init import init_params
        from nnc.optim import LR as LR_INPUT
        from nnc.optim import training_step
        from nnc.settings import OPTIMIZERS, Spec
        from nnc.train import NativeEngine, Task

        m = nnc.load(EXAMPLES[model])
        g = training_step(m, Spec("sgd", {**OPTIMIZERS["sgd"], "lr": LR}))
        targets = [g.graph["loss"], g.graph["outputs"][Task.of(m).output]]
        with empty_compile_cache():
            start = time.perf_counter()
            NativeEngine(g, batch, targets, threads=threads)
            self.cold = time.perf_counter() - start
            start = time.perf_counter()
            self.engine = NativeEngine(g, batch, targets, threads=threads)
            self.warm = time.perf_counter() - start
        self.engine.set_params(init_params(g, 0))
        x, y = synthetic(model, batch * ROWS_PER_BATCH)
        self.data = {"image": x, "label": y}
        import numpy as np
        self.extra = {LR_INPUT: np.asarray(LR, dtype=np.float32)}
        self.loss_node = g.graph["loss"]
        self.orders = Orders(len(y), batch)
        self.seed = 0

    def step(self) -> float:
        self.seed += 1
        values, _ = self.engine.run_batch(self.data, self.orders.next(), self.extra, self.seed)
        return float(values[self.loss_node])


def torch_model(model: str):
    import torch.nn as nn

    if model == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


class TorchRunner:
    name = "pytorch"

    def __init__(self, model: str, batch: int, threads: int):
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        self.net = torch_model(model)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        x, y = synthetic(model, batch * ROWS_PER_BATCH)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y).long()
        self.orders = Orders(len(y), batch)
        start = time.perf_counter()
        self.step()
        self.cold = self.warm = time.perf_counter() - start

    def step(self) -> float:
        idx = self.torch.from_numpy(self.orders.next())
        xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.net(xb), yb)
        loss.backward()
        self.opt.step()
        return loss.item()


def jax_model(model: str):
    import jax
    import jax.numpy as jnp

    def dense(key, n_in, n_out):
        bound = 1.0 / n_in ** 0.5
        k1, k2 = jax.random.split(key)
        return (jax.random.uniform(k1, (n_in, n_out), minval=-bound, maxval=bound),
                jax.random.uniform(k2, (n_out,), minval=-bound, maxval=bound))

    def conv(key, c_in, c_out, k):
        bound = 1.0 / (c_in * k * k) ** 0.5
        k1, k2 = jax.random.split(key)
        return (jax.random.uniform(k1, (c_out, c_in, k, k), minval=-bound, maxval=bound),
                jax.random.uniform(k2, (c_out,), minval=-bound, maxval=bound))

    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    if model == "mlp":
        params = [dense(keys[0], 784, 256), dense(keys[1], 256, 128), dense(keys[2], 128, 10)]

        def forward(p, x):
            for i, (w, b) in enumerate(p):
                x = x @ w + b
                if i < len(p) - 1:
                    x = jax.nn.relu(x)
            return x
        return params, forward

    params = [conv(keys[0], 1, 6, 5), conv(keys[1], 6, 16, 5), dense(keys[2], 400, 120),
              dense(keys[3], 120, 84), dense(keys[4], 84, 10)]

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def forward(p, x):
        for (w, b), pad in zip(p[:2], (2, 0)):
            x = jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)],
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
            x = pool(jax.nn.relu(x + b[None, :, None, None]))
        x = x.reshape(x.shape[0], -1)
        for i, (w, b) in enumerate(p[2:]):
            x = x @ w + b
            if i < 2:
                x = jax.nn.relu(x)
        return x
    return params, forward


class JaxRunner:
    name = "jax"

    def __init__(self, model: str, batch: int, threads: int):
        import jax
        import jax.numpy as jnp

        params, forward = jax_model(model)

        def loss_fn(p, x, y):
            logits = forward(p, x)
            return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, y[:, None], 1)[:, 0])

        def train_step(p, data_x, data_y, idx):
            x, y = data_x[idx], data_y[idx]
            loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
            return jax.tree_util.tree_map(lambda w, g: w - LR * g, p, grads), loss

        self.train_step = jax.jit(train_step, donate_argnums=0)
        x, y = synthetic(model, batch * ROWS_PER_BATCH)
        self.x, self.y = jax.device_put(x), jax.device_put(y)
        self.params = params
        self.orders = Orders(len(y), batch)
        start = time.perf_counter()
        self.step()
        self.cold = time.perf_counter() - start
        self.warm = None

    def step(self) -> float:
        self.params, loss = self.train_step(self.params, self.x, self.y, self.orders.next())
        return float(loss)   # waits for the step, like the other two


RUNNERS = {"nnc": NncRunner, "pytorch": TorchRunner, "jax": JaxRunner}


def timed_round(runner, steps: int, batch: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        runner.step()
    return steps * batch / (time.perf_counter() - start)


def gemm_rates(threads: int, rounds: int) -> dict:
    """C = A·B, 128×784 by 784×256: nnc's kernel alone and NumPy's OpenBLAS sgemm, GFLOP/s."""
    import numpy as np

    from nnc.backend import compile_graph
    from nnc.graph import Graph
    from nnc.types import TensorType

    m, k, n = 128, 784, 256
    g = Graph()
    nodes = {}
    for name, shape in (("a", (m, k)), ("b", (k, n))):
        t = TensorType(shape)
        nodes[name] = g.add_op("input", (), {"name": name, "type": t}, type=t)
        g.graph["inputs"][name] = nodes[name]
    c = g.add_op("matmul", (nodes["a"], nodes["b"]))
    g.graph["outputs"]["c"] = c
    exe = compile_graph(g, {}, [c], threads=threads)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    exe.bind({"a": a, "b": b})
    exe.step()
    np.testing.assert_allclose(exe.view(c), a @ b, rtol=1e-3, atol=1e-3)
    out = np.empty((m, n), np.float32)
    flops = 2 * m * k * n
    reps = 200
    rates = {"nnc": [], "numpy": []}
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            exe.step()
        rates["nnc"].append(flops * reps / (time.perf_counter() - start) / 1e9)
        start = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=out)
        rates["numpy"].append(flops * reps / (time.perf_counter() - start) / 1e9)
    return {k: statistics.median(v) for k, v in rates.items()}


def worker(args) -> None:
    threads = args.threads[0]
    for model in args.models:
        for batch in args.batches:
            runners = [RUNNERS[name](model, batch, threads) for name in args.frameworks]
            steps = {}
            for r in runners:
                for _ in range(3):
                    r.step()
                start = time.perf_counter()
                r.step()
                steps[r.name] = max(3, int(ROUND_SECONDS / max(time.perf_counter() - start, 1e-6)))
            rates = {r.name: [] for r in runners}
            for _ in range(args.rounds):
                for r in runners:
                    rates[r.name].append(timed_round(r, steps[r.name], batch))
            for r in runners:
                print(json.dumps({"kind": "train", "model": model, "batch": batch, "threads": threads,
                                  "framework": r.name, "samples_per_second": statistics.median(rates[r.name]),
                                  "rounds": [round(x) for x in rates[r.name]], "cold": r.cold, "warm": r.warm}),
                      flush=True)
    if args.gemm:
        print(json.dumps({"kind": "gemm", "threads": threads, **gemm_rates(threads, args.rounds)}), flush=True)


# ---- the driver: one worker per thread count, then the table ---------------------------------


def table(results: list) -> str:
    train = [r for r in results if r["kind"] == "train"]
    keyed = {(r["model"], r["batch"], r["threads"], r["framework"]): r for r in train}
    rows = ["| model | batch | threads | nnc | PyTorch eager | JAX jit | nnc / PyTorch | nnc / JAX |",
            "|---|---|---|---|---|---|---|---|"]
    for model, batch, threads in sorted({(r["model"], r["batch"], r["threads"]) for r in train},
                                        key=lambda k: (k[0] != "mlp", -k[1], -k[2])):
        rate = {f: keyed.get((model, batch, threads, f), {}).get("samples_per_second") for f in RUNNERS}

        def fmt(v):
            return f"{v / 1000:.1f}k" if v else "–"

        def ratio(a, b):
            return f"{a / b:.2f}×" if a and b else "–"
        rows.append(f"| {'MLP' if model == 'mlp' else 'LeNet-5'} | {batch} | {threads} | {fmt(rate['nnc'])} | "
                    f"{fmt(rate['pytorch'])} | {fmt(rate['jax'])} | {ratio(rate['nnc'], rate['pytorch'])} | "
                    f"{ratio(rate['nnc'], rate['jax'])} |")
    rows.append("")
    rows.append("| first step (compile) | nnc cold | nnc warm | JAX jit |")
    rows.append("|---|---|---|---|")
    for model, batch, threads in sorted({(r["model"], r["batch"], r["threads"]) for r in train},
                                        key=lambda k: (k[0] != "mlp", -k[1], -k[2])):
        n = keyed.get((model, batch, threads, "nnc"), {})
        j = keyed.get((model, batch, threads, "jax"), {})

        def sec(v):
            return f"{v:.3f} s" if v is not None else "–"
        rows.append(f"| {'MLP' if model == 'mlp' else 'LeNet-5'} batch {batch}, {threads} thread(s) | "
                    f"{sec(n.get('cold'))} | {sec(n.get('warm'))} | {sec(j.get('cold'))} |")
    gemm = [r for r in results if r["kind"] == "gemm"]
    if gemm:
        rows.append("")
        rows.append("| GEMM 128×784×256 | nnc GFLOP/s | NumPy (OpenBLAS) GFLOP/s | nnc / NumPy |")
        rows.append("|---|---|---|---|")
        for r in sorted(gemm, key=lambda r: r["threads"]):
            rows.append(f"| {r['threads']} thread(s) | {r['nnc']:.1f} | {r['numpy']:.1f} | "
                        f"{r['nnc'] / r['numpy']:.2f}× |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[32, 128])
    p.add_argument("--models", type=lambda s: s.split(","), default=["mlp", "lenet"])
    p.add_argument("--frameworks", type=lambda s: s.split(","), default=list(RUNNERS))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--no-gemm", dest="gemm", action="store_false")
    p.add_argument("--json", metavar="FILE", help="also write every measurement here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    results = []
    for threads in args.threads:
        cmd = [sys.executable, __file__, "--worker", "--threads", str(threads),
               "--batches", ",".join(map(str, args.batches)), "--models", ",".join(args.models),
               "--frameworks", ",".join(args.frameworks), "--rounds", str(args.rounds)]
        if not args.gemm:
            cmd.append("--no-gemm")
        proc = subprocess.run(cmd, env=thread_environment(threads), stdout=subprocess.PIPE, text=True, check=True)
        for line in proc.stdout.splitlines():
            results.append(json.loads(line))
            print(line, file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
