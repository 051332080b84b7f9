"""Figures of the evaluation (matplotlib, no display needed): the N x K accuracy heatmap."""

from __future__ import annotations

from collections.abc import Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_heatmap(rows: Sequence[dict], path: str, title: str = "") -> str:
    """An N-way (rows) x K-shot (columns) grid of mean accuracies with their 95% intervals, as a PNG.

    Args:
        rows: dicts with `ways`, `shots`, `accuracy` (0-1, or None when the task could not be drawn)
            and `ci95`, as `FewShotResult.to_dict()` gives them.
        path: str. The PNG to write.
        title: str. Figure title.
    """
    import numpy as np

    plt = _pyplot()
    ways = sorted({r["ways"] for r in rows})
    shots = sorted({r["shots"] for r in rows})
    grid = np.full((len(ways), len(shots)), np.nan)
    labels = [["n/a"] * len(shots) for _ in ways]
    for r in rows:
        i, j = ways.index(r["ways"]), shots.index(r["shots"])
        if r.get("accuracy") is not None:
            grid[i, j] = 100 * r["accuracy"]
            labels[i][j] = f"{100 * r['accuracy']:.1f}\n± {100 * r['ci95']:.1f}"
    figure, axes = plt.subplots(figsize=(1.2 + 1.3 * len(shots), 1.0 + 0.9 * len(ways)), dpi=100)
    image = axes.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(len(ways)):
        for j in range(len(shots)):
            dark = not np.isnan(grid[i, j]) and grid[i, j] > 60
            axes.text(j, i, labels[i][j], ha="center", va="center", fontsize=8, color="black" if dark else "white")
    axes.set_xticks(range(len(shots)), [f"{s}-shot" for s in shots])
    axes.set_yticks(range(len(ways)), [f"{w}-way" for w in ways])
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label="accuracy (%)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
