"""Data-parallel training on MPI: the communicator, each rank's shard of a batch, the split training step, the
sharded evaluation and the launcher of `nnc run --workers N`.

`mpirun -n N nnc run ...` (or `srun` on a Slurm cluster) starts N ranks; each
compiles the model and reads rows [r·b/N, (r+1)·b/N) of every global batch of b
examples (the `batch` setting), the same examples in the same order as one
process with the same seed. A step is two native calls with one in-place
Allreduce between them (`DataParallelEngine`): the gradient graph
(nnc.passes.pipeline.gradient_step) writes each rank's mean gradient, scaled by
its share of the batch, into one contiguous float32 buffer that also carries the
loss, the correct count and the Ctrl-C flag; after the sum the update graph
(`update_step`) reads the averaged gradients straight from that buffer, so
clipping and weight decay see what one process with batch b would. Every rank
then holds the same parameters and optimizer state (all ranks add the same
numbers); batch norm's running statistics, computed from each rank's own shard
(PyTorch DDP's default), are broadcast from rank 0 after each step so they stay
bit-equal too. With the train setting sync_batchnorm the gradient step's own
cross_rank_sum kernels (nnc/ir/ops/collective.py) call back into
`DataParallelEngine._cross_rank_sum` for an Allreduce in the middle of the
step, so batch norm uses the whole batch's statistics. Only rank 0 prints and
writes the run folder (nnc.cli.run).

mpi4py is imported only here, only when a run has several ranks.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from ..backend.kernels.collective import connect
from ..errors import NncError
from .engines import bindings
from .evaluator import Evaluator, join_chunks

MPI_HINT = "pip install -e '.[mpi]'"
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")   # set by MPICH's/Intel's, Open MPI's launchers
LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")
CORRECT = "correct"        # the key of a step's correct count (summed over the ranks) in its values
RANK_SEED = 1 << 40        # each rank's dropout draws: the step's seed plus rank × this
FAIL_GRACE_SECONDS = 1.0   # a failing rank but 0 waits this long for rank 0 to report the same failure
FORWARD_SECONDS = 5.0      # a failing rank waits at most this long for the launcher to take its last words
COLLECTIVE_FAILED = 3     # the status the native step stops with when sync_batchnorm's Allreduce raised
REPORTS = "NNC_RANK_REPORTS"   # set by `launch`: the folder where ranks leave their pid, failure and run folder


def launched_size() -> int:
    """The number of ranks an MPI launcher started this process among (1 when none did)."""
    for name in SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise NncError("workers need MPI, and mpi4py is not installed", hint=MPI_HINT) from None
    return MPI


class Communicator:
    """MPI's COMM_WORLD as a run uses it: rank, size, one in-place sum, a broadcast from rank 0, a gather."""

    def __init__(self):
        self.MPI = _mpi()
        self.comm = self.MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.report("pid", str(os.getpid()))

    def report(self, what: str, text: str) -> None:
        """Leave `text` for the launcher of `nnc run --workers` (nothing under a plain mpirun or srun)."""
        folder = os.environ.get(REPORTS)
        if folder:
            from ..fileio import atomic_write

            atomic_write(Path(folder) / f"rank{self.rank}.{what}", lambda f: f.write(text.encode("utf-8")))

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum the contiguous `buffer` over the ranks, in place."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def broadcast(self, buffer: np.ndarray) -> None:
        """Rank 0's `buffer` into every rank's, in place."""
        self.comm.Bcast(buffer, root=0)

    def allgather(self, value) -> list:
        return self.comm.allgather(value)

    def fail(self, rank_error: BaseException) -> None:
        """One message naming this rank and the cause, then MPI_Abort: the launcher stops every other rank.
        A user's mistake (an NncError) on rank 0 reads as in one process; the other ranks wait a moment first,
        so a mistake every rank makes is reported once, by rank 0, whose abort ends them."""
        import time

        if self.rank:
            time.sleep(FAIL_GRACE_SECONDS)
        if isinstance(rank_error, KeyboardInterrupt):
            message = "nnc: interrupted"
        elif isinstance(rank_error, NncError) and self.rank == 0:
            message = rank_error.format()
        else:
            cause = rank_error.format() if isinstance(rank_error, NncError) else \
                f"{type(rank_error).__name__}: {rank_error}".rstrip(": ")
            message = f"nnc: rank {self.rank} of {self.size} failed, stopping every rank: {cause}"
        self.report("failed", message)
        sys.stdout.flush()
        print(message, file=sys.stderr, flush=True)
        wait_until_read((sys.stdout, sys.stderr), FORWARD_SECONDS)
        code = 130 if isinstance(rank_error, KeyboardInterrupt) else 1
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())   # MPICH's own "Abort(1) on node 0 ..."
        self.comm.Abort(code)
        os._exit(code)   # MPICH's MPI_Abort returns to the caller while its launcher ends the job


def wait_until_read(streams, timeout: float) -> bool:
    """Wait until what this process wrote into `streams` that are pipes has been read from them, at most `timeout`
    seconds -> whether it was. MPICH's launcher reads a rank's output and its MPI_Abort on different descriptors,
    in whichever order the kernel reports them ready, and stops forwarding output once it has acted on the abort:
    under load, a message printed just before MPI_Abort was lost. Not a pipe (a terminal, a file): nothing to
    wait for."""
    import fcntl
    import stat
    import termios
    import time

    pipes = []
    for stream in streams:
        try:
            fd = stream.fileno()
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                pipes.append(fd)
        except (OSError, ValueError, AttributeError):
            continue
    deadline = time.monotonic() + timeout
    unread = bytearray(4)
    while pipes:
        try:
            fcntl.ioctl(pipes[-1], termios.FIONREAD, unread)
        except OSError:
            unread[:] = bytes(4)
        if int.from_bytes(unread, sys.byteorder) == 0:
            pipes.pop()
        elif time.monotonic() >= deadline:
            return False
        else:
            time.sleep(0.005)
    return True


def world() -> Communicator | None:
    """The communicator when an MPI launcher started several ranks, else None (a one-process run)."""
    return Communicator() if launched_size() > 1 else None


def shard(n: int, rank: int, size: int) -> slice:
    """Rank `rank`'s rows of `n`: [rank·n/size, (rank+1)·n/size), sizes differing by at most one."""
    return slice(rank * n // size, (rank + 1) * n // size)


def threads_per_rank(size: int, cores: int) -> int:
    """A rank's default threads: this machine's `cores` (nnc.train.config.usable_cores) shared by the ranks the
    launcher put on it."""
    local = next((int(os.environ[v]) for v in LOCAL_SIZE_VARIABLES if os.environ.get(v, "").isdigit()), size)
    return max(1, cores // max(local, 1))


# ---- the training step, split ----------------------------------------------------------------------------


class DataParallelEngine:
    """An engine (nnc.train.engines) whose step is the gradient graph on this rank's shard, one Allreduce of the
    gradients (and the loss, the correct count and the stop flag), and the update graph on the average."""

    def __init__(self, comm: Communicator, grad_graph, update_graph, batch: int, targets, threads: int | None = None,
                 sizes: dict | None = None, transform=None, count=None):
        from ..backend import compile_graph
        from ..runtime.init import init_params

        self.comm, self.batch, self.transform, self.count = comm, batch, transform, count
        self.rows = shard(batch, comm.rank, comm.size)
        if batch < comm.size:
            raise NncError(f"a batch of {batch} examples cannot be shared by {comm.size} workers",
                           hint=f"use --batch {comm.size} or more, or fewer workers")
        self.grad_graph, self.names = grad_graph, list(grad_graph.grads)
        grad_nodes = [grad_graph.grads[n] for n in self.names]
        self.grad = compile_graph(grad_graph, bindings(grad_graph, self.rows.stop - self.rows.start, sizes),
                                  list(targets) + grad_nodes, threads=threads)
        self._collective_error: BaseException | None = None
        connect(self.grad, self._cross_rank_sum)   # sync_batchnorm's sums over the ranks, inside the step
        self.update = compile_graph(update_graph, {}, list(update_graph.updates.values()), threads=threads)
        self.update.set_params(init_params(update_graph))   # the optimizer's state as it starts
        self.compile_seconds = self.grad.stats["compile_seconds"] + self.update.stats["compile_seconds"]
        self.loss_node = grad_graph.loss
        shapes = [self.grad.params[n].shape for n in self.names]
        ends = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
        self.gradient_values = int(ends[-1])
        self.buffer = np.zeros(self.gradient_values + 3, np.float32)   # + loss × rows, correct, stop
        self._slots = {n: self.buffer[a:b].reshape(s) for n, a, b, s in zip(self.names, ends[:-1], ends[1:], shapes)}
        self._grad_nodes = dict(zip(self.names, grad_nodes))
        self.shared = [n for n in grad_graph.updates if n not in self.update.params]   # batch norm's statistics
        self.stop_requested = False
        self.local_stop = None       # the trainer's should_stop: read before the sum, so every rank stops together
        self._inputs: dict = {}
        self._global: dict = {}
        self._views: dict | None = None
        self._grad_views: dict = {}
        self._update_inputs = {f"grad/{n}": slot for n, slot in self._slots.items()}

    @property
    def params(self) -> dict:
        """Every parameter and state: the trainable ones and the optimizer's from the update step, the rest
        (batch norm's running statistics, frozen parameters) from the gradient step."""
        return {**self.grad.params, **self.update.params}

    def set_params(self, params: dict) -> None:
        for exe in (self.grad, self.update):
            exe.set_params({k: v for k, v in params.items() if k in exe.params})

    def run(self, inputs: dict, seed: int) -> dict:
        """One step on the global batch `inputs` (the arrays of the whole batch, the learning rate among them)."""
        from ..passes.optim import LR

        rows = len(next(v for k, v in inputs.items() if k != LR))
        values, _ = self.run_batch({k: v for k, v in inputs.items() if k != LR}, np.arange(rows),
                                   {LR: inputs[LR]}, seed)
        return values

    def run_batch(self, data: dict, idx: np.ndarray, extra: dict, seed: int) -> tuple[dict, dict]:
        """One data-parallel step on the global batch `idx` of `data`: -> ({loss node: the batch's loss, CORRECT:
        its correct count}, this rank's shard of the batch)."""
        if len(idx) != self.batch:
            raise NncError(f"a data-parallel step takes batches of {self.batch} examples, got {len(idx)}")
        shard_rows = self.rows.stop - self.rows.start
        if not self._inputs:
            self._inputs = {k: np.empty((shard_rows,) + v.shape[1:], v.dtype) for k, v in data.items()}
            self.grad.bind(self._inputs)
            self._update_extra = {k: np.array(v) for k, v in extra.items()}
            self.update.bind({**self._update_inputs, **self._update_extra})
        if self.transform is None:
            for k, v in data.items():
                np.take(v, idx[self.rows], axis=0, out=self._inputs[k], mode="clip")
        else:   # the whole batch transformed as one process would, then this rank's rows
            if not self._global:
                self._global = {k: np.empty((self.batch,) + v.shape[1:], v.dtype) for k, v in data.items()}
            for k, v in data.items():
                np.take(v, idx, axis=0, out=self._global[k], mode="clip")
            self.transform(self._global, seed)
            for k in data:
                self._inputs[k][...] = self._global[k][self.rows]
        for k, v in extra.items():
            self._update_extra[k][...] = v
        try:
            self.grad.step((seed + self.comm.rank * RANK_SEED) & 0xFFFFFFFFFFFFFFFF)
        except NncError:
            if self._collective_error is not None:
                raise self._collective_error from None
            raise
        if self._views is None:   # the targets and gradients stay where they are from one step to the next
            self._views = {n: self.grad.view(n) for n in self.grad.targets}
            self._grad_views = {n: self.grad.view(node) for n, node in self._grad_nodes.items()}
        share = np.float32(shard_rows / self.batch)
        for n, slot in self._slots.items():
            np.multiply(self._grad_views[n], share, out=slot)
        values = self._views
        tail = self.buffer[self.gradient_values:]
        tail[0] = float(values[self.loss_node]) * shard_rows
        tail[1] = self.count(values, self._inputs) if self.count else 0.0
        tail[2] = 1.0 if self.local_stop is not None and self.local_stop() else 0.0
        self.comm.allreduce(self.buffer)
        self.update.step(seed)
        for n in self.names:
            self.grad.params[n][...] = self.update.params[n]
        if self.shared:
            self._broadcast_statistics()
        self.stop_requested = bool(tail[2] > 0)
        return {self.loss_node: np.float32(tail[0] / self.batch), CORRECT: float(tail[1])}, self._inputs

    def _cross_rank_sum(self, address: int, count: int, adjoint: int) -> int:
        """The collective of the gradient step's cross_rank_sum kernels (nnc/ir/ops/collective.py), called from
        its native code: the `count` float32 values at `address` summed over the ranks in place; the adjoint
        weights each rank's values by its share of the batch and divides the sum by this rank's share. A
        failure is kept for `run_batch` to raise and stops the step."""
        try:
            values = np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctypes.c_float)), shape=(count,))
            share = np.float32((self.rows.stop - self.rows.start) / self.batch)
            if adjoint:
                values *= share
            self.comm.allreduce(values)
            if adjoint:
                values /= share
            return 0
        except BaseException as e:   # an exception must not unwind through native code
            self._collective_error = e
            return COLLECTIVE_FAILED

    def _broadcast_statistics(self) -> None:
        stats = [self.grad.params[n] for n in self.shared]
        packed = np.concatenate([s.ravel() for s in stats]) if len(stats) > 1 else stats[0].ravel().copy()
        self.comm.broadcast(packed)
        start = 0
        for s in stats:
            s[...] = packed[start:start + s.size].reshape(s.shape)
            start += s.size


def engine(comm: Communicator, model, config, targets, sizes: dict | None = None, transform=None, count=None,
           frozen=()):
    """The data-parallel engine of `model`'s one-loss training step with `config`'s optimizer."""
    from ..passes.pipeline import gradient_step, update_step

    if config.backend != "llvm":
        raise NncError(f"workers run the native code: got --backend {config.backend}, expected llvm",
                       hint="leave out --backend, or train in one process")
    g = model.training_graph
    grad_graph = gradient_step(g, frozen=frozen)
    update_graph = update_step(g, config.optimizer, list(grad_graph.grads), weight_decay=config.weight_decay,
                               clip=config.clip)
    return grad_graph, DataParallelEngine(comm, grad_graph, update_graph, config.batch, targets,
                                          threads=config.threads, sizes=sizes, transform=transform, count=count)


# ---- evaluation -----------------------------------------------------------------------------------------------


class ShardedEvaluator(Evaluator):
    """The Evaluator with each split shared by the ranks: each runs its rows, the loss is summed and the outputs
    gathered in rank order, so every rank computes the metrics of the whole split."""

    def __init__(self, comm: Communicator, model, backend: str = "llvm", params: dict | None = None):
        super().__init__(model, backend, params)
        self.comm = comm

    def predict(self, data: dict) -> tuple[float, np.ndarray]:
        n = len(next(iter(data.values()))) if data else 0
        if n < self.comm.size:
            return super().predict(data)
        rows = shard(n, self.comm.rank, self.comm.size)
        loss, out = super().predict({k: v[rows] for k, v in data.items()})
        parts = self.comm.allgather((loss * (rows.stop - rows.start), out, rows.stop - rows.start))
        total = sum(p[0] for p in parts)
        return total / n, join_chunks([p[1] for p in parts], [p[2] for p in parts])


# ---- launching -------------------------------------------------------------------------------------------------


def mpirun() -> str:
    """The MPI launcher: the one next to this Python (the `mpi` extra's, in the venv), else `mpirun` on PATH."""
    beside = Path(sys.executable).parent / "mpirun"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpirun")
    if found is None:
        raise NncError("--workers needs MPI's launcher mpirun, and there is none next to this Python or on PATH",
                       hint=MPI_HINT)
    return found


def launch(workers: int, argv: list[str]) -> int:
    """`nnc run --workers N ...`: the same command on N ranks of this machine under mpirun -> its exit status.
    The ranks' output passes through; when a rank dies, MPICH's banner (which names a pid) becomes one line
    naming the rank and the cause, and the command that resumes from the last checkpoint."""
    import subprocess
    import tempfile

    _mpi()   # the clear message now, not N tracebacks from the ranks
    command = [mpirun(), "-n", str(workers), sys.executable, "-m", "nnc", *argv]
    with tempfile.TemporaryDirectory(prefix="nnc-ranks-") as reports:
        env = {**os.environ, REPORTS: reports, "PYTHONUNBUFFERED": "1"}
        banner: list[str] = []
        try:
            with subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True, bufsize=1) as proc:
                for line in proc.stdout:
                    if banner or line.startswith("====="):
                        banner.append(line)
                    else:
                        sys.stdout.write(line)
                        sys.stdout.flush()
            status = proc.returncode
        except KeyboardInterrupt:   # mpirun forwards Ctrl-C to the ranks, which save a checkpoint and stop
            return 130
        text = failure_text(Path(reports), workers, "".join(banner)) if status else ""
        if text:
            print(text, file=sys.stderr)
        return status


def failure_text(reports: Path, workers: int, banner: str) -> str:
    """What stopped a run of `workers` ranks, from the ranks' reports and MPICH's banner: the rank and the cause
    (an exception the rank named itself, or how its process ended), and how to resume."""
    import re

    if any(reports.glob("rank*.failed")):   # the rank printed its own message (Communicator.fail)
        text = ""
    else:
        ranks = {p.read_text().strip(): p.name.removeprefix("rank").removesuffix(".pid") for p in reports.glob("*.pid")}
        pid = re.search(r"PID (\d+)", banner)
        cause = re.search(r"EXIT STRING: (.+)", banner) or re.search(r"EXIT CODE: (\d+)", banner)
        if pid is None or pid.group(1) not in ranks:   # no rank died (Ctrl-C, an error rank 0 reported)
            return banner.rstrip()
        how = cause.group(1).strip() if cause and "STRING" in cause.group(0) else \
            f"exit status {cause.group(1)}" if cause else "an unknown cause"
        text = f"nnc: the run stopped: rank {ranks[pid.group(1)]} of {workers} (pid {pid.group(1)}) died: {how}; " \
               f"mpirun stopped the other ranks"
    resume = reports / "rank0.resume"
    if resume.exists():
        text += f"\nhint: resume from the last checkpoint with: {resume.read_text().strip()}"
    return text.strip()


def without_workers(argv: list[str]) -> list[str]:
    """The command line less its --workers N (--workers=N)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    return out
