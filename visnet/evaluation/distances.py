"""Pairwise distances, computed in row chunks so that big query x gallery products fit in memory."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

METRICS = ("euclidean", "sqeuclidean", "cosine")
#: Default memory budget of one chunk of a chunked computation (bytes).
DEFAULT_MAX_MEMORY = 512 * 2**20


def _check(a: np.ndarray, b: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}. Received: metric={metric!r}")
    a, b = np.asarray(a), np.asarray(b)
    # float32 embeddings stay float32 (a 100k x 2048 gallery is 0.8 GB, not 1.6); anything
    # else is computed in float64.
    dtype = np.float32 if a.dtype == np.float32 and b.dtype == np.float32 else np.float64
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"Expected two 2-D arrays with the same width. Received shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("Embeddings contain NaN or infinite values.")
    return a, b


def _prepare(b: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        norms = np.linalg.norm(b, axis=1, keepdims=True)
        return b / np.maximum(norms, 1e-12)
    return b


def _block(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        return 1.0 - a @ b.T
    d = np.einsum("ij,ij->i", a, a)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    np.maximum(d, 0.0, out=d)
    return np.sqrt(d, out=d) if metric == "euclidean" else d


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Distances between every row of `a` and every row of `b`, shape (len(a), len(b)).

    Computed in float32 when both inputs are float32, else in float64.
    """
    a, b = _check(a, b, metric)
    b = _prepare(b, metric)
    return _block(a, b, np.einsum("ij,ij->i", b, b), metric)


def chunk_rows(n_columns: int, bytes_per_cell: int, max_memory: int = DEFAULT_MAX_MEMORY) -> int:
    """How many query rows fit in `max_memory` when each row costs `n_columns * bytes_per_cell`."""
    if max_memory <= 0:
        raise ValueError(f"max_memory must be > 0. Received: max_memory={max_memory}")
    return max(1, int(max_memory // max(1, n_columns * bytes_per_cell)))


def distance_chunks(
    a: np.ndarray, b: np.ndarray, metric: str = "euclidean", rows: int | None = None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yields (start, stop, distances of a[start:stop] to all of b), `rows` rows at a time."""
    a, b = _check(a, b, metric)
    b = _prepare(b, metric)
    b_sq = np.einsum("ij,ij->i", b, b)
    rows = rows or len(a)
    for start in range(0, len(a), rows):
        stop = min(start + rows, len(a))
        yield start, stop, _block(a[start:stop], b, b_sq, metric)
