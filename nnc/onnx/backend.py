"""nnc as an ONNX backend (`onnx.backend.base.Backend`), for ONNX's operator conformance tests.

`prepare` keeps the model; the first `run` imports it (importer.py: ONNX → `.nn` text and parameters), builds the
graph with the front end and runs it natively (runtime.execute.run_graph, float32), compiling once per model and
per value of its int inputs. Between ONNX's types and nnc's:

- int inputs (axes, pads, shapes, indices: what nnc must know when it compiles) become initializers, so the
  importer folds them into the model; a model with no float or bool input is skipped (it would all be folded by
  ONNX's own reference evaluator, computing nothing in nnc);
- bool inputs are float 0.0 / 1.0 inputs (the importer reads them so; a function such as Attention's is expanded
  for their type), float64 ones float32 inputs; each output is returned in the type
  the model declares (bool as `!= 0`, int64 by rounding a float index);
- whatever nnc cannot import or build (an operator without a translator, a dtype nnc has not, an attribute
  without a counterpart) raises `unittest.SkipTest` with nnc's own message, so the test runner reports a skip
  with its reason; a wrong number is a failure.

`onnx` is imported only inside functions (it is an optional extra): `onnx_backend()` returns the class.
"""

from __future__ import annotations

import functools
import unittest

import numpy as np

from ..errors import NncError
from .importer import INSTALL_HINT

# onnx.TensorProto element types: FLOAT, INT32, INT64, BOOL, DOUBLE
FLOAT, INT32, INT64, BOOL, DOUBLE = 1, 6, 7, 9, 11
READ = {FLOAT, DOUBLE, INT32, INT64, BOOL}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise NncError("nnc as an ONNX backend needs the onnx package", hint=INSTALL_HINT) from None
    return onnx


def _elem(vi) -> int | None:
    t = vi.type
    return t.tensor_type.elem_type if t.HasField("tensor_type") else None


def _type_name(elem) -> str:
    if elem is None:
        return "non-tensor (sequence, map or optional)"
    if elem == 8:
        return "string"
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(elem).name
    except Exception:   # string and the like have no NumPy dtype
        return f"type {elem}"


def skip(reason: str):
    raise unittest.SkipTest(reason)


class Prepared:
    """A prepared model (onnx.backend.base.BackendRep): `run(inputs)` gives its outputs as ONNX declares them."""

    def __init__(self, model):
        self.model = model
        graph = model.graph
        inits = {t.name for t in graph.initializer}
        self.inputs = [vi for vi in graph.input if vi.name not in inits]
        self.outputs = list(graph.output)
        for vi in self.inputs + self.outputs:
            if _elem(vi) not in READ:
                skip(f"{_type_name(_elem(vi))} values: nnc computes on float32 tensors (and converts float64, bool "
                     f"and int ones)")
        if not any(_elem(vi) in (FLOAT, DOUBLE, BOOL) for vi in self.inputs):
            skip("no float input: nnc computes on float tensors (int tensors are indices and labels)")
        self.compiled: dict = {}

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            inputs = [inputs[vi.name] for vi in self.inputs]
        inputs = [np.asarray(v) for v in inputs]
        fixed = {vi.name: v for vi, v in zip(self.inputs, inputs) if _elem(vi) in (INT32, INT64)}
        key = tuple((k, v.dtype.str, v.shape, v.tobytes()) for k, v in fixed.items())
        if key not in self.compiled:
            self.compiled[key] = self._build(fixed)
        graph, params, names = self.compiled[key]
        from ..runtime.execute import run_graph

        feeds = {names[vi.name]: np.asarray(v, dtype=np.float32)
                 for vi, v in zip(self.inputs, inputs) if vi.name in names}
        targets = list(graph.outputs.values())
        try:
            values = run_graph(graph, feeds, params, targets)
        except NncError as e:
            skip(f"nnc: {e.message}")
        return [_as_declared(values[n], vi) for n, vi in zip(targets, self.outputs)]

    def _build(self, fixed: dict):
        """Import with the int inputs as initializers; the graph, its parameters and the .nn name of each input."""
        onnx = _onnx()
        from ..front.builder import build
        from ..front.syntax import parse
        from ..runtime.init import init_params
        from .importer import import_onnx, sanitize

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        graph = model.graph
        keep = [vi for vi in graph.input if vi.name not in fixed]
        del graph.input[:]
        graph.input.extend(keep)
        graph.initializer.extend(onnx.numpy_helper.from_array(v, name) for name, v in fixed.items())
        for vi in list(graph.input) + list(graph.output):   # (a bool input the importer reads as a 0/1 mask)
            if _elem(vi) == DOUBLE or (_elem(vi) == BOOL and vi not in graph.input):
                vi.type.tensor_type.elem_type = FLOAT
        try:
            imported = import_onnx(model, name=sanitize(model.graph.name) or "conformance")
            program = parse(imported.text, "<onnx>")
            g = build(program, program.models[0], training=False)
        except NncError as e:
            skip(f"nnc: {e.message}")
        params = init_params(g)
        params.update(imported.params)
        names = {vi.name: sanitize(vi.name) for vi in keep}
        missing = [n for n in names.values() if n not in g.inputs]
        if missing:   # renamed by the importer (a clash): match by position instead
            names = dict(zip((vi.name for vi in keep), g.inputs))
        return g, params, names


def _as_declared(value, vi) -> np.ndarray:
    elem = _elem(vi)
    value = np.asarray(value)
    if elem == BOOL:
        return value != 0
    if elem in (INT32, INT64):
        return np.rint(value).astype(np.int64 if elem == INT64 else np.int32)
    return value.astype(np.float64 if elem == DOUBLE else np.float32)


@functools.cache
def onnx_backend():
    """The `onnx.backend.base.Backend` subclass running models with nnc (CPU only)."""
    onnx = _onnx()
    from onnx.backend.base import Backend, BackendRep

    class NncRep(Prepared, BackendRep):
        pass

    class NncBackend(Backend):
        @classmethod
        def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
            return device == "CPU"

        @classmethod
        def prepare(cls, model, device: str = "CPU", **kwargs):
            if isinstance(model, (str, bytes)):
                model = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(model)
            return NncRep(model)

        @classmethod
        def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
            return cls.prepare(model, device).run(inputs)

        @classmethod
        def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
            raise NotImplementedError("nnc runs whole models: wrap the node in a graph (onnx.helper.make_model)")

        @classmethod
        def supports_device(cls, device: str) -> bool:
            return device == "CPU"

    return NncBackend
