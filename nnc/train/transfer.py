"""Transfer learning: a new run's parameters initialized by name from another run or checkpoint
(`--init-from`), with a report of what was loaded, what is new and what was ignored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NncError
from ..ir.types import format_shape
from ..runtime import checkpoint


@dataclass
class Transfer:
    loaded: list[str]
    new: list[str]       # the model's parameters the source does not have: they keep their initialization
    ignored: list[str]   # the source's parameters the model does not have

    def describe(self, source) -> str:
        lines = [f"  initialized from {source}: {len(self.loaded)} parameters loaded"
                 + (f" ({', '.join(self.loaded)})" if len(self.loaded) <= 8 else "")]
        if self.new:
            lines.append(f"  new (initialized as declared): {', '.join(self.new)}")
        if self.ignored:
            lines.append(f"  ignored (not in this model): {', '.join(self.ignored)}")
        return "\n".join(lines)


def read_source(source) -> dict:
    """The parameter arrays of a run folder, checkpoint or parameter .npz (optimizer state left out)."""
    path = checkpoint.checkpoint_path(source)
    arrays, _ = checkpoint.load(path)
    return {k: v for k, v in arrays.items() if not k.startswith(("optimizer/", "optimizer["))}


def init_from(trainer, source) -> Transfer:
    """Load the parameters of `source` whose names the model has into `trainer`; a name with another shape is
    an error naming both shapes, and so is a source that shares no name with the model."""
    arrays = read_source(source)
    mine = trainer.model.param_types
    common = [n for n in mine if n in arrays]
    if not common:
        raise NncError(f"--init-from {source}: none of its parameters is a parameter of model "
                       f"'{trainer.model.name}' (it has {', '.join(sorted(arrays)[:6]) or 'none'}"
                       f"{', ...' if len(arrays) > 6 else ''})",
                       hint="initialize from a run of a model whose layers have the same names")
    for name in common:
        want = tuple(mine[name].shape)
        if tuple(arrays[name].shape) != want:
            raise NncError(f"--init-from {source}: parameter {name} has shape {format_shape(arrays[name].shape)} "
                           f"there, expected {format_shape(want)} in model '{trainer.model.name}'",
                           hint="rename the layer that changed (a new head gets a new name) so it starts fresh")
    trainer.load_state({n: np.asarray(arrays[n], np.float32) for n in common})
    return Transfer(common, [n for n in mine if n not in arrays], sorted(set(arrays) - set(mine)))
