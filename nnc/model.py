"""The Python API: `nnc.load(...)` returns a `Model` to summarize, evaluate and inspect."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import NncError, nearest
from .front.builder import build
from .front.settings import check_names, read_train_block
from .front.syntax import parse, read_source
from .summary import summary_text

CONSTANT_INITS = ("zeros", "ones", "constant")  # initializers that draw nothing at random
SHOWN_MISSING = 6


class MissingParams(NncError):
    """Computing with parameters that would be random: nothing gave them and random values were not asked for."""

    API_HINT = ('pass params="RUN_DIR" (a run folder, a checkpoint or parameter .npz, or a dict of arrays), '
                "or random_params=True to compute with seeded random values")
    CLI_HINT = ("give trained values with --params RUN_DIR (a run folder, a checkpoint or a parameter .npz), "
                "or add --random-params to compute with seeded random values")

    def __init__(self, model, missing: list[str], hint: str = API_HINT):
        shown = ", ".join(f"{n} {model.param_types[n]}" for n in missing[:SHOWN_MISSING])
        if len(missing) > SHOWN_MISSING:
            shown += f" and {len(missing) - SHOWN_MISSING} more"
        super().__init__(f"no values for the randomly initialized parameters of model '{model.name}': {shown}",
                         hint=hint)
        self.missing = missing


@dataclass
class Gradients:
    """What `Model.grad` returns: the target's value and d target / d name for each name."""

    of: str
    value: np.ndarray
    grads: dict            # wrt name -> gradient
    intermediates: dict = field(default_factory=dict)  # statement name -> gradient
    graph: object = None   # the simplified forward + backward graph
    of_node: int | None = None


class Model:
    """One model of a .nn file, built and shape-checked."""

    def __init__(self, program, model_ast):
        self.program = program
        self.ast = model_ast
        self.name = model_ast.name
        self.source = program.source
        self.settings = read_train_block(program.trains)
        self.graph = build(program, model_ast, training=False)
        check_names(program.trains, self.graph)
        self.params: dict | None = None   # what fit or load_params gave; eval, grad and evaluate use them
        # The values the model file brings with it (an imported ONNX model's initializers): its parameters'
        # initial values, in place of their initializers' draws, for every command, training included.
        self.file_params: dict = {}

    @cached_property
    def training_graph(self):
        """The same model with training behaviour: dropout masks, batch statistics."""
        return build(self.program, self.ast, training=True)

    # ---- inspection ----------------------------------------------------------

    @property
    def inputs(self) -> dict:
        return {name: self.graph.type_of(n) for name, n in self.graph.inputs.items()}

    @property
    def param_types(self) -> dict:
        return {name: self.graph.type_of(n) for name, n in self.graph.params.items()}

    @property
    def outputs(self) -> list[str]:
        return list(self.graph.outputs)

    def summary(self) -> str:
        return summary_text(self)

    def __repr__(self) -> str:
        return f"<nnc.Model {self.name}: {len(self.graph)} ops, {sum(self.param_counts().values()):,} parameters>"

    def view(self, view: str = "layers", training: bool = False):
        """The model drawn as `nnc viz --view VIEW` draws it (layers, ops, backward or fused kernels): a
        Diagram that Jupyter shows and `.save("x.svg")` writes; `training=True` draws the training form
        (dropout, batch statistics)."""
        from .viz import diagram
        from .viz.render import Diagram

        return Diagram(diagram(self, view, training=training))

    def _repr_svg_(self) -> str | None:
        """Jupyter shows a model as its layers diagram (None without Graphviz: the text repr is used)."""
        return self.view("layers")._repr_svg_()

    def param_counts(self) -> dict:
        return {name: int(np.prod(t.shape, dtype=np.int64)) for name, t in self.param_types.items()}

    # ---- running ----------------------------------------------------------------

    def init_params(self, seed: int = 0, float_dtype=np.float32) -> dict:
        from .runtime.init import init_params

        full = init_params(self.graph, seed, float_dtype)
        full.update({k: v.astype(full[k].dtype) for k, v in self.file_params.items() if k in full})
        return full

    def random_param_names(self) -> list[str]:
        """The parameters whose initial values are random draws (not zeros, ones or constant(v))."""
        g = self.graph
        return [name for name, node in g.params.items()
                if g.nodes[node]["attrs"]["init"].kind not in CONSTANT_INITS and name not in self.file_params]

    def complete_params(self, params=None, seed: int = 0, float_dtype=np.float32, *,
                        random_params: bool = True) -> dict:
        """The parameters `params` gives (a run folder, a checkpoint or parameter .npz, a dict of arrays, or
        None) plus initial values for the rest: constant initializers always; random ones (seeded) only
        with `random_params`, else leaving one out is an error that names it."""
        from .runtime.checkpoint import model_params

        given = model_params(params if params is not None else self.params, self)
        missing = [name for name in self.random_param_names() if name not in given]
        if missing and not random_params:
            raise MissingParams(self, missing)
        full = self.init_params(seed, float_dtype)
        full.update(given)
        return full

    def eval(self, inputs: dict | None = None, params=None, *, seed: int = 0, random_params: bool = False,
             float_dtype=np.float32, backend: str | None = None) -> dict:
        """Run the forward pass; returns outputs (and `loss` when its inputs are given). `params`: a run
        folder, a checkpoint or parameter .npz, or a dict of arrays; `random_params=True` draws the
        randomly initialized ones not given (seeded). Native code by default; `backend="reference"`
        (or float64) runs the NumPy reference interpreter."""
        from .runtime.execute import run_graph

        inputs = dict(inputs or {})
        params = self.complete_params(params, seed, float_dtype, random_params=random_params)
        g = self.graph
        targets = list(g.outputs.values())
        loss = g.loss
        if loss is not None and all(n in inputs for n in self._inputs_of(loss)):
            targets.append(loss)
        values = run_graph(g, inputs, params, targets, float_dtype=float_dtype, seed=seed, backend=backend)
        result = {name: values[n] for name, n in g.outputs.items()}
        if loss in values:
            result["loss"] = values[loss]
        return result

    def export_onnx(self, path, params=None, *, training: bool = False, opset: int = 17, seed: int = 0,
                    random_params: bool = False):
        """Write the model as an ONNX file (its evaluation form; `training=True`: the training form) and return
        the onnx.ModelProto; `params` as for `eval` (default: the model's own), `random_params=True` draws the
        randomly initialized ones not given (seeded). Needs the onnx extra (`pip install -e '.[onnx]'`)."""
        from .onnx.export import export

        params = self.complete_params(params, seed, random_params=random_params)
        return export(self, params, path, training=training, opset=opset)

    # ---- training -------------------------------------------------------------------

    def load_params(self, source) -> Model:
        """Take the parameters of a run folder, checkpoint, parameter .npz or dict (checked against the model)
        as the model's: eval, grad and evaluate use them from now on."""
        from .runtime.checkpoint import model_params

        self.params = model_params(source, self)
        return self

    def fit(self, data=None, *, epochs: int | None = None, batch: int | None = None, lr: float | None = None,
            optimizer: str | None = None, schedule: str | None = None, weight_decay: float | None = None,
            clip: float | None = None, seed: int | None = None, val=None, threads: int | None = None,
            backend: str | None = None, steps: int | None = None, freeze=None, early_stop: int | None = None,
            snapshots: int | None = None, init_from=None, target: str | None = None, window: int | None = None,
            out: str | None = None, callbacks=(), progress: bool = True, **data_controls) -> list:
        """Train the model as `nnc run` does (the same settings: None keeps the train block's) and keep the
        trained parameters as the model's; -> the per-epoch history (EpochStats: train_loss, val_loss,
        accuracies, lr, seconds, ...; a model without inputs: one dict per step). `out` writes a run folder
        (`nnc eval --params OUT` reads it); `callbacks` are called with each epoch's EpochStats as it ends
        (plot as it trains); `progress` prints a line per epoch. The data controls of the train block are
        keywords too: classes, train_size, label_noise, shuffle_labels, test, standardize."""
        from .data import load_for_model
        from .train import runfolder
        from .train.config import run_config
        from .train.engines import data_sizes
        from .train.fit import Loop, Reporter, epoch_line, optimize
        from .train.trainer import DivergenceWatch, Trainer
        from .train.transfer import init_from as transfer

        config = run_config(self.settings, epochs=epochs, batch=batch, lr=lr, optimizer=optimizer, schedule=schedule,
                            weight_decay=weight_decay, clip=clip, seed=seed, backend=backend, threads=threads,
                            steps=steps, freeze=freeze, early_stop=early_stop, snapshots=snapshots)

        class Printed(Reporter):
            """A line per epoch; in Jupyter also a line updated in place as the epoch goes."""

            def __init__(self):
                self.live = _notebook_display() if progress else None
                self.epoch, self.last = 0, 0.0

            def start_epoch(self, epoch: int, batch: int) -> None:
                self.epoch, self.started, self.batch = epoch, time.perf_counter(), batch

            def step(self, done: int, total: int, loss: float, accuracy: float | None) -> None:
                now = time.perf_counter()
                if self.live is None or (now - self.last < 0.5 and done < total):
                    return
                self.last = now
                left = (total - done) * (now - self.started) / max(done, 1)
                acc = f"  acc {100 * accuracy:.2f}%" if accuracy is not None else ""
                self.live.update(f"epoch {self.epoch}/{config.epochs}: {done}/{total}  loss {loss:.4f}{acc}  "
                                 f"ETA {left:.0f}s")

            def epoch_end(self, stats, shown: bool) -> None:
                if progress:
                    print(epoch_line(stats, config.epochs), flush=True)

            def say(self, text: str) -> None:
                if progress:
                    print(text, flush=True)

            def warn(self, text: str) -> None:
                print(text, file=sys.stderr, flush=True)

        folder_of = (lambda settings: runfolder.new_run(out, self, settings, False, self.source.filename)) if out \
            else (lambda settings: contextlib.nullcontext(None))
        if not self.graph.inputs:
            trainer = Trainer(self, config)
            settings = runfolder.new_settings(self, self.source.filename, config) if out else {}
            with folder_of(settings) as folder:
                rows = optimize(trainer, config.steps or 100, folder, Printed())
                if folder is not None:
                    runfolder.save_state(folder, trainer, DivergenceWatch())
            self.params = trainer.model_params()
            return rows
        spec = data if data is not None else self.settings["data"]
        unknown = set(data_controls) - DATA_CONTROLS
        if unknown:
            raise TypeError(f"fit() got an unexpected keyword argument '{sorted(unknown)[0]}'")
        bound = load_for_model(self, data=data, target=target, val=val, seed=config.seed, window=window,
                               **data_controls)
        trainer = Trainer(self, config, sizes=data_sizes(self.graph, bound.train))
        if init_from is not None:
            moved = transfer(trainer, init_from)
            if progress:
                print(moved.describe(init_from))
        settings = runfolder.new_settings(self, self.source.filename, config, data=str(spec), target=target,
                                          val=val, window=window) if out else {}
        with folder_of(settings) as folder:
            outcome = Loop(trainer, bound, folder, Printed(), callbacks=callbacks).run()
        if outcome.status == "diverged":
            raise NncError(f"training stopped: {outcome.message}", hint="lower the learning rate or clip the "
                           "gradients") from outcome.located
        if outcome.message and progress:
            print(outcome.message)
        self.params = trainer.model_params()
        return trainer.history

    def evaluate(self, data=None, params=None, *, target: str | None = None, window: int | None = None,
                 backend: str | None = None) -> dict:
        """The model's metrics on a dataset's final part (its test set; a text's validation part; else the
        training set), as `nnc run` ends with: loss, accuracy (a classifier), MSE/MAE (a regression), ..."""
        from .data import load_for_model
        from .train.evaluator import Evaluator, final_evaluation

        bound = load_for_model(self, data=data, target=target, val=0.0, window=window)
        evaluator = Evaluator(self, backend or "llvm", self.complete_params(params, random_params=False))
        which, result = final_evaluation(evaluator, bound)
        return {"evaluated_on": which, **result}

    def resolve(self, name: str | None, graph=None) -> tuple[str, int]:
        """A statement, input, parameter or output name -> (name, node); None -> the loss or single output."""
        g = graph or self.graph
        if name is None:
            if g.loss is not None:
                return "loss", g.loss
            if len(g.outputs) == 1:
                return next(iter(g.outputs.items()))
            raise NncError(f"model '{self.name}' has no loss and {len(g.outputs)} outputs",
                           hint="say which value to differentiate with --of NAME")
        table = {**g.values, **g.outputs}
        if name not in table:
            close = nearest(name, table)
            raise NncError(f"model '{self.name}' has no value named '{name}'",
                           hint=f"did you mean '{close}'?" if close else f"its values: {', '.join(table)}")
        return name, table[name]

    def default_wrt(self) -> list[str]:
        g = self.graph
        names = [n for n, node in g.params.items() if g.nodes[node]["attrs"]["trainable"]]
        return names + [n for n, node in g.inputs.items() if g.type_of(node).is_float]

    def grad(self, inputs: dict | None = None, params=None, *, of: str | None = None, wrt=None, seed: int = 0,
             random_params: bool = False, float_dtype=np.float32, intermediates: bool = False,
             backend: str | None = None) -> Gradients:
        """Differentiate `of` (default: the loss) with respect to `wrt` (default: trainable parameters and
        float inputs) on the training form of the model, at `params` (as for `eval`; `random_params=True`
        for gradients at a seeded initialization). The forward + backward graph runs as native code by
        default; `backend="reference"` (or float64) runs the NumPy reference interpreter."""
        from .runtime.execute import run_graph

        g = self.training_graph
        of_name, of_node = self.resolve(of, g)
        if g.type_of(of_node).shape != ():
            raise NncError(f"can only differentiate a scalar: '{of_name}' has shape {g.type_of(of_node)}, "
                           f"expected []", g.nodes[of_node].get("loc"), hint="pick a scalar with --of, or mean(...) it")
        wrt = list(wrt) if wrt is not None else self.default_wrt()
        known = set(g.params) | set(g.inputs)
        for w in wrt:
            if w not in known:
                raise NncError(f"--wrt: '{w}' is not an input or parameter of model '{self.name}'",
                               hint=f"choose from: {', '.join(sorted(known))}")
            node = {**g.params, **g.inputs}[w]
            if not g.type_of(node).is_float:
                raise NncError(f"--wrt: '{w}' is an int tensor {g.type_of(node)}, it has no gradient")
        keep = tuple(k for k in g.values if k not in wrt) if intermediates else ()
        gg = self._gradient_graph(of_node, tuple(wrt), keep)
        full = self.complete_params(params, seed, float_dtype, random_params=random_params)
        targets = [gg.grad_of, *gg.grads.values()]
        values = run_graph(gg, dict(inputs or {}), full, targets, float_dtype=float_dtype, seed=seed, backend=backend)
        grads = {k: values[n] for k, n in gg.grads.items()}
        return Gradients(of_name, values[gg.grad_of], {k: grads[k] for k in wrt},
                         {k: v for k, v in grads.items() if k not in wrt}, gg, gg.grad_of)

    def _gradient_graph(self, of_node: int, wrt: tuple, keep: tuple):
        """The simplified forward + backward graph, built once per (target, wrt, kept intermediates)."""
        cache = self.__dict__.setdefault("_gradient_graphs", {})
        key = (of_node, wrt, keep)
        if key not in cache:
            from .passes import pipeline

            cache[key] = pipeline.gradient(self.training_graph, of=of_node, wrt=list(wrt), keep=list(keep))
        return cache[key]

    def training_step(self, spec=None, *, weight_decay: float = 0.0, clip: float | None = None,
                      loss: str | None = None, frozen=()):
        """The graph of one training step with the optimizer `spec` (a nnc.specs.Spec; default: the train
        block's): forward, backward and update (nnc.passes.pipeline.training_step) of the parameters loss
        `loss` trains (a model with several losses has one step per loss) less the `frozen` ones."""
        from .passes import pipeline

        return pipeline.training_step(self.training_graph, spec or self.settings["optimizer"],
                                      weight_decay=weight_decay, clip=clip, loss=loss, frozen=frozen)

    def random_inputs(self, batch: int = 4, seed: int = 0, names=None) -> dict:
        """Random values for the inputs: floats ~ N(0, 1); int labels in the range their consumer expects."""
        g = self.graph
        rng = np.random.default_rng(seed)
        out = {}
        for name, node in g.inputs.items():
            if names is not None and name not in names:
                continue
            t = g.type_of(node)
            shape = tuple(batch if isinstance(d, str) else d for d in t.shape)
            if t.is_float:
                out[name] = rng.normal(size=shape).astype(t.dtype)
            else:
                out[name] = rng.integers(0, g.label_classes(node) or 2, size=shape).astype(np.int32)
        return out

    def _inputs_of(self, node) -> list[str]:
        need = self.graph.needed_for([node])
        return [name for name, n in self.graph.inputs.items() if n in need]


def loads(text: str, filename: str = "<string>", model: str | None = None) -> Model:
    """Build a model from source text."""
    program = parse(text, filename)
    return _select(program, model, filename)


def load(path_or_text: str | Path, model: str | None = None) -> Model:
    """Build a model from a .nn file, an .onnx file (imported in memory, its initializers the parameters' values),
    or from source text when given text with a `{`."""
    if isinstance(path_or_text, str) and "{" in path_or_text:
        return loads(path_or_text, model=model)
    path = str(path_or_text)
    if path.endswith(".onnx"):
        return load_onnx(path, model)
    return loads(read_source(path), path, model)


def load_onnx(path: str | Path, model: str | None = None, loss: str | None = None) -> Model:
    """An ONNX model imported as a .nn model (`nnc import` writes the same text), with its initializers as the
    values of its parameters (`Model.file_params`); `loss` ("cross_entropy" or "mse") adds a target input and that
    loss of the first output, to train it."""
    from .onnx.importer import import_onnx

    imported = import_onnx(path, loss=loss)
    if model is not None and model != imported.name:
        raise NncError(f"{path} has no model '{model}'", hint=f"its model: {imported.name}")
    m = loads(imported.text, f"{path} (imported)")
    m.file_params = imported.params
    return m


def load_all(path: str | Path) -> list[Model]:
    """Every model of a file (for `nnc check`)."""
    path = str(path)
    if path.endswith(".onnx"):
        return [load_onnx(path)]
    program = parse(read_source(path), path)
    return [Model(program, m) for m in _models_by_name(program, path).values()]


def _models_by_name(program, filename: str) -> dict:
    """The file's model ASTs by name, refusing a file without models or with a name used twice."""
    if not program.models:
        raise NncError("the file defines no model", hint="add `model NAME { ... }`", filename=filename)
    seen = {}
    for m in program.models:
        if m.name in seen:
            raise NncError(f"model '{m.name}' is defined twice (first at {seen[m.name].name_loc.span})", m.name_loc,
                           hint="models of one file need distinct names; --model NAME picks one")
        seen[m.name] = m
    return seen


def _select(program, name: str | None, filename: str) -> Model:
    seen = _models_by_name(program, filename)
    if name is None:
        return Model(program, program.models[0])
    if name not in seen:
        raise NncError(f"{filename} has no model '{name}'", hint=f"its models: {', '.join(seen)}")
    return Model(program, seen[name])


DATA_CONTROLS = {"classes", "train_size", "label_noise", "shuffle_labels", "test", "standardize"}


class _NotebookLine:
    """One text output of a Jupyter cell, replaced in place (IPython's display with a display_id)."""

    def __init__(self, display):
        self.display, self.handle = display, None

    def update(self, text: str) -> None:
        if self.handle is None:
            self.handle = self.display(text, display_id=True)
        else:
            self.handle.update(text)


def _notebook_display() -> _NotebookLine | None:
    """A line to update in place when running in a Jupyter kernel, else None (plain lines are printed)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return None
    from IPython.display import display

    return _NotebookLine(display)
