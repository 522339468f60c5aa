"""The figures of training: a run's curves.png (loss, and accuracy for a classifier, per epoch), its
confusion.png, and the gradient norms per layer over the epochs (`nnc viz --heat`, FILE_norms.png).

Figures are built with matplotlib's object API (no pyplot): nothing global to
close, and importing pyplot alone would cost more than half a second of every
run. matplotlib is imported when the first figure is drawn, not in a thread
while training runs: that thread held the GIL the training loop needs between
its native steps and took a core from them, and the first epoch lost more time
than the import costs. Every PNG is written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..fileio import atomic_write


def plot_curves(path: Path, history, classifier: bool) -> None:
    """Loss (and, for a classifier, accuracy) per epoch from a run's EpochStats, training and validation."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h.epoch for h in history]
    panels = 2 if classifier else 1
    fig = Figure(figsize=(5 * panels, 3.6))
    axes = fig.subplots(1, panels, squeeze=False)
    ax = axes[0][0]
    ax.plot(epochs, [h.train_loss for h in history], "o-", label="train")
    if any(h.val_loss is not None for h in history):
        ax.plot(epochs, [h.val_loss for h in history], "s--", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.legend()
    if classifier:
        ax = axes[0][1]
        ax.plot(epochs, [100 * (h.train_accuracy or 0) for h in history], "o-", label="train")
        if any(h.val_accuracy is not None for h in history):
            ax.plot(epochs, [100 * (h.val_accuracy or 0) for h in history], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("accuracy")
        ax.legend()
    for row in axes:
        for a in row:
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    save_figure(fig, path)


def plot_confusion(path: Path, counts: np.ndarray, labels=None) -> None:
    from matplotlib.figure import Figure

    k = len(counts)
    fig = Figure(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")
    ticks = list(range(k))
    ax.set_xticks(ticks, labels or ticks)
    ax.set_yticks(ticks, labels or ticks)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = counts.max() if counts.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if counts[i, j] > top / 2 else "black", in_layout=False)  # inside the axes
    ax.set_title("confusion matrix (test set)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_norms(path: Path, table: dict, title: str) -> None:
    """One line per layer over the epochs, log scale: {layer: [(epoch, norm), ...]} as grad_stats.csv holds it."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for layer, rows in table.items():
        ax.plot([e for e, _ in rows], [max(n, 1e-30) for _, n in rows], "o-", label=layer, markersize=3)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("‖d loss / d layer parameters‖")
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(fig, path)


def plot_steps(path: Path, table: dict, title: str) -> None:
    """A heat map per recurrent layer: the gradient norm that reaches each time step (rows, step 1 at the
    bottom) after each epoch (columns), colour on a log scale shared by the layers:
    {layer: {epoch: [norm at step 1, 2, ...]}} as grad_steps.csv holds it."""
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    grids = {}
    for layer, epochs in table.items():
        order = sorted(epochs)
        grids[layer] = (order, np.maximum(np.array([epochs[e] for e in order]).T, 1e-30))
    values = np.concatenate([g.ravel() for _, g in grids.values()])
    scale = LogNorm(vmin=values.min(), vmax=values.max())
    fig = Figure(figsize=(3.2 * len(grids) + 1.4, 4.0))
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    for ax, (layer, (order, grid)) in zip(axes, grids.items()):
        image = ax.imshow(grid, origin="lower", aspect="auto", norm=scale, cmap="viridis",
                          extent=(order[0] - 0.5, order[-1] + 0.5, 0.5, grid.shape[0] + 0.5))
        ax.set_xlabel("epoch")
        ax.set_ylabel("time step")
        ax.set_title(layer, fontsize=9)
    fig.colorbar(image, ax=list(axes), label="‖d loss / d step's input‖")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_trajectory(path: Path, names: list[str], points: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                    losses: np.ndarray) -> None:
    """The path of gradient descent on two scalar parameters (`points` [steps + 1, 2]) over the contours of
    the loss (`losses` [len(ys), len(xs)] on the grid xs × ys), start and end marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.4))
    ax = fig.subplots()
    finite = losses[np.isfinite(losses)]
    levels = np.quantile(finite, np.linspace(0, 1, 16)) if finite.size else 10
    contours = ax.contour(xs, ys, losses, levels=np.unique(levels), cmap="viridis", linewidths=0.8)
    ax.clabel(contours, fontsize=7, fmt="%.3g")
    ax.plot(points[:, 0], points[:, 1], "o-", color="tab:red", markersize=3, linewidth=1)
    ax.plot(*points[0], "s", color="black", label="start")
    ax.plot(*points[-1], "*", color="tab:red", markersize=10, label=f"step {len(points) - 1}")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title("gradient descent on the loss")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def image_grid(images: np.ndarray, columns: int = 8, scale: int = 2) -> np.ndarray:
    """Images [N, H, W] (or [N, 1, H, W]) with values in [0, 1] tiled in rows of `columns` with a 2-pixel
    gap, as uint8 grey levels enlarged `scale` times."""
    images = np.asarray(images, dtype=np.float32).reshape(len(images), *np.shape(images)[-2:])
    n, h, w = images.shape
    rows = -(-n // columns)
    grid = np.ones((rows * (h + 2) + 2, columns * (w + 2) + 2), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + c * (w + 2):2 + c * (w + 2) + w] = image
    pixels = (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)


def save_image_grid(path: Path, images: np.ndarray, columns: int = 8) -> None:
    """A grid of generated images (a GAN's samples) as a PNG, written atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_grid(images, columns)).save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))
