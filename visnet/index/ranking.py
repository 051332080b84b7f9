"""Top-k selection with deterministic ties: best score first, equal scores in insertion order.

Searches run in two steps: fast float32 preliminary scores pick a `shortlist` (the k best and
anything within `SCORE_TOLERANCE` of the k-th), then `rerank` scores those exactly in float64
and keeps the k best, ties broken by insertion order.
"""

from __future__ import annotations

import numpy as np

# Margin for the float32 arithmetic of preliminary scores (BLAS products, a tree's distances,
# faiss): candidates this close to the k-th best are re-scored exactly before the final cut.
# Generous: float32 dot products of unit vectors err by about 1e-7 * sqrt(dim).
SCORE_TOLERANCE = 1e-4


def top_k(scores: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the `k` best scores of each row, best first.

    Equal scores are ranked by `order` (smaller first), also at the k-th place: when more
    columns tie with the k-th best score than there are places left, the ones with the
    smallest `order` are kept. Excluded columns carry a score of `-inf`; callers ask for at
    most as many columns per row as have a finite score.

    Args:
        scores: np.ndarray. (n, m) scores, higher is better.
        order: np.ndarray. Tie-break key of each column, (m,) shared by all rows or (n, m).
        k: int. How many columns to keep, clipped to m.

    Returns:
        np.ndarray. (n, min(k, m)) int64 column indices.

    Example:

    >>> top_k(np.array([[0.1, 0.9, 0.9, 0.5]]), np.array([3, 2, 1, 0]), 2).tolist()
    [[2, 1]]
    """
    n, m = scores.shape
    order = np.broadcast_to(order, (n, m))
    k = min(k, m)
    if k == 0:
        return np.empty((n, 0), np.int64)
    if k < m:
        chosen = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, chosen, axis=1).min(axis=1)
        # argpartition picks arbitrary members of a tie at the k-th place; redo those rows.
        crowded = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
        for row in crowded:
            columns = np.flatnonzero(scores[row] >= kth[row])
            ranked = np.lexsort((order[row, columns], -scores[row, columns]))
            chosen[row] = columns[ranked[:k]]
    else:
        chosen = np.broadcast_to(np.arange(m), (n, m))
    ranked = np.lexsort(
        (np.take_along_axis(order, chosen, axis=1), -np.take_along_axis(scores, chosen, axis=1)), axis=-1
    )
    return np.take_along_axis(chosen, ranked, axis=1).astype(np.int64, copy=False)


def shortlist(scores: np.ndarray, k: int, tolerance: float) -> np.ndarray:
    """Columns of each row whose score is within `tolerance` of the row's k-th best, -1 padded.

    With float32 scores that are each within tolerance / 2 of the exact ones, the exact top k
    (and everything tied with its k-th) is in the shortlist; `rerank` then orders it exactly.
    Columns scored `-inf` are never listed.

    Args:
        scores: np.ndarray. (n, m) preliminary scores; at least `k` finite per row.
        k: int. How many results will be kept.
        tolerance: float. Margin below the k-th best score.

    Returns:
        np.ndarray. (n, L) int64 column indices, -1 after each row's last.
    """
    n, m = scores.shape
    if m == 0:
        return np.empty((n, 0), np.int64)
    k = min(k, m)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    mask = (scores >= (kth - tolerance)[:, None]) & (scores > -np.inf)
    counts = mask.sum(axis=1)
    rows, columns = np.nonzero(mask)
    out = np.full((n, int(counts.max(initial=0))), -1, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out[rows, np.arange(len(columns)) - np.repeat(starts, counts)] = columns
    return out


def rerank(vectors: np.ndarray, order: np.ndarray, queries: np.ndarray, rows: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of candidate rows: float64 dot products, ties by insertion order.

    Every index ranks its final candidates here, so scores are the same whichever index
    found them, and equal vectors get bit-equal scores (BLAS float32 products may differ in
    the last bit with a row's position, which would break ties arbitrarily).

    Args:
        vectors: np.ndarray. (rows, dim) stored vectors.
        order: np.ndarray. (rows,) insertion number of each stored row.
        queries: np.ndarray. (n, dim) normalised queries.
        rows: np.ndarray. (n, L) candidate row numbers, -1 for none; at least k per query.
        k: int. Results per query.

    Returns:
        (rows, scores): (n, k) int64 row numbers and float32 cosine similarities, best first.
    """
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    scores = np.einsum("nld,nd->nl", vectors[safe].astype(np.float64), queries.astype(np.float64))
    scores[~valid] = -np.inf
    chosen = top_k(scores, order[safe], k)
    return np.take_along_axis(rows, chosen, axis=1), np.take_along_axis(scores, chosen, axis=1).astype(np.float32)
