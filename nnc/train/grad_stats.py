"""`nnc run --grad-stats`: per-layer gradient norms, and per time step for recurrent layers, measured
natively once per epoch.

A layer is a statement that owns trainable parameters; its gradient norm is
‖d loss / d (all its parameters)‖. A recurrent layer (a loop over time, `scan`)
also gets one norm per time step t: ‖d loss / d z_t‖, z_t being what the layer
adds from its input at step t (x_t·W_ih + b_ih, the gates' share of it), that
is the gradient that reaches step t back through time: where it vanishes, the
layer cannot learn from that step. The norms are the outputs of one compiled
graph (forward + backward + a square-sum-sqrt each), run after each epoch on a
fixed batch of the training set with the current parameters, so epochs compare
like with like and the training step itself is untouched. The run folder gets
grad_stats.csv (epoch, layer, norm), grad_steps.csv (epoch, layer, step, norm)
for recurrent layers and grad_stats.json (which model file and layers), all
written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..fileio import atomic_write
from ..ir import ops
from ..ir.graph import Emitter
from ..passes import pipeline
from ..runtime.execute import check_backend, run_graph

CSV_NAME = "grad_stats.csv"
STEPS_NAME = "grad_steps.csv"
META_NAME = "grad_stats.json"
PREFIX = "grad_norm/"
STEPS_PREFIX = "grad_steps/"


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


def recurrent_steps(g) -> dict:
    """label -> the sequence a recurrent layer's loop reads at each step ([T, B, ...], time first), for every
    loop of a statement (a bidirectional layer's second one as LABEL.reverse)."""
    found = {}
    for n in g.topo():
        if g.op(n) is not ops.scan or not g.nodes[n]["attrs"]["seq_in"]:
            continue
        label = g.nodes[n].get("stmt") or f"scan{n}"
        if g.nodes[n]["attrs"]["reverse"] and label in found:
            label += ".reverse"
        found.setdefault(label, g.operands(n)[len(g.nodes[n]["attrs"]["carry_in"])])
    return found


def norm_graph(model):
    """The training graph plus one output per layer: sqrt(Σ over its parameters of Σ gradient²), and per
    recurrent layer one [T] output: sqrt(Σ over the batch and features of (d loss / d z_t)²)."""
    layers = layer_params(model)
    if not layers:
        raise NncError(f"--grad-stats: model '{model.name}' has no layer with trainable parameters")
    steps = recurrent_steps(model.training_graph)
    wrt = [p for names in layers.values() for p in names] + list(steps.values())

    def norm_outputs(g):
        """The gradients' norms per layer (and per step) become the outputs."""
        g = g.clone()
        outputs = {}
        for label, names in layers.items():
            e, total = Emitter(g, stmt=label), None
            for p in names:
                sq = e.sum(e.square(g.grads[p]), axis=None)
                total = sq if total is None else e.add(total, sq)
            outputs[PREFIX + label] = e.sqrt(total)
        for label, z in steps.items():
            e, dz = Emitter(g, stmt=label.removesuffix(".reverse")), g.adjoints[z]
            outputs[STEPS_PREFIX + label] = e.sqrt(e.sum(e.square(dz), axis=tuple(range(1, g.type_of(dz).rank))))
        g.outputs = outputs
        g.grads = {}
        return g

    g = pipeline.run(model.training_graph, [pipeline.SHAPES, pipeline.differentiate(wrt=wrt), *pipeline.LOOPS,
                                            pipeline.Pass("layer gradient norms", norm_outputs), pipeline.SIMPLIFY])
    return g, list(layers), list(steps)


class GradNormProbe:
    """The compiled norm graph and the fixed batch it is measured on."""

    def __init__(self, model, backend: str, batch: int, seed: int = 0):
        self.graph, self.layers, self.recurrent = norm_graph(model)
        self.targets = [self.graph.outputs[PREFIX + label] for label in self.layers]
        self.step_targets = [self.graph.outputs[STEPS_PREFIX + label] for label in self.recurrent]
        self.backend = check_backend(backend)
        self.batch = batch
        self.seed = seed

    def fixed_batch(self, train: dict) -> dict:
        n = len(next(iter(train.values())))
        idx = np.sort(np.random.default_rng([self.seed, 7919]).permutation(n)[:self.batch])
        return {k: v[idx] for k, v in train.items() if k in self.graph.inputs}

    def norms(self, params: dict, train: dict) -> tuple[dict, dict]:
        """({layer: norm}, {recurrent layer: [norm at each step]})."""
        values = run_graph(self.graph, self.fixed_batch(train), params, self.targets + self.step_targets,
                           seed=self.seed, backend=self.backend)
        return ({label: float(values[t]) for label, t in zip(self.layers, self.targets)},
                {label: [float(v) for v in values[t]] for label, t in zip(self.recurrent, self.step_targets)})


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
    if any(h.grad_steps for h in history):
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["epoch", "layer", "step", "grad_norm"])
        for h in history:
            for label, norms in (h.grad_steps or {}).items():
                w.writerows([h.epoch, label, t + 1, f"{norm:.6g}"] for t, norm in enumerate(norms))
        steps = buf.getvalue().encode("utf-8")
        atomic_write(folder / STEPS_NAME, lambda f: f.write(steps))
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


def read_grad_steps(folder: str | Path) -> dict:
    """{recurrent layer: {epoch: [norm at step 1, 2, ...]}} from a run folder's grad_steps.csv ({} if none)."""
    path = Path(folder) / STEPS_NAME
    if not path.exists():
        return {}
    table: dict = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header != ["epoch", "layer", "step", "grad_norm"]:
            raise NncError(f"{path}: got header {header}, expected epoch,layer,step,grad_norm")
        for line, row in enumerate(rows, start=2):
            try:
                epoch, layer, step, norm = int(row[0]), row[1], int(row[2]), float(row[3])
            except (ValueError, IndexError):
                raise NncError(f"{path}:{line}: got {','.join(row)!r}, expected EPOCH,LAYER,STEP,NORM") from None
            norms = table.setdefault(layer, {}).setdefault(epoch, [])
            if step != len(norms) + 1:
                raise NncError(f"{path}:{line}: got step {step}, expected {len(norms) + 1}")
            norms.append(norm)
    return table
