"""Running a graph on a backend: native code by default, the reference interpreter on request.

`run_graph` is what `Model.eval`, `Model.grad`, `nnc eval`, `nnc grad` and `nnc explain`
call. The native backend computes in float32; asking for float64 (gradient checks, exact
teaching numbers) means the NumPy reference interpreter, which must then be named
explicitly or left to the default `backend=None`.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..errors import NncError
from ..ir import interp

BACKENDS = ("llvm", "reference")

# Compiled executables per graph, keyed by (targets, symbol sizes): a notebook evaluating the
# same model again reuses the machine code instead of going back to the disk cache.
_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_backend(backend: str) -> str:
    """`backend` if nnc has it (the one place a backend name is checked)."""
    if backend not in BACKENDS:
        raise NncError(f"unknown backend: got {backend!r}, expected one of {', '.join(BACKENDS)}")
    return backend


def choose_backend(backend: str | None, float_dtype) -> str:
    """None -> native for float32, reference for float64; an explicit choice is checked."""
    float64 = np.dtype(float_dtype) == np.float64
    if backend is None:
        return "reference" if float64 else "llvm"
    check_backend(backend)
    if backend == "llvm" and float64:
        raise NncError("the native backend computes in float32: got float64",
                       hint="use backend='reference' (--backend reference) for float64")
    return backend


def run_graph(g, inputs: dict, params: dict, targets, *, float_dtype=np.float32, seed: int = 0,
              backend: str | None = None) -> dict:
    """Evaluate `targets` of `g`; returns {node: array}. Inputs and parameters are checked the same
    way on both backends, so a mistake reads the same whichever runs."""
    backend = choose_backend(backend, float_dtype)
    if backend == "reference":
        return interp.run(g, inputs, params, targets=targets, float_dtype=float_dtype, seed=seed)
    targets = list(dict.fromkeys(targets))
    needed = g.needed_for(targets)
    values, bindings = interp.bind_inputs(g, inputs, float_dtype, needed)
    checked = interp.check_params(g, params, float_dtype, needed)
    for node in g.inputs.values():  # inputs the targets do not read: their size is immaterial
        for d in g.type_of(node).shape:
            if isinstance(d, str) and node not in needed:
                bindings.setdefault(d, 1)
    exe = _executable(g, targets, bindings)
    names = {node: name for name, node in g.inputs.items()}
    feed = {names[node]: np.array(arr, dtype=g.type_of(node).dtype, order="C") for node, arr in values.items()
            if node in needed}
    pnames = {node: name for name, node in g.params.items()}
    exe.set_params({pnames[node]: arr for node, arr in checked.items() if pnames[node] in exe.params})
    try:
        results = exe.run(feed, seed=seed)
    except NncError as err:
        locate_by_interpreter(err, g, inputs, params, targets, seed, float_dtype)
        raise
    return {n: np.array(results[n]) for n in targets}


def locate_by_interpreter(err: NncError, g, inputs: dict, params: dict, targets, seed: int,
                          float_dtype=np.float32) -> None:
    """Native code knows that a computed class index was out of range, not where: when its error `err` has
    no location, the interpreter, run on the same inputs, raises the error naming the node and the value at
    its source line (the caller re-raises `err` if it does not)."""
    if err.loc is None:
        interp.run(g, inputs, params, targets=list(targets), float_dtype=float_dtype, seed=seed)


def _executable(g, targets: list, bindings: dict):
    from ..backend import compile_graph

    per_graph = _compiled.setdefault(g, {})
    key = (tuple(targets), tuple(sorted(bindings.items())))
    if key not in per_graph:
        per_graph[key] = compile_graph(g, bindings, targets)
    return per_graph[key]
