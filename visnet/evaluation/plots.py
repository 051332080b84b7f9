"""Figures of the evaluation (matplotlib, no display needed): the N x K accuracy heatmap."""

from __future__ import annotations

from collections.abc import Sequence


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str) -> str:
    """Lays out, writes and closes `figure`; returns `path`."""
    figure.tight_layout()
    figure.savefig(path)
    pyplot().close(figure)
    return path


def accuracy_heatmap(rows: Sequence[dict], path: str, title: str = "", row_key: str = "ways",
                     row_names: dict | None = None) -> str:
    """An N-way (rows) x K-shot (columns) grid of mean accuracies with their 95% intervals, as a PNG.

    Args:
        rows: dicts with `ways`, `shots`, `accuracy` (0-1, or None when the task could not be drawn)
            and `ci95`, as `FewShotResult.to_dict()` gives them.
        path: str. The PNG to write.
        title: str. Figure title.
        row_key: str. The key the grid's rows follow (`ways`; `removed` for the layer-removal grid).
        row_names: dict or None. Row tick labels by row value (default "N-way").
    """
    import numpy as np

    plt = pyplot()
    ways = sorted({r[row_key] for r in rows})
    shots = sorted({r["shots"] for r in rows})
    grid = np.full((len(ways), len(shots)), np.nan)
    labels = [["n/a"] * len(shots) for _ in ways]
    for r in rows:
        i, j = ways.index(r[row_key]), shots.index(r["shots"])
        if r.get("accuracy") is not None:
            grid[i, j] = 100 * r["accuracy"]
            labels[i][j] = f"{100 * r['accuracy']:.1f}\n± {100 * r['ci95']:.1f}"
    names = [(row_names or {}).get(w, f"{w}-way") for w in ways]
    longest = max(len(name) for name in names)
    figure, axes = plt.subplots(figsize=(1.2 + 1.3 * len(shots) + 0.07 * longest, 1.0 + 0.9 * len(ways)), dpi=100)
    colours = plt.get_cmap("viridis").with_extremes(bad="lightgrey")  # grey: cells the pool could not fill
    image = axes.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=0, vmax=100, aspect="auto")
    for i in range(len(ways)):
        for j in range(len(shots)):
            light = np.isnan(grid[i, j]) or grid[i, j] > 60
            axes.text(j, i, labels[i][j], ha="center", va="center", fontsize=8, color="black" if light else "white")
    axes.set_xticks(range(len(shots)), [f"{s}-shot" for s in shots])
    axes.set_yticks(range(len(ways)), names)
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label="accuracy (%)")
    return save_figure(figure, path)


def precision_recall(curves: dict, path: str, title: str = "") -> str:
    """Precision-recall curves of retrieval (name -> (precision, recall, average precision)) as a PNG."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    for name, (precision, recall, ap) in curves.items():
        axes.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title(title, fontsize=9)
    axes.legend(loc="upper right", fontsize=8)
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def distance_histograms(panels: dict, path: str, title: str = "") -> str:
    """Histograms of positive- and negative-pair distances, one panel per model
    (name -> (positive distances, negative distances)), as in the Navee report's figure 20."""
    import numpy as np

    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), dpi=100, squeeze=False)
    for axis, (name, (positive, negative)) in zip(axes[0], panels.items()):
        high = float(np.percentile(np.concatenate([positive, negative]), 99.5)) if len(positive) + len(negative) else 1
        bins = np.linspace(0, high, 50)
        axis.hist(negative, bins=bins, alpha=0.6, density=True, label=f"different class ({len(negative):,})")
        axis.hist(positive, bins=bins, alpha=0.6, density=True, label=f"same class ({len(positive):,})")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("distance")
        axis.legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def embedding_map(points, labels, path: str, title: str = "") -> str:
    """A 2-D map of embeddings (PCA or t-SNE coordinates) coloured by class, as a PNG."""
    import numpy as np

    plt = pyplot()
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    colours = plt.get_cmap("tab20", max(len(classes), 1))
    figure, axes = plt.subplots(figsize=(6.5, 5), dpi=100)
    for i, name in enumerate(classes):
        mask = labels == name
        axes.scatter(points[mask, 0], points[mask, 1], s=8, color=colours(i % 20), label=str(name))
    if len(classes) <= 20:
        axes.legend(fontsize=6, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title, fontsize=9)
    return save_figure(figure, path)


def training_curves(history: list[dict], path: str, title: str = "") -> str:
    """Loss and validation metrics per epoch (a run's `history`) as a PNG."""
    plt = pyplot()
    epochs = [i + 1 for i in range(len(history))]
    metrics = [k for k in ("val_mAP", "val_recall@1", "val_recall@5") if any(k in h for h in history)]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    loss_axis.plot(epochs, [h.get("loss") for h in history], marker="o")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss")
    for key in metrics:
        metric_axis.plot(epochs, [h.get(key) for h in history], marker="o", label=key)
    metric_axis.set_xlabel("epoch")
    metric_axis.set_ylabel("validation")
    if metrics:
        metric_axis.legend(fontsize=8)
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)
