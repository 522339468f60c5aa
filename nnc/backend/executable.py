"""A compiled graph in this process: its memory, its parameters and the guarded native call.

The executable owns two buffers for its lifetime: the arena (every
intermediate value) and the state (parameters, then constants). `params`
maps each parameter name to a NumPy view of its bytes in the state, so the
native code reads and updates parameters in place; `run` checks every array
it is handed before the one native call, so a wrong array is an `NncError`,
never a crash, and returns copies of the targets.

The hot path of training is `bind` (check the input arrays once and keep
their addresses) then `step` per batch (the native call alone: no checks, no
copies; the caller refills the bound arrays in place) and `view` to read a
target where it lives, until the next call. Not re-entrant: one call at a
time per executable. Compiled for T > 1 threads, the call also runs on the
process-wide worker pool for T (see threads.py), which is told to leave the
executable's step alone before its code and memory are freed; its `Pace` runs
the steps on the calling thread alone while that is faster (a busy machine).
"""

from __future__ import annotations

import ctypes
import weakref

import numpy as np

from ..errors import NncError
from ..ir.ops.nn import label_problem
from ..ir.types import concrete, format_shape
from .kernel_context import STATUS_BAD_LABEL

ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                              ctypes.c_void_p)


def aligned_bytes(nbytes: int, align: int = 64) -> np.ndarray:
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes]


class Executable:
    def __init__(self, plan, mem, bindings: dict, loaded, entry_address: int, stats: dict, threads: int = 1):
        self.plan = plan
        self.graph = plan.graph
        self.mem = mem
        self.bindings = dict(bindings)
        self.targets = plan.targets
        self.stats = stats
        self._loaded = loaded  # keeps the machine code mapped
        self._entry = ENTRY_TYPE(entry_address)
        self.arena = aligned_bytes(max(mem.arena_bytes, 64))
        self.state = aligned_bytes(max(mem.state_bytes, 64))
        self.params = {name: self._view(slot, self._shape(n), self._dtype(n))
                       for name, (n, slot) in mem.params.items()}
        for arr, slot in mem.constants.values():
            self._view(slot, arr.shape, arr.dtype)[...] = arr
        # the inputs' addresses, then that of the batch gather's table (batch_rows.py), null for none
        self._input_table = (ctypes.c_void_p * (len(mem.inputs) + 1))()
        self._row_table = None   # kept alive while its address is in the input table
        self.threads = threads
        self._pool = None
        if threads > 1:
            from .threads import Pace, machine_contention, pool
            self._pool = pool(threads)   # started once per process and thread count
            # all threads, or the caller's alone on a busy machine
            self._pace = Pace(self._pool, contention=machine_contention(threads))
            # before the code and the arena go: no worker may still be walking a step of ours
            weakref.finalize(self, self._pool.quiesce)
        self._call_args = (self.arena.ctypes.data, self.state.ctypes.data, ctypes.addressof(self._input_table))
        self._pool_address = self._pool.address if self._pool else None
        self._bound: dict = {}     # input name -> the array whose address is in the table
        self._views: dict = {}     # target node -> its value where the native code leaves it

    def _shape(self, n) -> tuple:
        return concrete(self.graph.type_of(n).shape, self.bindings)

    def _dtype(self, n) -> np.dtype:
        return np.dtype(self.graph.type_of(n).dtype)

    def _view(self, slot, shape, dtype) -> np.ndarray:
        region = self.arena if slot.region == "arena" else self.state
        count = int(np.prod(shape, dtype=np.int64))
        return region[slot.offset:slot.offset + count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    # ---- parameters -------------------------------------------------------------------------

    def set_params(self, params: dict) -> None:
        """Copy parameter arrays into the state buffer (every name must be a parameter)."""
        for name, value in params.items():
            if name not in self.params:
                raise NncError(f"unknown parameter '{name}'",
                               hint=f"the parameters are: {', '.join(self.params) or 'none'}")
            target = self.params[name]
            arr = np.asarray(value)
            if arr.shape != target.shape:
                raise NncError(f"parameter '{name}' has shape {format_shape(arr.shape)}, "
                               f"expected {format_shape(target.shape)}")
            if arr.dtype.kind != "f":
                raise NncError(f"parameter '{name}' holds {arr.dtype} values, expected float32")
            target[...] = arr

    # ---- running ---------------------------------------------------------------------------

    def run(self, inputs: dict, params: dict | None = None, *, seed: int = 0, out: dict | None = None) -> dict:
        """One native call: returns {target node: array}. `params` are copied in first (absent ones
        keep their current values); state updates are written to `self.params`; `out` may map a
        target to a writable C-contiguous array of its shape and dtype to receive it."""
        if params is not None:
            self.set_params(params)
        self.bind(inputs)
        outs = {}
        for n, arr in (out or {}).items():
            if n not in self.targets:
                raise NncError(f"out: node {n} is not a target of this executable")
            outs[n] = self._checked(f"out[{n}]", arr, self._shape(n), self._dtype(n), writable=True)
        self.step(seed)
        results = {}
        for n in self.targets:
            value = self.view(n)
            if n in outs:
                outs[n][...] = value
                results[n] = outs[n]
            else:
                results[n] = np.array(value)
        return results

    def bind(self, inputs: dict) -> None:
        """Check the input arrays and keep their addresses for `step` (which reads whatever they
        hold when it runs, so a caller may refill them in place between steps)."""
        needed = self.plan.needed
        bound = {}
        for name, (n, slot) in self.mem.inputs.items():
            if n not in needed:
                self._input_table[slot.offset] = None
                continue
            if name not in inputs:
                raise NncError(f"missing input '{name}' {self.graph.type_of(n)}")
            arr = self._checked(f"input '{name}'", inputs[name], self._shape(n), self._dtype(n))
            self._input_table[slot.offset] = arr.ctypes.data
            bound[name] = arr
        self._bound = bound
        self._views = {}
        self._input_table[len(self.mem.inputs)] = None
        self._row_table = None

    @property
    def bound(self) -> dict:
        """Input name -> the array `bind` left in the input table (a new dict at every `bind`): the inputs the
        native code reads."""
        return self._bound

    def bind_rows(self, sources: dict) -> np.ndarray:
        """Have each `step` begin by copying rows of the data arrays `sources` (input name -> array of rows)
        into the bound arrays of those inputs, on every thread: -> the int64 row indices it copies, to be
        refilled in place before each step (an index past either end of the data is clipped). Call after
        `bind`, which forgets it."""
        from .batch_rows import RowTable

        rows = {len(self._bound[name]) for name in sources if name in self._bound and self._bound[name].ndim}
        table = RowTable(len(self.mem.inputs), rows.pop() if len(rows) == 1 else 0)
        for name, data in sources.items():
            buffer = self._bound.get(name)
            if buffer is None or buffer.ndim == 0 or len(buffer) != len(table.index):
                raise NncError(f"rows for input '{name}': no bound input of that name holds {len(table.index)} rows")
            if not (isinstance(data, np.ndarray) and data.flags.c_contiguous and data.dtype == buffer.dtype
                    and data.shape[1:] == buffer.shape[1:] and len(data)):
                raise NncError(f"rows for input '{name}' must come from a C-contiguous {buffer.dtype} array of rows "
                               f"{format_shape(buffer.shape[1:])}, got {type(data).__name__} "
                               f"{getattr(data, 'dtype', '')} {format_shape(np.shape(data))}")
            table.feed(self.mem.inputs[name][1].offset, data, buffer)
        self._row_table = table
        self._input_table[len(self.mem.inputs)] = table.address
        return table.index

    def step(self, seed: int = 0) -> None:
        """The native call on the bound inputs; results stay where the code leaves them (see `view`)."""
        args = (*self._call_args, seed & 0xFFFFFFFFFFFFFFFF, self._pool_address)
        status = self._pace.call(self._entry, args) if self._pool else self._entry(*args)
        if status == STATUS_BAD_LABEL:
            raise NncError(self._label_message(self._bound))
        if status:
            raise NncError(f"native code stopped with status {status}")

    def view(self, n) -> np.ndarray:
        """Target `n` where the last call left it: overwritten by the next call, copy it to keep it."""
        value = self._views.get(n)
        if value is None:
            value = self._views[n] = self._value(n, self._bound)
        return value

    def _value(self, n, inputs) -> np.ndarray:
        root = self.plan.storage_of(n)
        slot = self.mem.slots[root]
        if slot.region == "input":
            name = self.graph.nodes[root]["attrs"]["name"]
            return np.asarray(inputs[name]).reshape(self._shape(n))
        return self._view(slot, self._shape(n), self._dtype(n))

    def _checked(self, what: str, value, shape: tuple, dtype: np.dtype, writable: bool = False) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise NncError(f"{what} is a {type(value).__name__}, expected a NumPy array",
                           hint=f"pass np.asarray(value, dtype=np.{dtype})")
        if value.dtype != dtype:
            raise NncError(f"{what} has dtype {value.dtype}, expected {dtype}",
                           hint=f"convert it with .astype(np.{dtype})")
        if value.shape != tuple(shape):
            symbols = ", ".join(f"{k}={v}" for k, v in self.bindings.items())
            compiled = f" (compiled for {symbols})" if symbols else ""
            raise NncError(f"{what} has shape {format_shape(value.shape)}, expected {format_shape(shape)}{compiled}")
        if not value.flags.c_contiguous or not value.flags.aligned:
            raise NncError(f"{what} is not a C-contiguous aligned array",
                           hint="pass np.ascontiguousarray(value)")
        if writable and not value.flags.writeable:
            raise NncError(f"{what} is read-only, expected an array the result can be written into")
        return value

    def _label_message(self, inputs) -> str:
        for name, (n, _) in self.mem.inputs.items():
            depth = self.graph.label_classes(n)
            problem = label_problem(inputs[name], depth) if depth is not None and name in inputs else None
            if problem is not None:
                return f"{name} out of range: {problem}"
        return "labels out of range: every class index must be at least 0 and less than the number of classes"
