"""Checkpoints and parameter sources: parameters, optimizer state and run metadata in one .npz, without pickle.

Metadata (epoch, step, seed, model name, history) travels as JSON text stored
in a uint8 array under `__meta__`. Saving is atomic: an interrupted save
leaves the previous checkpoint intact. `model_params` turns whatever a user
names as parameters (a run folder, a checkpoint, a parameter .npz or a dict)
into the model's parameters, for every command and the Python API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..fileio import atomic_write, load_npz
from ..ir.types import format_shape

META = "__meta__"
CHECKPOINT = "checkpoint.npz"  # its name in a run folder
PARAMS_HELP = "a run folder, a checkpoint .npz, a parameter .npz or a dict of arrays"


def save(path, arrays: dict, meta: dict) -> None:
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload[META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **payload))


def load(path) -> tuple[dict, dict]:
    arrays, meta = _read(path)
    return arrays, meta or {}


def _read(path) -> tuple[dict, dict | None]:
    """(arrays, metadata); the metadata is None for a plain parameter file."""
    arrays = load_npz(path, "a checkpoint")
    raw = arrays.pop(META, None)
    return arrays, None if raw is None else decode_meta(raw, str(path))


def decode_meta(raw: np.ndarray, where: str) -> dict:
    try:
        meta = json.loads(bytes(np.asarray(raw).astype(np.uint8)).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError):
        raise NncError("the checkpoint's metadata is corrupt (not JSON text)", filename=where) from None
    if not isinstance(meta, dict):
        raise NncError("the checkpoint's metadata is corrupt (not a JSON object)", filename=where)
    return meta


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
        raise NncError(f"the parameters do not fit this model: {shown}", filename=None if path is None else str(path),
                       hint="was it saved from another model or another version of this one?")


def checkpoint_path(path) -> Path:
    """A checkpoint file, or the checkpoint of the run folder `path` names."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = path / CHECKPOINT
    if not found.exists():
        raise NncError(f"the run folder {path} has no {CHECKPOINT}",
                       hint="the run stopped before saving one; give a run that trained an epoch, or a .npz file")
    return found


def model_params(source, model) -> dict:
    """The parameters `source` gives for `model`: a run folder, a checkpoint .npz, a parameter .npz or a dict
    of arrays (a dict read from a checkpoint included); None gives none.

    A checkpoint (it has metadata) must hold exactly the model's parameters (optimizer state is dropped);
    a plain file or dict may hold a subset (`Model.complete_params` decides about the rest) but no name
    the model lacks and no wrong shape.
    """
    if source is None:
        return {}
    if isinstance(source, str) and "+" in source and not Path(source).exists():
        return merged_params(source.split("+"), model)
    if isinstance(source, Mapping):
        where = None  # shapes are checked where the arrays are used, with the same message on every backend
        arrays = {str(k): np.asarray(v) for k, v in source.items()}
        raw = arrays.pop(META, None)
        meta = None if raw is None else decode_meta(raw, "the given parameters")
    elif isinstance(source, (str, os.PathLike)):
        path = checkpoint_path(source)
        where = str(path)
        arrays, meta = _read(path)
    else:
        raise NncError(f"params: got {type(source).__name__}, expected {PARAMS_HELP}")
    expected = {name: t.shape for name, t in model.param_types.items()}
    if meta is not None:
        arrays = {k: v for k, v in arrays.items() if not k.startswith(("optimizer/", "optimizer["))}  # its state
        check_against(where, arrays, expected)
        return arrays
    unknown = sorted(set(arrays) - set(expected))
    if unknown:
        raise NncError(f"unknown parameter '{unknown[0]}' for model '{model.name}'",
                       hint=f"the model's parameters are: {', '.join(expected) or 'none'}")
    if where is not None:
        check_against(where, arrays, {k: expected[k] for k in arrays})
    return arrays


def merged_params(sources: list[str], model) -> dict:
    """`A+B`: the parameters of A, then those of B that the model has (by name) over them, ...: a fine-tuned
    trunk under the head of the run it started from."""
    merged = model_params(sources[0], model)
    expected = {name: tuple(t.shape) for name, t in model.param_types.items()}
    for source in sources[1:]:
        path = checkpoint_path(source)
        arrays, _ = _read(path)
        taken = {k: v for k, v in arrays.items() if k in expected}
        if not taken:
            raise NncError(f"params: {source} holds none of the parameters of model '{model.name}'",
                           hint="A+B takes B's parameters that have the model's names over A's")
        check_against(str(path), taken, {k: expected[k] for k in taken})
        merged.update(taken)
    return merged
