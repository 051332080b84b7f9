"""Exact search with scikit-learn's `BallTree`, kept current between rebuilds (see `buffered`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from visnet.index.base import _check_positive_int
from visnet.index.buffered import BufferedIndex


class BallTreeIndex(BufferedIndex):
    """Exact cosine search through a ball tree over the normalised vectors.

    On unit vectors the euclidean distance d and the cosine similarity s are tied by
    s = 1 - d^2 / 2, so the tree's nearest neighbours are the most similar vectors. Changes go
    to a buffer and tombstones and the tree is rebuilt lazily (`visnet.index.buffered`);
    results always equal an exhaustive search. Ball trees help in low dimensions; for
    128-d embeddings and large catalogues prefer `faiss` (HNSW). The tree holds a float64 copy
    of the vectors and is built again on load (it has no pickle-free file format).

    Args:
        dim: int or None. Vector dimension; None takes it from the first add.
        leaf_size: int. Points per leaf of the tree (scikit-learn's `leaf_size`).
        rebuild_fraction: float. Rebuild on the next search once pending changes exceed this
            fraction of the index size.

    Example:

    >>> index = BallTreeIndex(leaf_size=16)
    >>> index.add_batch(["a", "b"], np.eye(2))
    >>> index.search([1.0, 0.2], k=1)
    [('a', 0.98058...)]
    """

    name = "balltree"
    exact = True

    def __init__(self, dim: int | None = None, leaf_size: int = 40, rebuild_fraction: float = 0.1):
        super().__init__(dim, rebuild_fraction)
        self.leaf_size = _check_positive_int("leaf_size", leaf_size)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "leaf_size": self.leaf_size}

    def _build_structure(self, vectors: np.ndarray) -> Any:
        from sklearn.neighbors import BallTree

        return BallTree(vectors, leaf_size=self.leaf_size, metric="euclidean")

    def _query_structure(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        distances, rows = self._structure.query(queries, k=m, return_distance=True, sort_results=True)
        return rows.astype(np.int64, copy=False), 1.0 - distances**2 / 2.0
