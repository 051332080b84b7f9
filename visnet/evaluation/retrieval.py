"""Retrieval quality: mean average precision (as the Navee report defines it) and Recall@K.

For a query q and a gallery ranked by distance to q, the average precision of "same label" is

    AP(q) = sum_n (R_n - R_{n-1}) P_n

over the distinct distance thresholds n (precision P_n and recall R_n of the gallery items at
distance <= the n-th threshold). Tied distances form one threshold, exactly as
`sklearn.metrics.average_precision_score(relevant, -distance)` computes it. mAP is the mean over
queries. Recall@K (the DeepFashion In-Shop "top-K retrieval accuracy") is the share of queries
with at least one same-label item among their K nearest gallery items; ties at the K-th distance
are broken by gallery order.

Queries with no same-label item in the gallery have no AP and cannot score a hit: they are left
out of both means and counted in `RetrievalResult.queries_without_positive`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from visnet.evaluation.distances import DEFAULT_MAX_MEMORY, chunk_rows, distance_chunks

RECALL_KS = (1, 5, 10, 20, 30, 40, 50)
# Bytes held per (query, gallery) cell while a chunk is ranked: distances, order, sorted
# distances, relevance, cumulative hits, tie-group ends and precisions.
_BYTES_PER_CELL = 72


@dataclasses.dataclass(frozen=True)
class RetrievalResult:
    mean_average_precision: float
    recall: dict[int, float]
    average_precisions: np.ndarray  # per query; NaN where the query had no positive
    queries: int
    queries_without_positive: int

    def to_dict(self) -> dict:
        return {
            "mAP": self.mean_average_precision,
            "recall": {str(k): v for k, v in self.recall.items()},
            "queries": self.queries,
            "queries_without_positive": self.queries_without_positive,
        }


def _as_labels(labels: Sequence, n: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have one label per row ({n}). Received shape {labels.shape}")
    return labels


def _rank_chunk(distances: np.ndarray, relevant: np.ndarray, ks: Sequence[int]):
    """AP and first-hit rank of each row of a chunk."""
    order = np.argsort(distances, axis=1, kind="stable")
    ranked = np.take_along_axis(distances, order, axis=1)
    hits = np.take_along_axis(relevant, order, axis=1)
    del order
    n = ranked.shape[1]
    cumulative = np.cumsum(hits, axis=1, dtype=np.int64)
    positives = cumulative[:, -1].copy()  # a copy: a view would keep the whole chunk alive
    # Each position's tie group ends where the next distance differs.
    is_end = np.ones_like(hits)
    np.not_equal(ranked[:, 1:], ranked[:, :-1], out=is_end[:, :-1])
    del ranked
    positions = np.arange(n)
    group_end = np.where(is_end, positions, n)
    del is_end
    group_end = np.minimum.accumulate(group_end[:, ::-1], axis=1)[:, ::-1]
    precision = np.take_along_axis(cumulative, group_end, axis=1) / (group_end + 1.0)
    del group_end, cumulative
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(hits, precision, 0.0).sum(axis=1) / positives
    first_hit = np.where(positives > 0, np.argmax(hits, axis=1), n)
    return ap, first_hit, positives


def retrieval_metrics(
    query: np.ndarray,
    query_labels: Sequence,
    gallery: np.ndarray,
    gallery_labels: Sequence,
    ks: Sequence[int] = RECALL_KS,
    metric: str = "euclidean",
    exclude_self: bool = False,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> RetrievalResult:
    """mAP and Recall@K of `query` embeddings against `gallery` embeddings.

    Args:
        query, gallery: arrays of shape (n, d) and (m, d).
        query_labels, gallery_labels: one label per row.
        ks: Recall@K cut-offs; those larger than the gallery are left out.
        metric: str. `euclidean` (the report's), `sqeuclidean` or `cosine`.
        exclude_self: bool. The query set is the gallery (same rows, same order): each query's
            own row is removed from its ranking (leave-one-out).
        max_memory: int. Bytes a chunk of queries may use; 100k x 100k needs about this much
            plus the embeddings themselves.

    Example:

    >>> r = retrieval_metrics([[0.0]], ["b"], [[1.0], [2.0], [9.0]], ["a", "b", "b"], ks=(1, 2))
    >>> round(r.mean_average_precision, 4), r.recall  # AP = (1/2 + 2/3) / 2
    (0.5833, {1: 0.0, 2: 1.0})
    """
    query = np.asarray(query)
    gallery = np.asarray(gallery)
    query_labels = _as_labels(query_labels, len(query), "query_labels")
    gallery_labels = _as_labels(gallery_labels, len(gallery), "gallery_labels")
    if len(query) == 0 or len(gallery) == 0:
        raise ValueError(f"Need at least one query and one gallery item. Received {len(query)} and {len(gallery)}.")
    if exclude_self and len(query) != len(gallery):
        raise ValueError("exclude_self=True needs the query set to be the gallery (same length).")
    if any(k < 1 for k in ks):
        raise ValueError(f"Every K must be >= 1. Received: ks={tuple(ks)}")
    usable = len(gallery) - (1 if exclude_self else 0)
    ks = sorted({int(k) for k in ks if k <= usable})
    rows = chunk_rows(len(gallery), _BYTES_PER_CELL, max_memory)
    aps, first_hits, positives = [], [], []
    for start, stop, distances in distance_chunks(query, gallery, metric, rows):
        relevant = query_labels[start:stop, None] == gallery_labels[None, :]
        if exclude_self:
            own = np.arange(start, stop)
            distances[own - start, own] = np.inf
            relevant[own - start, own] = False
        ap, first_hit, pos = _rank_chunk(distances, relevant, ks)
        aps.append(ap)
        first_hits.append(first_hit)
        positives.append(pos)
    ap = np.concatenate(aps)
    first_hit = np.concatenate(first_hits)
    has_positive = np.concatenate(positives) > 0
    n_valid = int(has_positive.sum())
    if n_valid == 0:
        raise ValueError("No query has a same-label item in the gallery: mAP and Recall@K are undefined.")
    recall = {k: float((first_hit[has_positive] < k).mean()) for k in ks}
    return RetrievalResult(
        mean_average_precision=float(np.mean(ap[has_positive])),
        recall=recall,
        average_precisions=np.where(has_positive, ap, np.nan),
        queries=len(query),
        queries_without_positive=len(query) - n_valid,
    )


def pair_distances(query: np.ndarray, query_labels: Sequence, gallery: np.ndarray, gallery_labels: Sequence,
                   metric: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Distances of every (query, gallery) pair, split into same-class and different-class pairs."""
    from visnet.evaluation.distances import pairwise_distances

    query_labels = _as_labels(query_labels, len(query), "query_labels")
    gallery_labels = _as_labels(gallery_labels, len(gallery), "gallery_labels")
    distances = pairwise_distances(query, gallery, metric)
    same = query_labels[:, None] == gallery_labels[None, :]
    return distances[same], distances[~same]


def precision_recall_points(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(precision, recall, average precision) of ranking every pair by distance: a pair is a hit when
    both images share a class (the retrieval precision-recall curve, pooled over queries)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    truth = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    score = -np.concatenate([positive, negative])
    precision, recall, _ = precision_recall_curve(truth, score)
    return precision, recall, float(average_precision_score(truth, score))
