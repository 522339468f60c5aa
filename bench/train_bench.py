"""Training speed of nnc against PyTorch (eager) and JAX (jit) on this machine.

    .venv/bin/pip install -e '.[bench]'          # torch==2.13.0 (CPU build) and jax
    .venv/bin/python bench/train_bench.py         # full table: 1 and 2 threads, batch 32 and 128
    .venv/bin/python bench/train_bench.py --threads 2 --batches 128 --rounds 5 --models mlp

The models: MLP 784-256-128-10 (ReLU, softmax cross-entropy; examples/mnist_mlp.nn), LeNet-5
(examples/lenet5.nn) and an LSTM reading MNIST rows as 28 time steps of 28 features, 128 hidden
units, then a dense layer (examples/mnist_lstm.nn; PyTorch's nn.LSTM, JAX's lax.scan over the
same cell), all trained with plain SGD (lr 0.01) on the same synthetic MNIST-shaped data
(standard-normal images, uniform labels), each step on a batch gathered from a shuffled index
array. The MLP and LeNet-5 run at batch 32 and 128, the LSTM at 64 (--batches overrides).
Each framework runs in a process of its own per thread count (thread counts are
fixed before the libraries start their pools: OMP/MKL/OpenBLAS variables, torch.set_num_threads,
XLA flags; and one library's idle threads spinning on a core must not slow another down), and
the driver interleaves them round by round, so that a noisy neighbour hits them alike. The
table shows the median samples/s over the rounds, the ratios nnc / PyTorch and nnc / JAX, and
first-step (compile) times: nnc cold (empty disk cache) and warm (cached), JAX's first jitted
step. The GEMM lines time C = A·B for 128×784×256 float32 in nnc and in NumPy (OpenBLAS) at the
same thread count. `--busy N` starts N processes that each keep a core busy for the whole run (a
machine shared with other jobs), to see how each framework copes with a core it does not get;
`--frameworks nnc,nnc-1t,pytorch,jax` adds nnc on one thread to the same interleaved rounds, the
fair baseline for nnc at its default thread count on such a machine.
Each round starts once nothing else runs (`settle`): another library's threads still spinning
after its round would otherwise take a core from the next.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"mlp": ROOT / "examples" / "mnist_mlp.nn", "lenet": ROOT / "examples" / "lenet5.nn",
            "lstm": ROOT / "examples" / "mnist_lstm.nn"}
NAMES = {"mlp": "MLP", "lenet": "LeNet-5", "lstm": "LSTM"}
BATCHES = {"mlp": [32, 128], "lenet": [32, 128], "lstm": [64]}
SEQUENCE, FEATURES, HIDDEN = 28, 28, 128   # the LSTM: MNIST rows as time steps
LR = 0.01
ROWS_PER_BATCH = 8          # the synthetic dataset holds this many batches
ROUND_SECONDS = 0.4
PAUSE_BETWEEN_ROUNDS = 0.05
SETTLE_SECONDS = 1.0        # at most this long, before a round, for other frameworks' threads to stop spinning


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


# ---- the frameworks, each run in a process of its own ------------------------------------------


def synthetic(model: str, rows: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = {"mlp": (rows, 784), "lenet": (rows, 1, 28, 28), "lstm": (rows, SEQUENCE, FEATURES)}[model]
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
        from nnc.passes.optim import LR as LR_INPUT
        from nnc.runtime.init import init_params
        from nnc.runtime.task import training_task
        from nnc.specs import OPTIMIZERS, Spec
        from nnc.train.bench import empty_compile_cache
        from nnc.train.engines import NativeEngine

        m = nnc.load(EXAMPLES[model])
        g = m.training_step(Spec("sgd", {**OPTIMIZERS["sgd"], "lr": LR}))
        targets = [g.loss, g.outputs[training_task(m.graph).output]]
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
        self.loss_node = g.loss
        self.orders = Orders(len(y), batch)
        self.seed = 0

    def step(self) -> float:
        self.seed += 1
        values, _ = self.engine.run_batch(self.data, self.orders.next(), self.extra, self.seed)
        return float(values[self.loss_node])


def torch_model(model: str):
    import torch.nn as nn

    class LastState(nn.Module):
        """nn.LSTM over [B, T, D], then a dense layer on the last hidden state."""

        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(FEATURES, HIDDEN, batch_first=True)
            self.fc = nn.Linear(HIDDEN, 10)

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.fc(h[-1])

    if model == "lstm":
        return LastState()
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
    if model == "lstm":   # PyTorch's cell: gates i, f, g, o; weights transposed ([D, 4H], [H, 4H])
        bound = 1.0 / HIDDEN ** 0.5
        k = jax.random.split(keys[0], 4)
        params = [tuple(jax.random.uniform(kk, shape, minval=-bound, maxval=bound) for kk, shape in
                        zip(k, ((FEATURES, 4 * HIDDEN), (HIDDEN, 4 * HIDDEN), (4 * HIDDEN,), (4 * HIDDEN,)))),
                  dense(keys[1], HIDDEN, 10)]

        def forward(p, x):
            (w_ih, w_hh, b_ih, b_hh), (w, b) = p

            def cell(carry, x_t):
                h, c = carry
                z = x_t @ w_ih + b_ih + h @ w_hh + b_hh
                i, f, g, o = jnp.split(z, 4, axis=1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), None

            zeros = jnp.zeros((x.shape[0], HIDDEN), x.dtype)
            (h, _), _ = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(x, 0, 1))
            return h @ w + b
        return params, forward
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


class NncOneThreadRunner(NncRunner):
    """nnc on one thread whatever the thread count of the rounds: the baseline of the busy-machine comparison,
    measured in the same interleaved rounds as nnc at the round's thread count."""
    name = "nnc-1t"

    def __init__(self, model: str, batch: int, threads: int):
        super().__init__(model, batch, 1)


RUNNERS = {"nnc": NncRunner, "pytorch": TorchRunner, "jax": JaxRunner, "nnc-1t": NncOneThreadRunner}
DEFAULT_FRAMEWORKS = ["nnc", "pytorch", "jax"]


def timed_round(runner, steps: int, batch: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        runner.step()
    return steps * batch / (time.perf_counter() - start)


class Gemm:
    """C = A·B, 128×784×256 float32: nnc's kernel alone or NumPy's (OpenBLAS) sgemm."""

    M, K, N = 128, 784, 256

    def __init__(self, framework: str, threads: int):
        import numpy as np

        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((self.M, self.K)).astype(np.float32)
        self.b = rng.standard_normal((self.K, self.N)).astype(np.float32)
        self.out = np.empty((self.M, self.N), np.float32)
        if framework == "nnc":
            self.call = self._nnc(threads)
        else:
            self.call = lambda: np.matmul(self.a, self.b, out=self.out)

    def _nnc(self, threads: int):
        import numpy as np

        from nnc.backend import compile_graph
        from nnc.ir import ops
        from nnc.ir.graph import Graph
        from nnc.ir.types import TensorType

        g = Graph()
        nodes = {}
        for name, shape in (("a", (self.M, self.K)), ("b", (self.K, self.N))):
            t = TensorType(shape)
            nodes[name] = g.add_op(ops.input, (), {"name": name, "type": t}, type=t)
            g.inputs[name] = nodes[name]
        c = g.add_op(ops.matmul, (nodes["a"], nodes["b"]))
        g.outputs["c"] = c
        exe = compile_graph(g, {}, [c], threads=threads)
        exe.bind({"a": self.a, "b": self.b})
        exe.step()
        np.testing.assert_allclose(exe.view(c), self.a @ self.b, rtol=1e-3, atol=1e-3)
        self.exe = exe
        return exe.step

    def gflops(self, reps: int) -> float:
        start = time.perf_counter()
        for _ in range(reps):
            self.call()
        return 2 * self.M * self.K * self.N * reps / (time.perf_counter() - start) / 1e9


def serve(framework: str, threads: int) -> None:
    """One framework in its own process (so its threads never compete with another framework's
    spinning threads), answering one JSON command per line on stdin."""
    runner = None
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "setup":
            runner = RUNNERS[framework](cmd["model"], cmd["batch"], threads)
            gc.collect()   # each framework's setup garbage, collected before any timed round
            for _ in range(3):
                runner.step()
            start = time.perf_counter()
            for _ in range(3):
                runner.step()
            reply = {"cold": runner.cold, "warm": runner.warm, "step": (time.perf_counter() - start) / 3}
        elif cmd["cmd"] == "round":
            reply = {"rate": timed_round(runner, cmd["steps"], cmd["batch"])}
        elif cmd["cmd"] == "gemm":
            runner = Gemm(framework, threads)
            runner.gflops(20)
            reply = {"ok": True}
        elif cmd["cmd"] == "gemm_round":
            reply = {"rate": runner.gflops(cmd["reps"])}
        else:
            return
        print(json.dumps(reply), flush=True)


class Server:
    """A `serve` process for one framework at one thread count."""

    def __init__(self, framework: str, threads: int):
        self.framework = framework
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", framework, "--threads", str(threads)],
                                     env=thread_environment(threads), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.framework} process stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


def runnable() -> int | None:
    """The machine's runnable tasks now (the fourth field of /proc/loadavg), or None off Linux."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def settle(busy: int) -> None:
    """Wait until the previous round's idle threads have stopped spinning: OpenBLAS's spin for about
    0.1 s after a call, and a round started among them would measure a machine with fewer cores
    (nnc's Pace even runs its steps alone there). Done when nothing runs but this process and the
    `busy` load, or after SETTLE_SECONDS."""
    time.sleep(PAUSE_BETWEEN_ROUNDS)
    deadline = time.perf_counter() + SETTLE_SECONDS
    while time.perf_counter() < deadline and (runnable() or 0) > 1 + busy:
        time.sleep(0.01)


def interleaved(servers: dict, rounds: int, ask_round, busy: int = 0) -> dict:
    """Round r of every framework before round r + 1 of any, each started once the previous
    framework's idle threads have stopped spinning (`settle`). -> {framework: [rates]}"""
    rates = {name: [] for name in servers}
    for _ in range(rounds):
        for name, server in servers.items():
            settle(busy)
            rates[name].append(ask_round(server))
    return rates


def measure(threads: int, args) -> list:
    """Every model and batch size at this thread count, then the GEMM: a list of result rows."""
    results = []
    servers = {name: Server(name, threads) for name in args.frameworks}
    try:
        for model in args.models:
            for batch in args.batches or BATCHES[model]:
                setup = {name: s.ask(cmd="setup", model=model, batch=batch) for name, s in servers.items()}
                steps = {name: max(3, int(ROUND_SECONDS / max(v["step"], 1e-6))) for name, v in setup.items()}
                rates = interleaved(servers, args.rounds, lambda s, steps=steps, batch=batch:
                                    s.ask(cmd="round", steps=steps[s.framework], batch=batch)["rate"], args.busy)
                for name in servers:
                    results.append({"kind": "train", "model": model, "batch": batch, "threads": threads,
                                    "framework": name, "samples_per_second": statistics.median(rates[name]),
                                    "rounds": [round(x) for x in rates[name]], "cold": setup[name]["cold"],
                                    "warm": setup[name]["warm"]})
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        for s in servers.values():
            s.close()
    if args.gemm:
        gemm = {name: Server(name, threads) for name in ("nnc", "numpy")}
        try:
            for s in gemm.values():
                s.ask(cmd="gemm")
            rates = interleaved(gemm, args.rounds, lambda s: s.ask(cmd="gemm_round", reps=200)["rate"], args.busy)
        finally:
            for s in gemm.values():
                s.close()
        results.append({"kind": "gemm", "threads": threads, **{k: statistics.median(v) for k, v in rates.items()}})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


# ---- the driver: the processes, interleaved round by round, then the table -------------------


def table(results: list) -> str:
    train = [r for r in results if r["kind"] == "train"]
    keyed = {(r["model"], r["batch"], r["threads"], r["framework"]): r for r in train}
    rows = ["| model | batch | threads | nnc | PyTorch eager | JAX jit | nnc / PyTorch | nnc / JAX |",
            "|---|---|---|---|---|---|---|---|"]
    for model, batch, threads in sorted({(r["model"], r["batch"], r["threads"]) for r in train},
                                        key=lambda k: (list(EXAMPLES).index(k[0]), -k[1], -k[2])):
        rate = {f: keyed.get((model, batch, threads, f), {}).get("samples_per_second") for f in RUNNERS}

        def fmt(v):
            return f"{v / 1000:.1f}k" if v else "–"

        def ratio(a, b):
            return f"{a / b:.2f}×" if a and b else "–"
        rows.append(f"| {NAMES[model]} | {batch} | {threads} | {fmt(rate['nnc'])} | "
                    f"{fmt(rate['pytorch'])} | {fmt(rate['jax'])} | {ratio(rate['nnc'], rate['pytorch'])} | "
                    f"{ratio(rate['nnc'], rate['jax'])} |")
    one = [r for r in train if r["framework"] == "nnc-1t"]
    if one:
        rows.append("")
        rows.append("| model | batch | threads | nnc | nnc on 1 thread, same rounds | nnc / nnc on 1 thread |")
        rows.append("|---|---|---|---|---|---|")
        for r in sorted(one, key=lambda r: (list(EXAMPLES).index(r["model"]), -r["batch"], -r["threads"])):
            default = keyed.get((r["model"], r["batch"], r["threads"], "nnc"), {}).get("samples_per_second")
            single = r["samples_per_second"]
            rows.append(f"| {NAMES[r['model']]} | {r['batch']} | {r['threads']} | "
                        f"{f'{default / 1000:.1f}k' if default else '–'} | {single / 1000:.1f}k | "
                        f"{f'{default / single:.2f}×' if default else '–'} |")
    rows.append("")
    rows.append("| first step (compile) | nnc cold | nnc warm | JAX jit |")
    rows.append("|---|---|---|---|")
    for model, batch, threads in sorted({(r["model"], r["batch"], r["threads"]) for r in train},
                                        key=lambda k: (list(EXAMPLES).index(k[0]), -k[1], -k[2])):
        n = keyed.get((model, batch, threads, "nnc"), {})
        j = keyed.get((model, batch, threads, "jax"), {})

        def sec(v):
            return f"{v:.3f} s" if v is not None else "–"
        rows.append(f"| {NAMES[model]} batch {batch}, {threads} thread(s) | "
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


def busy(n: int) -> list:
    """n processes that each keep one core busy until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="batch sizes for every model (default: each model's own)")
    p.add_argument("--models", type=lambda s: s.split(","), default=list(EXAMPLES))
    p.add_argument("--frameworks", type=lambda s: s.split(","), default=DEFAULT_FRAMEWORKS,
                   help=f"of {', '.join(RUNNERS)} (default: {','.join(DEFAULT_FRAMEWORKS)}); nnc-1t is nnc on one "
                        "thread in the same rounds as the others")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--no-gemm", dest="gemm", action="store_false")
    p.add_argument("--json", metavar="FILE", help="also write every measurement here")
    p.add_argument("--busy", type=int, default=0, metavar="N",
                   help="start N processes that each spin on a core for the whole run (a busy machine)")
    p.add_argument("--serve", metavar="FRAMEWORK", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.threads[0])
        return 0
    results = []
    load = busy(args.busy)
    try:
        for threads in args.threads:
            results += measure(threads, args)
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    if args.busy:
        print(f"Under load: {args.busy} process(es) spinning on a core each for the whole run; "
              f"load average {os.getloadavg()[0]:.1f} at the end.\n")
    if args.json:
        Path(args.json).write_text(json.dumps([{**r, "busy": args.busy} for r in results], indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
