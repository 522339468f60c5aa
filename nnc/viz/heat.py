"""`nnc viz --heat RUN_DIR`: the layers coloured by their gradient norms, and where the plot of the norms goes.

Reads what `nnc run --grad-stats` recorded (grad_stats.py). Colours follow
log10 of the last epoch's norm on a fixed scale (1e-6 to 1, widened when a
norm falls outside), so a layer whose gradient vanished is dark, one whose
gradient is large is bright, and two runs' maps compare directly;
each box also states its norm. The plot beside the diagram (`plot_path`;
plots.plot_norms draws it: one line per layer over the epochs, log scale)
is the course's vanishing-gradient picture.
"""

from __future__ import annotations

import math
from pathlib import Path

from .layers import layers_view
from .style import Options

COLORMAP = "viridis"


SCALE = (-6.0, 0.0)  # log10 ‖∇‖ from 1e-6 to 1 at least, so two runs' maps compare at a glance


def color_range(norms: dict) -> tuple[float, float]:
    logs = [math.log10(v) for v in norms.values() if v > 0]
    return min([SCALE[0], *logs]), max([SCALE[1], *logs])


def heat_colors(norms: dict) -> dict:
    """layer -> '#rrggbb' on a log scale from 1e-6 (or the smallest norm) to 1 (or the largest)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    logs = {k: math.log10(v) if v > 0 else None for k, v in norms.items()}
    lo, hi = color_range(norms)
    cmap = colormaps[COLORMAP]
    out = {}
    for k, v in logs.items():
        t = 0.0 if v is None or hi == lo else (v - lo) / (hi - lo)
        out[k] = to_hex(cmap(0.4 + 0.6 * t))
    return out


def heat_diagram(model, table: dict, epoch: int | None = None) -> str:
    last = {layer: dict(rows)[epoch] if epoch is not None else rows[-1][1] for layer, rows in table.items()}
    shown_epoch = epoch if epoch is not None else max(rows[-1][0] for rows in table.values())
    lo, hi = color_range(last)
    opts = Options(box_fill=heat_colors(last), box_note={k: f"‖∇‖ = {v:.3g}" for k, v in last.items()},
                   caption=f"{model.name}: gradient norm per layer after epoch {shown_epoch} "
                           f"(colour: log10 ‖∇‖ from {10 ** lo:.0e}, dark, to {10 ** hi:.0e}, bright)")
    return layers_view(model.graph, opts).source()


def plot_path(output: str | Path, what: str = "norms") -> Path:
    """Where the plot beside a heat diagram goes: OUT_norms.png (per layer), OUT_steps.png (per time step)."""
    output = Path(output)
    return output.with_name(f"{output.stem}_{what}.png")
