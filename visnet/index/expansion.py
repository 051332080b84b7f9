"""Query expansion and database-side augmentation: re-ranking that uses the gallery's own structure.

A query's nearest catalogue photos are usually right; their vectors say more about what the
query's neighbourhood looks like than the query alone. Two classic, training-free steps use that
(Arandjelović & Zisserman 2012, Gordo et al. 2017, Radenović et al. 2019):

- **DBA** (database-side augmentation): every gallery vector is replaced by the weighted mean of
  its `k` nearest gallery vectors, itself included, and re-normalised. Done once per gallery.
- **alpha-QE** (query expansion): the query is replaced by itself plus the weighted sum of its
  `k` nearest gallery vectors, re-normalised, and searched again.

Weights are `max(cos, 0) ** alpha` (alpha 0: a plain mean). Vectors are unit length and
scores cosines, as everywhere in visnet. Measured on the fashion benchmark's novel classes in the
README ("Re-ranking"), with `k` and `alpha` chosen on the validation classes.

    expansion = Expansion.parse("qe=2,dba=3,alpha=3")
    queries, gallery = expansion.apply(queries, gallery)   # then rank gallery by queries @ gallery.T
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Rows of queries scored against the gallery at once (bounds the (rows, gallery) score block).
_BLOCK = 1024


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _check(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of vectors. Received shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds values that are not finite.")
    return x


def weighted_sum(neighbours: np.ndarray, scores: np.ndarray, alpha: float) -> np.ndarray:
    """(n, d): each row's neighbour vectors (n, k, d) summed with weights max(cos, 0) ** alpha (n, k)."""
    weights = np.maximum(np.asarray(scores, np.float32), 0.0) ** alpha
    return np.einsum("nk,nkd->nd", weights, np.asarray(neighbours, np.float32))


def expand_queries(queries: np.ndarray, neighbours: np.ndarray, scores: np.ndarray, alpha: float) -> np.ndarray:
    """alpha-QE from neighbours already found (e.g. by an index search): each query (n, d) plus
    its neighbours (n, k, d) weighted by their cosines (n, k), re-normalised."""
    queries = np.asarray(queries, np.float32)
    if not np.size(neighbours):
        return queries
    return _unit(queries + weighted_sum(neighbours, scores, alpha)).astype(np.float32)


def _neighbour_sum(queries: np.ndarray, gallery: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """For each query, the sum of its `k` nearest gallery vectors weighted by max(cos, 0) ** alpha.

    Nearest by cosine, ties to the earlier gallery row (a stable sort), so results are deterministic."""
    k = min(k, len(gallery))
    out = np.zeros_like(queries)
    for start in range(0, len(queries), _BLOCK):
        scores = queries[start:start + _BLOCK] @ gallery.T
        nearest = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out[start:start + _BLOCK] = weighted_sum(gallery[nearest], np.take_along_axis(scores, nearest, axis=1), alpha)
    return out


def database_augmentation(gallery: np.ndarray, k: int, alpha: float = 0.0) -> np.ndarray:
    """DBA: each gallery vector replaced by the weighted mean of its `k` nearest (itself included).

    Args:
        gallery: (n, d) unit vectors.
        k: int >= 1. Neighbours averaged, the vector itself counted (k=1 changes nothing).
        alpha: float >= 0. Weight exponent of the cosines.

    Returns:
        (n, d) float32 unit vectors.
    """
    gallery = _check("gallery", gallery)
    _check_settings(k, alpha, "k", minimum=1)
    if not len(gallery):
        return gallery
    return _unit(_neighbour_sum(gallery, gallery, k, alpha)).astype(np.float32)


def query_expansion(queries: np.ndarray, gallery: np.ndarray, k: int, alpha: float = 0.0) -> np.ndarray:
    """alpha-QE: each query plus its `k` nearest gallery vectors, weighted, re-normalised.

    Args:
        queries: (m, d) unit vectors.
        gallery: (n, d) unit vectors (the DBA gallery when DBA is used).
        k: int >= 1. Gallery neighbours added to each query.
        alpha: float >= 0. Weight exponent of the cosines (the query itself has weight 1).

    Returns:
        (m, d) float32 unit vectors.
    """
    queries, gallery = _check("queries", queries), _check("gallery", gallery)
    _check_settings(k, alpha, "k", minimum=1)
    if queries.shape[1:] != gallery.shape[1:]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions but the gallery {gallery.shape[1]}.")
    if not len(gallery) or not len(queries):
        return queries
    return _unit(queries + _neighbour_sum(queries, gallery, k, alpha)).astype(np.float32)


def _check_settings(k, alpha, name: str, minimum: int = 0) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={k!r}")
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0. Received: alpha={alpha!r}")


@dataclasses.dataclass(frozen=True)
class Expansion:
    """Re-ranking settings: `qe` gallery neighbours added to each query (0: no query expansion),
    `dba` neighbours averaged into each gallery vector (0 or 1: no augmentation), weights
    max(cos, 0) ** `alpha`."""

    qe: int = 0
    dba: int = 0
    alpha: float = 0.0

    def __post_init__(self):
        _check_settings(self.qe, self.alpha, "qe")
        _check_settings(self.dba, self.alpha, "dba")

    @property
    def active(self) -> bool:
        return self.qe > 0 or self.dba > 1

    @classmethod
    def parse(cls, text: str) -> Expansion:
        """`qe=2,dba=3,alpha=3` (any subset, any order) or `none`."""
        if text.strip().lower() == "none":
            return cls()
        values: dict = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in ("qe", "dba", "alpha"):
                raise ValueError(f"Re-ranking settings are qe=K, dba=K and alpha=A, comma-separated (or none). "
                                 f"Received: {text!r}")
            if key in values:
                raise ValueError(f"{key} is given twice in {text!r}.")
            try:
                values[key] = float(value) if key == "alpha" else int(value)
            except ValueError:
                raise ValueError(f"{key} must be {'a number' if key == 'alpha' else 'an integer'}. "
                                 f"Received: {key}={value.strip()!r}") from None
        return cls(**values)

    def __str__(self) -> str:
        return f"qe={self.qe},dba={self.dba},alpha={self.alpha:g}" if self.active else "none"

    def apply(self, queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(expanded queries, augmented gallery), both unit length (inputs are normalised first):
        rank the second by cosine with the first. Inactive settings return the inputs as they are."""
        if not self.active:
            return queries, gallery
        queries, gallery = _unit(_check("queries", queries)), _unit(_check("gallery", gallery))
        if self.dba > 1:
            gallery = database_augmentation(gallery, self.dba, self.alpha)
        if self.qe > 0:
            queries = query_expansion(queries, gallery, self.qe, self.alpha)
        return queries, gallery
