"""The Python API: `nnc.load(...)` returns a `Model` to summarize, evaluate and inspect."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from . import interp
from .builder import build
from .errors import NncError
from .init import init_params
from .settings import read_train_block
from .summary import summary_text
from .syntax import parse, read_source


class Model:
    """One model of a .nn file, built and shape-checked."""

    def __init__(self, program, model_ast):
        self.program = program
        self.ast = model_ast
        self.name = model_ast.name
        self.source = program.source
        self.settings = read_train_block(program.trains)
        self.graph = build(program, model_ast, training=False)

    @cached_property
    def training_graph(self):
        """The same model with training behaviour: dropout masks, batch statistics."""
        return build(self.program, self.ast, training=True)

    # ---- inspection ----------------------------------------------------------

    @property
    def inputs(self) -> dict:
        return {name: self.graph.type_of(n) for name, n in self.graph.graph["inputs"].items()}

    @property
    def param_types(self) -> dict:
        return {name: self.graph.type_of(n) for name, n in self.graph.graph["params"].items()}

    @property
    def outputs(self) -> list[str]:
        return list(self.graph.graph["outputs"])

    def summary(self) -> str:
        return summary_text(self)

    def __repr__(self) -> str:
        return f"<nnc.Model {self.name}: {len(self.graph)} ops, {sum(self.param_counts().values()):,} parameters>"

    def param_counts(self) -> dict:
        return {name: int(np.prod(t.shape, dtype=np.int64)) for name, t in self.param_types.items()}

    # ---- running ----------------------------------------------------------------

    def init_params(self, seed: int = 0, float_dtype=np.float32) -> dict:
        return init_params(self.graph, seed, float_dtype)

    def complete_params(self, params: dict | None, seed: int = 0, float_dtype=np.float32) -> dict:
        """Given parameters plus seeded initial values for the ones not given; unknown names are an error."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.graph.graph["params"]))
        if unknown:
            raise NncError(f"unknown parameter '{unknown[0]}' for model '{self.name}'",
                           hint=f"the model's parameters are: {', '.join(self.graph.graph['params']) or 'none'}")
        full = self.init_params(seed, float_dtype)
        full.update(params)
        return full

    def eval(self, inputs: dict | None = None, params: dict | None = None, *, seed: int = 0,
             float_dtype=np.float32) -> dict:
        """Run the forward pass on the reference interpreter; returns outputs (and `loss` when computable)."""
        inputs = dict(inputs or {})
        params = self.complete_params(params, seed, float_dtype)
        g = self.graph
        targets = list(g.graph["outputs"].values())
        loss = g.graph["loss"]
        if loss is not None and all(n in inputs for n in self._inputs_of(loss)):
            targets.append(loss)
        values = interp.run(g, inputs, params, targets=targets, float_dtype=float_dtype, seed=seed)
        result = {name: values[n] for name, n in g.graph["outputs"].items()}
        if loss in values:
            result["loss"] = values[loss]
        return result

    def _inputs_of(self, node) -> list[str]:
        need = self.graph.needed_for([node])
        return [name for name, n in self.graph.graph["inputs"].items() if n in need]


def loads(text: str, filename: str = "<string>", model: str | None = None) -> Model:
    """Build a model from source text."""
    program = parse(text, filename)
    return _select(program, model, filename)


def load(path_or_text: str | Path, model: str | None = None) -> Model:
    """Build a model from a .nn file, or from source text when given text with a `{`."""
    if isinstance(path_or_text, str) and "{" in path_or_text:
        return loads(path_or_text, model=model)
    path = str(path_or_text)
    return loads(read_source(path), path, model)


def load_all(path: str | Path) -> list[Model]:
    """Every model of a file (for `nnc check`)."""
    path = str(path)
    program = parse(read_source(path), path)
    if not program.models:
        raise NncError(f"{path} defines no model", hint="add `model NAME { ... }`", filename=None)
    return [Model(program, m) for m in program.models]


def _select(program, name: str | None, filename: str) -> Model:
    if not program.models:
        raise NncError(f"{filename} defines no model", hint="add `model NAME { ... }`")
    seen = {}
    for m in program.models:
        if m.name in seen:
            raise NncError(f"model '{m.name}' is defined twice", m.name_loc)
        seen[m.name] = m
    if name is None:
        return Model(program, program.models[0])
    if name not in seen:
        raise NncError(f"{filename} has no model '{name}'", hint=f"its models: {', '.join(seen)}")
    return Model(program, seen[name])
