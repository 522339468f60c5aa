"""Memory planning: where every value of a compiled graph lives, as byte offsets.

Three regions, all allocated once per compiled (graph, batch size):
  arena   kernel outputs, kernel scratch and (threaded code) the work-unit
          counters, zeroed once and alive for every step; a buffer lives from the kernel
          that writes it to the last kernel that reads it (targets and
          state updates to the end), and buffers whose lifetimes do not
          overlap share bytes (greedy best-offset placement, largest first);
  state   the parameters, then the constants, in one buffer the compiled
          code owns, so a training step can update parameters in place;
  inputs  the caller's arrays, passed by pointer; a loop's body also finds there
          the memory of the values it writes straight into its caller's
          buffers (`external`: a step's slice of the stacked results).
Reshape views take the storage of the node they view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..ir import ops
from ..ir.ops import CONSTANT
from ..ir.types import concrete

ALIGN = 64  # one cache line; also keeps every vector load aligned to its element


@dataclass(frozen=True)
class Slot:
    region: str   # "arena", "state" or "input"
    offset: int   # bytes into the region; for "input", the input's position
    nbytes: int


@dataclass
class MemoryPlan:
    slots: dict = field(default_factory=dict)          # storage node -> Slot
    scratch: dict = field(default_factory=dict)        # kernel index -> Slot
    sync: Slot | None = None                           # the threads' work-unit counters
    arena_bytes: int = 0
    state_bytes: int = 0
    param_bytes: int = 0
    params: dict = field(default_factory=dict)         # name -> (node, Slot)
    constants: dict = field(default_factory=dict)      # node -> (value array, Slot)
    inputs: dict = field(default_factory=dict)         # name -> (node, Slot)
    external: dict = field(default_factory=dict)       # storage node -> Slot in the input table after the inputs
    lifetimes: dict = field(default_factory=dict)      # arena storage node -> (first kernel, last kernel)


def nbytes(shape, dtype: str = "float32") -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def constant_value(g, n, bindings: dict) -> np.ndarray:
    """The value of a const or count node, in its declared dtype and concrete shape."""
    attrs = g.nodes[n]["attrs"]
    value = attrs["value"] if g.op(n) is ops.const else math.prod(concrete(attrs["dims"], bindings))
    shape = concrete(g.type_of(n).shape, bindings)
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value), shape), dtype=np.dtype(g.type_of(n).dtype))


def plan_memory(plan, bindings: dict, scratch_bytes: dict, sync_bytes: int = 0, external=()) -> MemoryPlan:
    """Place every value `plan` (a fusion KernelPlan) touches; `scratch_bytes`: kernel index -> bytes;
    `sync_bytes` for the threads' counters (never shared with anything else); `external`: stored nodes
    whose memory the caller passes in the input table, after the inputs."""
    g = plan.graph
    mp = MemoryPlan()

    def shape(n):
        return concrete(g.type_of(n).shape, bindings)

    state = 0
    for name, n in g.params.items():
        size = nbytes(shape(n), g.type_of(n).dtype)
        mp.params[name] = (n, Slot("state", state, size))
        mp.slots[n] = mp.params[name][1]
        state += _aligned(size)
    mp.param_bytes = state
    needed = plan.needed
    for n in sorted(needed):
        if g.op(n).is_a(CONSTANT):
            arr = constant_value(g, n, bindings)
            slot = Slot("state", state, arr.nbytes)
            mp.constants[n] = (arr, slot)
            mp.slots[n] = slot
            state += _aligned(arr.nbytes)
    mp.state_bytes = state
    for position, (name, n) in enumerate(g.inputs.items()):
        slot = Slot("input", position, nbytes(shape(n), g.type_of(n).dtype))
        mp.inputs[name] = (n, slot)
        mp.slots[n] = slot

    for position, n in enumerate(external, start=len(g.inputs)):
        mp.external[n] = mp.slots[n] = Slot("input", position, nbytes(shape(n), g.type_of(n).dtype))

    end = len(plan.kernels)
    life: dict = {}
    for k in plan.kernels:
        for n in k.stored:   # a concat written in place has several writers: alive from the first
            if n not in mp.external:
                life.setdefault(n, [k.index, k.index])[1] = k.index
    for k in plan.kernels:
        for n in k.inputs:
            root = plan.storage_of(n)
            if root in life:
                life[root][1] = max(life[root][1], k.index)
    for n in list(plan.targets) + list(g.updates.values()):
        root = plan.storage_of(n)
        if root in life:
            life[root][1] = end
    requests = [(n, nbytes(shape(n), g.type_of(n).dtype), tuple(span)) for n, span in life.items()]
    for index, size in scratch_bytes.items():
        requests.append((("scratch", index), size, (index, index)))
    if sync_bytes:
        requests.append((("sync", -1), sync_bytes, (-1, end + 1)))
    placed = _place(requests)
    for (key, size, span), offset in placed.items():
        slot = Slot("arena", offset, size)
        if key == ("sync", -1):
            mp.sync = slot
        elif isinstance(key, tuple):
            mp.scratch[key[1]] = slot
        else:
            mp.slots[key] = slot
            mp.lifetimes[key] = span
        mp.arena_bytes = max(mp.arena_bytes, _aligned(offset + size))
    return mp


def _place(requests) -> dict:
    """Greedy: largest first, each at the lowest offset clear of placed buffers that are alive with it."""
    placed: dict = {}
    for key, size, span in sorted(requests, key=lambda r: (-r[1], r[2])):
        busy = sorted((off, off + _aligned(s)) for (_, s, sp), off in placed.items()
                      if sp[0] <= span[1] and span[0] <= sp[1])
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        placed[(key, size, span)] = offset
    return placed
