"""Exact search by brute force: one BLAS matrix product per chunk of queries, then top-k."""

from __future__ import annotations

import numpy as np

from visnet.index.base import VectorIndex


class BruteForceIndex(VectorIndex):
    """Exhaustive cosine search; the reference every other index is measured against.

    Each chunk of queries is scored against every stored vector with one matrix product and
    the best `k` are picked with `argpartition` (O(n) per query) before sorting them. Updates
    overwrite the vector in place; removals leave tombstones, masked out of every search and
    compacted away once they are a quarter of the rows.

    Args:
        dim: int or None. Vector dimension; None takes it from the first add.

    Example:

    >>> index = BruteForceIndex()
    >>> index.add_batch(["a", "b"], np.eye(2))
    >>> index.search([1.0, 0.0], k=5)
    [('a', 1.0), ('b', 0.0)]
    """

    name = "brute"
    exact = True

    def _replace(self, ids: list[str], vectors: np.ndarray) -> None:
        self._rows.vectors[[self._rows.row_of[id] for id in ids]] = vectors

    def _removed(self, rows: np.ndarray) -> None:
        if self._rows.dead > self._rows.size // 4:
            self._rows.compact()

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._exact_search(queries, k)
