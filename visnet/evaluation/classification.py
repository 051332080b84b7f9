"""Closed-set classification with k nearest neighbours on embeddings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from visnet.evaluation.distances import DEFAULT_MAX_MEMORY, chunk_rows, distance_chunks


def vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Majority label of each row of (n, k) neighbour labels, nearest first.

    Ties go to the tied label whose nearest neighbour comes first.
    """
    neighbour_labels = np.asarray(neighbour_labels)
    k = neighbour_labels.shape[1]
    counts = (neighbour_labels[:, :, None] == neighbour_labels[:, None, :]).sum(axis=2)
    score = counts * (k + 1) - np.arange(k)[None, :]
    return neighbour_labels[np.arange(len(neighbour_labels)), np.argmax(score, axis=1)]


def knn_predict(
    train: np.ndarray,
    train_labels: Sequence,
    test: np.ndarray,
    ks: Sequence[int] = (1, 5),
    metric: str = "euclidean",
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> dict[int, np.ndarray]:
    """k-NN predictions of every test row for each k (see `vote` for ties).

    The k nearest are ordered by (distance, training index); when several training rows tie at
    the k-th distance, which of them make the cut is unspecified (but deterministic).
    """
    train_labels = np.asarray(train_labels)
    if len(train_labels) != len(train):
        raise ValueError(f"Got {len(train)} training rows but {len(train_labels)} labels.")
    if not ks or min(ks) < 1 or max(ks) > len(train):
        raise ValueError(f"Every k must be in [1, {len(train)}] (training rows). Received: ks={tuple(ks)}")
    k_max = max(ks)
    predictions: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    rows = chunk_rows(len(train), 24, max_memory)
    for _, _, distances in distance_chunks(test, train, metric, rows):
        if k_max < distances.shape[1]:
            nearest = np.argpartition(distances, k_max - 1, axis=1)[:, :k_max]
        else:
            nearest = np.broadcast_to(np.arange(distances.shape[1]), distances.shape).copy()
        near_d = np.take_along_axis(distances, nearest, axis=1)
        # Sort the k nearest by (distance, training index).
        order = np.lexsort((nearest, near_d), axis=1)
        nearest = np.take_along_axis(nearest, order, axis=1)
        labels = train_labels[nearest]
        for k in ks:
            predictions[k].append(vote(labels[:, :k]))
    return {k: np.concatenate(p) for k, p in predictions.items()}


def smooth_gallery(train: np.ndarray, train_labels: Sequence, k: int) -> np.ndarray:
    """Each labelled gallery row replaced by the mean of itself and its `k` nearest rows of the same
    label (Euclidean), rescaled to its own length: database-side augmentation that uses the labels,
    so a k-NN classifier meets the typical photo of a class, not an outlier. `k` 0 returns the rows
    unchanged; a class with fewer rows averages all of them.

    >>> smooth_gallery(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), ["a", "a", "b"], 1).astype(float).round(3).tolist()
    [[0.707, 0.707], [0.707, 0.707], [1.0, 0.0]]
    """
    train = np.asarray(train, dtype=np.float64)
    train_labels = np.asarray(train_labels)
    if len(train_labels) != len(train):
        raise ValueError(f"Got {len(train)} training rows but {len(train_labels)} labels.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be an integer >= 0. Received: k={k!r}")
    out = train.copy()
    if k == 0:
        return out.astype(np.float32)
    for label in np.unique(train_labels):
        rows = np.flatnonzero(train_labels == label)
        members = train[rows]
        squared = np.sum(members**2, axis=1)
        distances = squared[:, None] + squared[None, :] - 2.0 * members @ members.T
        np.fill_diagonal(distances, -np.inf)  # each row is its own first neighbour
        take = min(k + 1, len(rows))
        if take < len(rows):  # the take nearest (in no particular order: only their mean counts)
            nearest = np.argpartition(distances, take - 1, axis=1)[:, :take]
        else:
            nearest = np.broadcast_to(np.arange(len(rows)), distances.shape)
        means = members[nearest].mean(axis=1)
        lengths = np.linalg.norm(members, axis=1, keepdims=True)
        out[rows] = means * lengths / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


#: The values of K `choose_smoothing` tries by default (0 is no smoothing).
SMOOTHING_GRID = (0, 2, 4, 8, 16, 32, 64)


def held_out_mask(ids: Sequence[str], held_out: frozenset[str] | set[str]) -> np.ndarray:
    """Which of the training gallery's `ids` are the `held_out` photos (a boolean mask for
    `choose_smoothing`); an error unless every held-out photo is among them."""
    mask = np.array([i in held_out for i in ids], dtype=bool)
    if mask.sum() != len(held_out):
        raise ValueError(f"{int(mask.sum())} of the {len(held_out)} photos held out to choose the gallery smoothing on "
                         "are in the protocol's closed-set training split of this data: is it the data the run was "
                         "trained on?")
    return mask


def choose_smoothing(train: np.ndarray, train_labels: Sequence, held_out: np.ndarray, grid: Sequence[int] = SMOOTHING_GRID,
                     metric: str = "euclidean") -> tuple[int, list[dict]]:
    """The K of `smooth_gallery` chosen without the test photos: the `held_out` rows of the
    training gallery (a boolean mask; a run's validation photos) are classified by 1-NN against
    the other rows, smoothed with each K of `grid`; the best share right wins, a tie to the smaller K.

    Returns:
        (K, one `{"k", "validation_1nn"}` per K of `grid`, in its order).
    """
    train_labels, held_out = np.asarray(train_labels), np.asarray(held_out, dtype=bool)
    if held_out.shape != (len(train),) or len(train_labels) != len(train):
        raise ValueError(f"Got {len(train)} training rows, {len(train_labels)} labels and a held-out mask of "
                         f"shape {held_out.shape}.")
    if not held_out.any() or held_out.all():
        raise ValueError(f"K is chosen on held-out rows against the others: {int(held_out.sum())} of {len(train)} "
                         "rows are held out.")
    if not len(grid):
        raise ValueError("The grid of K values is empty.")
    gallery = ~held_out
    rows = [{"k": int(k), "validation_1nn": knn_accuracy(smooth_gallery(train[gallery], train_labels[gallery], k),
                                                         train_labels[gallery], train[held_out],
                                                         train_labels[held_out], ks=(1,), metric=metric)[1]}
            for k in grid]
    return max(rows, key=lambda row: (row["validation_1nn"], -row["k"]))["k"], rows


def confusions(labels: Sequence, predicted: Sequence, top: int = 10) -> list[dict]:
    """The `top` most frequent mistakes: `{"label", "predicted", "count"}` per (true label,
    predicted label) pair that differ, by count (ties by the two labels' names)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if labels.shape != predicted.shape:
        raise ValueError(f"Got {len(labels)} labels but {len(predicted)} predictions.")
    counts = Counter((str(a), str(b)) for a, b in zip(labels.tolist(), predicted.tolist()) if a != b)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [{"label": a, "predicted": b, "count": n} for (a, b), n in ranked]


def knn_accuracy(
    train: np.ndarray,
    train_labels: Sequence,
    test: np.ndarray,
    test_labels: Sequence,
    ks: Sequence[int] = (1, 5),
    metric: str = "euclidean",
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> dict[int, float]:
    """Share of test rows whose k-NN prediction is their label, for each k."""
    test_labels = np.asarray(test_labels)
    if len(test_labels) != len(test):
        raise ValueError(f"Got {len(test)} test rows but {len(test_labels)} labels.")
    predictions = knn_predict(train, train_labels, test, ks, metric, max_memory)
    return {k: float(np.mean(p == test_labels)) for k, p in predictions.items()}
