"""The property every fuzz input is held to, checked in-process.

Owns `check(data, path)`: write the bytes to `path`, then do what `nnc check`
and `nnc eval` do — read and parse the file, build every model's evaluation
and training graphs, print the summary, `nnc.ir.graph.verify` both graphs and,
for a small accepted model, evaluate it with random inputs of batch 2: as
native code (`Model.eval`, compiled by the backend) and on the reference
interpreter (both graphs), checking that every value has the shape and dtype
kind the builder inferred and that the native outputs match the
interpreter's (where the float32 and float64 interpreters agree, that is
where the result is not rounding noise). The outcome is one of

  accepted   no error
  rejected   an NncError whose text is `file:line:col: error: ...` plus the
             source line and a caret (or `file: error: ...`), with the line
             and column inside the file
  crash      any other exception (a bug: the traceback is kept)
  hang       the per-input time limit passed (SIGALRM, so main thread only)
  bad-error  an NncError that breaks the format above
  mismatch   an interpreter value whose shape or dtype differs from the graph,
             or a native output that differs from the interpreter's

`smoke(data, path)` runs the real `nnc check` / `nnc eval` in a subprocess and
compares the exit code and first line of stderr with the in-process verdict.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnc.errors import NncError
from nnc.ir import interp
from nnc.ir.graph import verify
from nnc.ir.types import TupleType, concrete
from nnc.model import load, load_all

# Models are run on the interpreter only when every value of the graph together
# has at most this many elements at batch 2.
EVAL_ELEMENTS = 2_000_000
BATCH = 2
OK = ("accepted", "rejected")


class Hang(BaseException):
    """Raised by the alarm when an input takes longer than the time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def alarm(signum, frame):
        raise Hang(f"took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Result:
    status: str
    detail: str = ""          # the error text or the traceback
    signature: str = ""       # what makes two failures the same bug
    stage: str = "check"      # how far it got: "check" (parse, build, verify) or "eval"
    models: int = 0
    evaluated: int = 0
    inputs: dict | None = None  # the random inputs of an evaluated model (for the smoke test)

    @property
    def ok(self) -> bool:
        return self.status in OK


# ---- the error format ----------------------------------------------------------------------


def format_problem(err: NncError, path: str) -> str | None:
    """Why `err` breaks the message convention, or None if it follows it."""
    text = err.format()
    lines = text.split("\n")
    m = re.match(re.escape(path) + r":(\d+):(\d+): error: \S", text)
    if m is None:
        if text.startswith(f"{path}: error: ") and err.loc is None:
            return None
        return f"does not start with '{path}:LINE:COL: error:' or '{path}: error:'"
    line, col = int(m.group(1)), int(m.group(2))
    source = err.loc.source.text.split("\n")
    if not 1 <= line <= max(len(source), 1):
        return f"line {line} is outside the file ({len(source)} lines)"
    actual = source[line - 1].removesuffix("\r") if source else ""
    if not 1 <= col <= len(actual) + 1:
        return f"column {col} is outside line {line} ({len(actual)} characters)"
    if len(lines) < 3 or not lines[1].startswith("  ") or "^" not in lines[2]:
        return "the source line and caret are missing"
    shown = lines[1][2:]
    if not shown.startswith("...") and shown != actual.expandtabs(1):
        return f"shows source line {shown[:60]!r}, expected line {line}: {actual[:60]!r}"
    return None


# ---- the pipeline --------------------------------------------------------------------------


def _elements(shape) -> int:
    n = 1
    for d in concrete(shape, _AnyBatch()):
        n *= d
    return n


class _AnyBatch(dict):
    """Bindings that give every symbolic dim the size BATCH."""

    def __getitem__(self, key):
        return BATCH


def random_inputs(model, rng: np.random.Generator) -> dict:
    out = {}
    for name, typ in model.inputs.items():
        shape = concrete(typ.shape, _AnyBatch())
        out[name] = rng.integers(0, 2, size=shape) if typ.dtype == "int32" else rng.standard_normal(shape)
    return out


def _small(graph) -> bool:
    def elements(t):   # a multi-result op (a loop) holds each of its results
        return sum(elements(r) for r in t.types) if isinstance(t, TupleType) else _elements(t.shape)
    return sum(elements(graph.type_of(n)) for n in graph.nodes) <= EVAL_ELEMENTS


def _check_values(graph, values: dict, what: str) -> None:
    for n, value in values.items():
        typ = graph.type_of(n)
        if isinstance(typ, TupleType):   # a loop's results: each is checked as the item node that reads it
            continue
        want = concrete(typ.shape, _AnyBatch())
        kind = "f" if typ.is_float else "i"
        if tuple(np.shape(value)) != tuple(want) or np.asarray(value).dtype.kind != kind:
            raise Mismatch(f"{what}: {graph.describe(n)} computed {np.asarray(value).dtype}"
                           f"{list(np.shape(value))}, but the graph says {typ}")


# Native float32 code and the interpreter may round differently (fused kernels, other summation orders);
# a difference beyond this, relative to the largest value of the output, is a bug.
NATIVE_TOLERANCE = 1e-3


def _disagreement(got: np.ndarray, want: np.ndarray) -> str | None:
    """How `got` differs from `want` beyond rounding, or None."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"shape {list(got.shape)}, reference {list(want.shape)}"
    finite = np.isfinite(want)
    if not np.array_equal(np.isfinite(got), finite):
        return "non-finite at other places than the reference"
    if finite.any():
        scale = max(1.0, float(np.abs(want[finite]).max()))
        worst = float(np.abs(got[finite] - want[finite]).max())
        if worst > NATIVE_TOLERANCE * scale:
            return f"differs from the reference by {worst:.3g} (largest value {scale:.3g})"
    return None


def _compare_outputs(graph, native: dict, reference: dict, reference64: dict) -> None:
    """The native outputs must match the reference interpreter's: within rounding where finite, non-finite
    exactly where it is. An output whose float32 and float64 references disagree is ill-conditioned (a 0/0
    such as layernorm(eps=0) of equal values) and has no answer to compare with."""
    for name, node in graph.outputs.items():
        if _disagreement(reference[node], reference64[node]) is not None:
            continue
        problem = _disagreement(native[name], reference[node])
        if problem:
            raise Mismatch(f"native output '{name}': {problem}")


class Mismatch(Exception):
    """The interpreter and the shape rules disagree."""


def pipeline(path: Path, state: Result, seed: int = 0) -> None:
    """What `nnc check` and `nnc eval` do with the file, plus the graph checks; progress goes in `state`."""
    models = load_all(path)
    for m in models:
        m.summary()
        verify(m.graph)
        verify(m.training_graph)
    state.models = len(models)
    first = load(path)  # `nnc eval` picks the first model this way
    if _small(first.graph) and _small(first.training_graph):
        state.stage = "eval"
        inputs = state.inputs = random_inputs(first, np.random.default_rng(seed))
        params = first.complete_params({}, seed)
        native = first.eval(inputs, params, seed=seed)  # compiled to native code
        g = first.graph
        reference = interp.run(g, inputs, params, seed=seed)
        _check_values(g, reference, "evaluation graph")
        _compare_outputs(g, native, reference, interp.run(g, inputs, params, seed=seed, float_dtype=np.float64))
        tg = first.training_graph
        _check_values(tg, interp.run(tg, inputs, params, seed=seed), "training graph")
        state.evaluated = 1


def _signature(err: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "/nnc/" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].name}" if frames else "?"
    return f"{type(err).__name__} in {where}"


def check(data: bytes, path: Path, *, seconds: float = 30.0, seed: int = 0) -> Result:
    """Run the pipeline on `data` (written to `path`) and classify the outcome."""
    path.write_bytes(data)
    state = Result("accepted")
    try:
        with time_limit(seconds):
            pipeline(path, state, seed)
        return state
    except NncError as err:
        problem = format_problem(err, str(path))
        if problem:
            category = re.sub(r"'.*|\d+.*", "", problem).strip()  # "shows source line", "column", ...
            return Result("bad-error", f"{problem}\n{err.format()}", f"bad-error: {category}")
        state.status, state.detail = "rejected", err.format()
        return state
    except Hang as err:
        return Result("hang", str(err), "hang")
    except Mismatch as err:
        return Result("mismatch", str(err), f"mismatch: {str(err).split(':')[0]}")
    except RecursionError as err:  # reported apart: the traceback is thousands of frames
        return Result("crash", "RecursionError\n" + "".join(traceback.format_tb(err.__traceback__, limit=-8)),
                      _signature(err))
    except Exception as err:  # noqa: BLE001 - any other exception is exactly what the fuzzer looks for
        return Result("crash", traceback.format_exc(), _signature(err))


# ---- the real command in a subprocess --------------------------------------------------------


def smoke(path: Path, expected: Result, *, seconds: float = 120.0) -> str | None:
    """Run `nnc check` (and `nnc eval` for an evaluated model) as the user would; None if consistent."""
    cmds = [["check", str(path)]]
    if expected.inputs is not None:
        npz = path.with_suffix(".inputs.npz")
        np.savez(npz, **expected.inputs)
        cmds.append(["eval", str(path), "--inputs", str(npz)])
    for cmd in cmds:
        try:
            proc = subprocess.run([sys.executable, "-m", "nnc", *cmd], capture_output=True, text=True,
                                  timeout=seconds, errors="replace")
        except subprocess.TimeoutExpired:
            return f"nnc {cmd[0]} took more than {seconds:g} s"
        want = 1 if expected.status == "rejected" and (cmd[0] == "eval" or expected.stage == "check") else 0
        if proc.returncode != want:
            return f"nnc {cmd[0]} exited {proc.returncode}, expected {want}:\n{proc.stderr[-2000:]}"
        if want == 1:
            first = expected.detail.split("\n", 1)[0]
            if proc.stderr.split("\n", 1)[0] != first:
                return f"nnc {cmd[0]} said {proc.stderr.splitlines()[:1]}, expected {first!r}"
            break  # a file `nnc check` refuses is refused by `nnc eval` the same way
    return None
