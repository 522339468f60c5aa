"""`nnc run --grad-stats`: per-layer gradient norms, measured natively once per epoch.

A layer is a statement that owns trainable parameters; its gradient norm is
‖d loss / d (all its parameters)‖. The norms are the outputs of one compiled
graph (forward + backward + a square-sum-sqrt per layer), run after each epoch
on a fixed batch of the training set with the current parameters, so epochs
compare like with like and the training step itself is untouched. The run
folder gets grad_stats.csv (epoch, layer, norm) and grad_stats.json (which
model file and layers), both written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..fileio import atomic_write
from ..ir.graph import Emitter
from ..passes import pipeline
from ..runtime.execute import check_backend, run_graph

CSV_NAME = "grad_stats.csv"
META_NAME = "grad_stats.json"
PREFIX = "grad_norm/"


def layer_params(model) -> dict:
    """statement label -> its trainable parameter names, in statement order."""
    g = model.training_graph
    layers = {}
    for info in g.statements:
        names = [p for p in info.params
                 if p in g.params and g.nodes[g.params[p]]["attrs"]["trainable"]]
        if names:
            layers.setdefault(info.label, []).extend(names)
    return layers


def norm_graph(model):
    """The training graph plus one output per layer: sqrt(Σ over its parameters of Σ gradient²)."""
    layers = layer_params(model)
    if not layers:
        raise NncError(f"--grad-stats: model '{model.name}' has no layer with trainable parameters")
    wrt = [p for names in layers.values() for p in names]

    def norm_outputs(g):
        """The gradients' norms per layer become the outputs."""
        g = g.clone()
        outputs = {}
        for label, names in layers.items():
            e, total = Emitter(g, stmt=label), None
            for p in names:
                sq = e.sum(e.square(g.grads[p]), axis=None)
                total = sq if total is None else e.add(total, sq)
            outputs[PREFIX + label] = e.sqrt(total)
        g.outputs = outputs
        g.grads = {}
        return g

    g = pipeline.run(model.training_graph, [pipeline.SHAPES, pipeline.differentiate(wrt=wrt), *pipeline.LOOPS,
                                            pipeline.Pass("layer gradient norms", norm_outputs), pipeline.SIMPLIFY])
    return g, list(layers)


class GradNormProbe:
    """The compiled norm graph and the fixed batch it is measured on."""

    def __init__(self, model, backend: str, batch: int, seed: int = 0):
        self.graph, self.layers = norm_graph(model)
        self.targets = [self.graph.outputs[PREFIX + label] for label in self.layers]
        self.backend = check_backend(backend)
        self.batch = batch
        self.seed = seed

    def fixed_batch(self, train: dict) -> dict:
        n = len(next(iter(train.values())))
        idx = np.sort(np.random.default_rng([self.seed, 7919]).permutation(n)[:self.batch])
        return {k: v[idx] for k, v in train.items() if k in self.graph.inputs}

    def norms(self, params: dict, train: dict) -> dict:
        values = run_graph(self.graph, self.fixed_batch(train), params, self.targets, seed=self.seed,
                           backend=self.backend)
        return {label: float(values[t]) for label, t in zip(self.layers, self.targets)}


def write_grad_stats(folder: Path, model, history) -> None:
    """grad_stats.csv from every epoch that has norms, and grad_stats.json naming the model."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["epoch", "layer", "grad_norm"])
    for h in history:
        for label, norm in (h.grad_norms or {}).items():
            w.writerow([h.epoch, label, f"{norm:.6g}"])
    text = buf.getvalue().encode("utf-8")
    atomic_write(folder / CSV_NAME, lambda f: f.write(text))
    meta = {"model_file": str(Path(model.source.filename).resolve()), "model": model.name,
            "layers": list(layer_params(model))}
    data = (json.dumps(meta, indent=2) + "\n").encode("utf-8")
    atomic_write(folder / META_NAME, lambda f: f.write(data))


def read_grad_stats(folder: str | Path) -> tuple[dict, dict]:
    """(meta, {layer: [(epoch, norm), ...]}) from a run folder written with --grad-stats."""
    folder = Path(folder)
    path = folder / CSV_NAME
    if not folder.is_dir():
        raise NncError(f"--heat: run folder {folder} does not exist")
    if not path.exists():
        raise NncError(f"--heat: {path} does not exist", hint="record it with: nnc run MODEL.nn --grad-stats --out "
                       f"{folder}")
    meta_path = folder / META_NAME
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    table: dict = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header != ["epoch", "layer", "grad_norm"]:
            raise NncError(f"{path}: got header {header}, expected epoch,layer,grad_norm")
        for line, row in enumerate(rows, start=2):
            try:
                epoch, layer, norm = int(row[0]), row[1], float(row[2])
            except (ValueError, IndexError):
                raise NncError(f"{path}:{line}: got {','.join(row)!r}, expected EPOCH,LAYER,NORM") from None
            table.setdefault(layer, []).append((epoch, norm))
    if not table:
        raise NncError(f"{path} has no rows yet", hint="let the run finish at least one epoch")
    return meta, table
