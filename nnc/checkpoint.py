"""Checkpoints: parameters, optimizer state and run metadata in one .npz, without pickle.

Metadata (epoch, step, seed, model name, history) travels as JSON text stored
in a uint8 array under `__meta__`. Saving is atomic: an interrupted save
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import NncError
from .fileio import atomic_write, load_npz
from .types import format_shape

META = "__meta__"


def save(path, arrays: dict, meta: dict) -> None:
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **payload))


def load(path) -> tuple[dict, dict]:
    arrays = load_npz(path, "a checkpoint")
    raw = arrays.pop(META, None)
    meta = {}
    if raw is not None:
        try:
            meta = json.loads(bytes(raw.astype(np.uint8)).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise NncError("the checkpoint's metadata is corrupt (not JSON text)", filename=str(path)) from None
    return arrays, meta


def check_against(path, arrays: dict, expected: dict, *, allow_missing=()) -> None:
    """Name every parameter that doesn't fit: missing, extra or of the wrong shape."""
    problems = []
    for name, shape in expected.items():
        if name not in arrays:
            if not any(name.startswith(p) for p in allow_missing):
                problems.append(f"missing '{name}' {format_shape(shape)}")
        elif tuple(arrays[name].shape) != tuple(shape):
            problems.append(f"'{name}' has shape {format_shape(arrays[name].shape)}, expected {format_shape(shape)}")
    extra = sorted(set(arrays) - set(expected))
    problems += [f"extra '{name}'" for name in extra]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise NncError(f"the parameters do not fit this model: {shown}", filename=str(path),
                       hint="was it saved from another model or another version of this one?")


def model_params(path, model) -> dict:
    """The model's parameters from a run checkpoint or a plain parameter .npz.

    A checkpoint (it has metadata) must hold exactly the model's parameters (optimizer state is
    dropped); a plain file may hold a subset, the rest being initialized with the seed.
    """
    arrays, meta = load(path)
    expected = {name: t.shape for name, t in model.param_types.items()}
    if meta:
        arrays = {k: v for k, v in arrays.items() if not k.startswith("optimizer/")}
        check_against(path, arrays, expected)
        return arrays
    known = {k: v for k, v in arrays.items() if k in expected}
    check_against(path, known, {k: expected[k] for k in known})  # shapes; unknown names: Model.complete_params
    return arrays
