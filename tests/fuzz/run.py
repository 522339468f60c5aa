"""The long-run fuzzer's command line: make inputs, check them, keep every failure.

    .venv/bin/python -m tests.fuzz.run --count 100000 --seed 1 --jobs 2 --out /tmp/nnc-fuzz
    .venv/bin/python -m tests.fuzz.run --replay /tmp/nnc-fuzz/crash-....nn

Owns the numbering of inputs (input i of seed s is always the same bytes, so
any failure can be made again with `--only I`), the worker processes (each
under an address-space limit, so a runaway allocation is a MemoryError and
not the machine's), the restart of a worker that dies by a signal, the sample
run through the real `nnc` command (`--smoke-every`) and the summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from . import generate, harness, mutate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def corpus() -> list[bytes]:
    return [p.read_bytes() for p in sorted(EXAMPLES.glob("*.nn"))]


def make_input(seed: int, i: int, files: list[bytes], big: bool = True) -> tuple[bytes, str]:
    """Input number i of a run: a generated program, a mutated example, or a mutated generated program."""
    rng = random.Random(f"{seed}:{i}")
    r = rng.random()
    if r < 0.45:
        return generate.program(rng, wild=rng.choice([0.0, 0.05, 0.2])).encode(), "generated"
    if r < 0.55:
        data, edits = mutate.mutate(rng, generate.program(rng).encode(), files, big)
        return data, "generated+" + "+".join(edits)
    k = rng.randrange(len(files))
    data, edits = mutate.mutate(rng, files[k], files, big)
    return data, f"example{k}+" + "+".join(edits)


def limit_memory(gib: float) -> None:
    if gib > 0:
        limit = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def save_failure(out: Path, result: harness.Result, data: bytes, seed: int, i: int, origin: str) -> Path:
    key = hashlib.sha1(result.signature.encode()).hexdigest()[:10]
    stem = out / f"{result.status}-{key}-s{seed}-i{i}"
    stem.with_suffix(".nn").write_bytes(data)
    stem.with_suffix(".txt").write_text(f"{result.signature}\nseed {seed} input {i} ({origin})\n\n{result.detail}\n")
    return stem.with_suffix(".nn")


def worker(args) -> int:
    """Check inputs shard, shard + jobs, ... of range(start, count); print JSON progress lines."""
    limit_memory(args.memory_gb)
    out = Path(args.out)
    work = out / f"work-{args.shard}"
    work.mkdir(parents=True, exist_ok=True)
    files = corpus()
    counts: Counter = Counter()
    seen: dict[str, int] = {}
    t0 = time.monotonic()
    last = t0
    indices = [args.only] if args.only is not None else range(args.start + args.shard, args.count, args.jobs)
    for i in indices:
        (work / "current").write_text(str(i))
        data, origin = make_input(args.seed, i, files, big=not args.small)
        path = work / "input.nn"
        result = harness.check(data, path, seconds=args.time_limit, seed=i)
        counts[result.status] += 1
        if result.evaluated:
            counts["evaluated"] += 1
        if args.smoke_every and i % args.smoke_every == 0:
            counts["smoked"] += 1
            problem = harness.smoke(path, result)
            if problem:
                result = harness.Result("smoke", problem, f"smoke: {problem.split(':')[0][:60]}")
                counts["smoke"] += 1
        if not result.ok:
            seen[result.signature] = seen.get(result.signature, 0) + 1
            if seen[result.signature] <= args.keep:
                saved = save_failure(out, result, data, args.seed, i, origin)
                print(json.dumps({"failure": result.signature, "status": result.status, "input": i,
                                  "file": str(saved)}), flush=True)
        now = time.monotonic()
        if now - last > args.progress:
            last = now
            print(json.dumps({"shard": args.shard, "done": sum(counts[s] for s in STATUSES), "last": i,
                              "seconds": round(now - t0, 1), "counts": counts}), flush=True)
    print(json.dumps({"shard": args.shard, "final": True, "done": sum(counts[s] for s in STATUSES),
                      "seconds": round(time.monotonic() - t0, 1), "counts": counts, "signatures": seen}), flush=True)
    return 0


STATUSES = ("accepted", "rejected", "crash", "hang", "bad-error", "mismatch")


def parent(args) -> int:
    """Run `jobs` workers, restart any that dies, and print the summary."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    totals: Counter = Counter()
    signatures: Counter = Counter()
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(text, flush=True)

    def shard_loop(shard: int) -> None:
        first = 0
        while True:
            cmd = [sys.executable, "-m", "tests.fuzz.run", "--worker", "--shard", str(shard), "--start", str(first)]
            for flag in ("count", "seed", "jobs", "out", "time_limit", "memory_gb", "smoke_every", "keep",
                         "progress"):
                cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
            cmd += ["--small"] if args.small else []
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for line in proc.stdout:
                msg = json.loads(line)
                if "failure" in msg:
                    say(f"  {msg['status']}: {msg['failure']} (input {msg['input']}) -> {msg['file']}")
                elif msg.get("final"):
                    with lock:
                        totals.update(msg["counts"])
                        signatures.update(msg["signatures"])
                else:
                    say(f"  shard {shard}: {msg['done']} inputs in {msg['seconds']} s, {dict(msg['counts'])}")
            code = proc.wait()
            if code == 0:
                return
            # Killed by a signal or died without its summary: a crash of the process itself. Its counts
            # since the last restart are lost; go on after the input that killed it.
            current = int((out / f"work-{shard}" / "current").read_text())
            data = (out / f"work-{shard}" / "input.nn").read_bytes()
            result = harness.Result("crash", f"the worker process exited with {code}", f"process exit {code}")
            saved = save_failure(out, result, data, args.seed, current, "process")
            say(f"  crash: worker {shard} exited {code} on input {current} -> {saved}")
            with lock:
                totals["crash"] += 1
                signatures[result.signature] += 1
            first = current + args.jobs - shard

    threads = [threading.Thread(target=shard_loop, args=(k,)) for k in range(args.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    done = sum(totals[s] for s in STATUSES)
    print(f"\n{done} inputs in {seconds:.0f} s ({done / max(seconds, 1e-9):.0f}/s), seed {args.seed}")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    if signatures:
        print("failures:")
        for sig, n in sorted(signatures.items(), key=lambda kv: -kv[1]):
            print(f"  {n:6d}  {sig}")
    else:
        print("no failures")
    return 1 if signatures else 0


def replay(args) -> int:
    """Check saved inputs again and print the outcome of each."""
    bad = 0
    for name in args.replay:
        path = Path(name)
        scratch = path.with_name(path.stem + ".replay.nn")
        numbered = re.search(r"-s\d+-i(\d+)$", path.stem)  # a saved failure: input i ran with seed i
        result = harness.check(path.read_bytes(), scratch, seconds=args.time_limit,
                               seed=int(numbered.group(1)) if numbered else 0)
        print(f"{path}: {result.status}")
        if result.detail:
            print("  " + result.detail.replace("\n", "\n  ")[:4000])
        bad += not result.ok
        scratch.unlink(missing_ok=True)
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=10000, help="inputs to check (default 10000)")
    p.add_argument("--seed", type=int, default=1, help="which inputs: input i of seed s is always the same")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", default="/tmp/nnc-fuzz", help="where failures are saved (default /tmp/nnc-fuzz)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds one input may take (default 60)")
    p.add_argument("--memory-gb", type=float, default=8.0, help="address-space limit of a worker, 0 for none")
    p.add_argument("--smoke-every", type=int, default=500,
                   help="run input i through the real nnc command when i is a multiple of this (0: never)")
    p.add_argument("--keep", type=int, default=3, help="inputs saved per distinct failure (default 3)")
    p.add_argument("--progress", type=float, default=60.0, help="seconds between progress lines")
    p.add_argument("--small", action="store_true", help="keep the structural mutations small (fast)")
    p.add_argument("--only", type=int, help="check just input ONLY of the seed (to reproduce a failure)")
    p.add_argument("--replay", nargs="+", metavar="FILE.nn", help="check saved inputs again")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.replay:
        return replay(args)
    if args.worker or args.only is not None:
        if args.only is not None:
            args.jobs, args.shard = 1, 0
        return worker(args)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
