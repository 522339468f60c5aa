"""The NumPy reference interpreter: runs a graph node by node with each op's `ref`.

It is the oracle the LLVM backend is tested against and the `--backend
reference` choice. Float32 by default; `float_dtype=np.float64` runs every
float32 tensor in double precision (gradient checks).
"""

from __future__ import annotations

import numpy as np

from ..errors import NncError
from . import ops
from .ops import CONTROL, RANDOM
from .ops.nn import label_problem
from .types import TupleType, concrete, describe, format_shape, is_dims, numpy_dtype


def _declared_loc(g, node):
    return g.nodes[node].get("loc")


def bind_inputs(g, inputs: dict, float_dtype=np.float32, needed=None) -> tuple[dict, dict]:
    """Check the fed arrays against the declared inputs; return (arrays by node, symbol sizes)."""
    bindings: dict[str, int] = {}
    values = {}
    for name, node in g.inputs.items():
        if needed is not None and node not in needed and name not in inputs:
            continue   # (an input fed though not needed still sizes its symbols: randn([B, 8]) reads B)
        typ = g.type_of(node)
        if name not in inputs:
            raise NncError(f"missing input '{name}': expected {describe(typ)}", _declared_loc(g, node),
                           hint=f"give it with --at {name}=VALUE or in --inputs FILE.npz")
        arr = np.asarray(inputs[name])
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise NncError(f"input '{name}' holds {arr.dtype} values, expected numbers", _declared_loc(g, node))
        if arr.ndim != len(typ.shape):
            raise NncError(f"input '{name}' has shape {format_shape(arr.shape)}, expected {format_shape(typ.shape)}",
                           _declared_loc(g, node))
        for got, want in zip(arr.shape, typ.shape):
            if isinstance(want, str):
                if bindings.setdefault(want, got) != got:
                    raise NncError(f"input '{name}' has shape {format_shape(arr.shape)}: {want} = {got} here "
                                   f"but {bindings[want]} in another input", _declared_loc(g, node))
            elif got != want:
                raise NncError(f"input '{name}' has shape {format_shape(arr.shape)}, "
                               f"expected {format_shape(typ.shape)}",
                               _declared_loc(g, node))
        if typ.dtype == "int32":
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
                raise NncError(f"input '{name}' is int but holds non-integer values", _declared_loc(g, node))
            arr = arr.astype(np.int64)
            classes = g.label_classes(node)
            problem = label_problem(arr, classes, noun="") if classes is not None else None
            if problem is not None:
                raise NncError(f"input '{name}' holds a class index out of range: {problem}", _declared_loc(g, node))
        else:
            arr = arr.astype(numpy_dtype(typ.dtype, float_dtype))
        values[node] = arr
    return values, bindings


def check_params(g, params: dict, float_dtype=np.float32, needed=None) -> dict:
    values = {}
    for name, node in g.params.items():
        if needed is not None and node not in needed:
            continue
        typ = g.type_of(node)
        if name not in params:
            raise NncError(f"missing parameter '{name}' {typ}")
        arr = np.asarray(params[name])
        if tuple(arr.shape) != tuple(typ.shape):
            raise NncError(f"parameter '{name}' has shape {format_shape(arr.shape)}, "
                           f"expected {format_shape(typ.shape)}")
        values[node] = arr.astype(numpy_dtype(typ.dtype, float_dtype))
    return values


def _concrete_attrs(attrs: dict, bindings: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if k in ("type", "name", "init", "trainable"):
            continue
        if is_dims(v, bindings):
            v = concrete(v, bindings)
        out[k] = v
    return out


def _run_body(body, feed: dict, float_dtype, seed: int) -> dict:
    """One step of a loop's body graph: its outputs by name."""
    values = run(body, feed, {}, targets=list(body.outputs.values()), float_dtype=float_dtype, seed=seed)
    return {name: values[n] for name, n in body.outputs.items()}


def run(g, inputs: dict, params: dict, *, targets=None, float_dtype=np.float32, seed: int = 0) -> dict:
    """Evaluate the nodes needed for `targets` (default: outputs, loss, updates); return {node: array}."""
    targets = list(targets) if targets is not None else g.roots()
    needed = g.needed_for(targets)
    values, bindings = bind_inputs(g, inputs, float_dtype, needed)
    values.update(check_params(g, params, float_dtype, needed))
    with np.errstate(all="ignore"):
        for n in g.topo():
            if n not in needed or n in values:
                continue
            data = g.nodes[n]
            op = data["op"]
            attrs = _concrete_attrs(data["attrs"], bindings)
            if op is ops.const:
                values[n] = np.asarray(data["attrs"]["value"], dtype=numpy_dtype(data["type"].dtype, float_dtype))
                continue
            if op.is_a(RANDOM):
                attrs["rng"] = np.random.default_rng([seed & 0xFFFFFFFF, attrs.get("salt", n)])
                if op is ops.random_normal:   # noise follows native code's stream (dropout masks do not)
                    attrs["seed"] = seed
            if op.is_a(CONTROL):
                attrs["run_graph"] = lambda body, feed: _run_body(body, feed, float_dtype, seed)
            args = [values[o] for o in data["operands"]]
            try:
                out = op.ref(*args, **attrs)
            except NncError as err:
                raise NncError(err.message, data.get("loc"), err.hint) from None
            if isinstance(data["type"], TupleType):  # several results, each read by an item node
                values[n] = out
                continue
            want = numpy_dtype(data["type"].dtype, float_dtype) if data["type"].dtype != "int32" else None
            out = np.asarray(out)
            if want is not None and out.dtype != want:
                out = out.astype(want)
            values[n] = out
    return values
