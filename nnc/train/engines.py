"""Engines: one graph compiled (or interpreted) for one batch size, stepped many times.

The trainer steps its training graph with one; `nnc bench` times one. An
engine keeps the parameters and state between steps (in the native code's
state buffer, or in arrays for the interpreter) and gathers each batch into
buffers bound once (the native step copies the rows itself, on all its
threads), so a training step costs one native call. An engine's
`transform` (the trainer's augmentation, nnc.train.augment) changes each
gathered batch in place before the step: `transform(batch, seed)`, with the
step's seed.
"""

from __future__ import annotations

import numpy as np

from ..backend import compile_graph
from ..errors import NncError
from ..ir import interp
from ..runtime.execute import check_backend, locate_by_interpreter
from ..runtime.init import init_params


class NativeEngine:
    """The graph compiled for one batch size: `run_batch` is one native call on rows gathered into buffers
    bound once (the training hot path)."""

    def __init__(self, graph, batch: int, targets, threads: int | None = None, sizes: dict | None = None,
                 transform=None):
        self.exe = compile_graph(graph, bindings(graph, batch, sizes), targets, threads=threads)
        self.compile_seconds = self.exe.stats["compile_seconds"]
        self.transform = transform
        self._buffers: dict = {}
        self._views: dict | None = None
        self._rows = 0
        self._bound = None            # the executable's binding of the buffers (`run` binds others)
        self._sources: dict = {}      # the data arrays the buffers were bound for
        self._index = None            # the row indices the native step gathers by (None: it does not)
        self._taken: list = []        # the data gathered here instead (a transform sees the batch first)

    @property
    def params(self) -> dict:
        return self.exe.params

    def set_params(self, params: dict) -> None:
        self.exe.set_params({k: v for k, v in params.items() if k in self.exe.params})

    def run(self, inputs: dict, seed: int) -> dict:
        return self.exe.run(inputs, seed=seed)

    def run_batch(self, data: dict, idx: np.ndarray, extra: dict, seed: int) -> tuple[dict, dict]:
        """One step on rows `idx` of every array in `data` plus the arrays `extra`, gathered into
        buffers bound once: -> (views of the targets, the batch), both valid until the next call. The
        native step gathers the rows itself, on all its threads (Executable.bind_rows), unless a
        transform must see the batch first."""
        buffers = self._buffers
        if buffers.keys() != data.keys() | extra.keys() or len(idx) != self._rows or self.exe.bound is not self._bound \
                or any(v is not self._sources.get(k) for k, v in data.items()):
            buffers = {k: np.empty((len(idx),) + v.shape[1:], v.dtype) for k, v in data.items()}
            buffers.update({k: np.array(v) for k, v in extra.items()})
            self.exe.bind(buffers)
            self._bound = self.exe.bound
            self._buffers, self._rows, self._views, self._sources = buffers, len(idx), None, dict(data)
            native = {k: v for k, v in data.items() if self.transform is None and k in self._bound
                      and isinstance(v, np.ndarray) and v.flags.c_contiguous and len(v)}
            self._index = self.exe.bind_rows(native) if native else None
            self._taken = [k for k in data if k not in native]
        if self._index is not None:
            self._index[...] = idx
        for k in self._taken:
            np.take(data[k], idx, axis=0, out=buffers[k], mode="clip")
        for k, v in extra.items():
            buffers[k][...] = v
        if self.transform is not None:
            self.transform(buffers, seed)
        try:
            self.exe.step(seed)
        except NncError as err:
            locate_by_interpreter(err, self.exe.graph, buffers, dict(self.exe.params), self.exe.targets, seed)
            raise
        if self._views is None:   # the targets stay where they are from one step to the next
            self._views = {n: self.exe.view(n) for n in self.exe.targets}
        return self._views, buffers


class ReferenceEngine:
    """The same interface on the NumPy reference interpreter, which keeps the parameters itself."""

    def __init__(self, graph, batch: int, targets, threads: int | None = None, sizes: dict | None = None,
                 transform=None):
        self.graph = graph
        self.targets = list(targets) + list(graph.updates.values())
        self.params = init_params(graph)
        self.compile_seconds = 0.0
        self.transform = transform

    def set_params(self, params: dict) -> None:
        for k, v in params.items():
            if k in self.params:
                self.params[k] = np.array(v, dtype=self.params[k].dtype)

    def run(self, inputs: dict, seed: int) -> dict:
        values = interp.run(self.graph, inputs, self.params, targets=self.targets, seed=seed)
        for name, n in self.graph.updates.items():
            self.params[name] = values[n]
        return values

    def run_batch(self, data: dict, idx: np.ndarray, extra: dict, seed: int) -> tuple[dict, dict]:
        batch = {k: v[idx] for k, v in data.items()} | extra
        if self.transform is not None:
            self.transform(batch, seed)
        return self.run(batch, seed), batch


ENGINES = {"llvm": NativeEngine, "reference": ReferenceEngine}


def engine(backend: str, graph, batch: int, targets, threads: int | None = None, sizes: dict | None = None,
           transform=None):
    """The engine running `graph` on `backend` (checked by nnc.runtime.execute.check_backend); `sizes` gives
    the symbolic dims other than the batch (a sequence's T), see `data_sizes`; `transform(batch, seed)` changes
    each gathered batch in place before its step."""
    return ENGINES[check_backend(backend)](graph, batch, targets, threads=threads, sizes=sizes, transform=transform)


def bindings(graph, batch: int, sizes: dict | None = None) -> dict:
    """Every symbolic dim of the inputs: `sizes` where given, else the batch size."""
    return {s: (sizes or {}).get(s, batch) for n in graph.inputs.values() for s in graph.type_of(n).shape
            if isinstance(s, str)}


def data_sizes(graph, arrays: dict) -> dict:
    """The size of each symbolic dim past the first (the batch) of the inputs, read off the data's arrays:
    {"T": 64} for `input text: int[B, T]` fed windows of 64 characters."""
    sizes = {}
    for name, n in graph.inputs.items():
        if name in arrays:
            for d, size in zip(graph.type_of(n).shape[1:], np.shape(arrays[name])[1:]):
                if isinstance(d, str):
                    sizes.setdefault(d, int(size))
    return sizes
