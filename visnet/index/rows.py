"""The row store every index keeps: normalised vectors, their ids, insertion order, tombstones.

Rows are appended and never moved until `compact()`; a removed or replaced vector leaves a
dead row (a tombstone) behind, so structures built over row numbers (a ball tree, an HNSW
graph) stay valid between rebuilds. Each row carries the insertion number of its id
(`order`), kept when the id's vector is replaced; it breaks ties between equal scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class RowStore:
    """Growable (rows, dim) float32 matrix with an id, an insertion number and a liveness flag per row.

    Args:
        dim: int. Width of every vector.
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.vectors = np.empty((0, dim), np.float32)
        self.ids = np.empty(0, object)  # None on dead rows
        self.order = np.empty(0, np.int64)
        self.alive = np.empty(0, bool)
        self.size = 0  # rows in use, dead ones included
        self.dead = 0
        self.row_of: dict[str, int] = {}  # live rows only

    def __len__(self) -> int:
        return len(self.row_of)

    def _reserve(self, extra: int) -> None:
        needed = self.size + extra
        if needed <= len(self.vectors):
            return
        capacity = max(needed, 2 * len(self.vectors), 64)
        vectors = np.empty((capacity, self.dim), np.float32)
        vectors[: self.size] = self.vectors[: self.size]
        ids = np.empty(capacity, object)
        ids[: self.size] = self.ids[: self.size]
        order = np.zeros(capacity, np.int64)
        order[: self.size] = self.order[: self.size]
        alive = np.zeros(capacity, bool)
        alive[: self.size] = self.alive[: self.size]
        self.vectors, self.ids, self.order, self.alive = vectors, ids, order, alive

    def append(self, ids: Sequence[str], vectors: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Appends live rows; returns their row numbers. Ids must not be live already."""
        self._reserve(len(ids))
        rows = np.arange(self.size, self.size + len(ids))
        self.vectors[rows] = vectors
        self.ids[rows] = list(ids)
        self.order[rows] = order
        self.alive[rows] = True
        self.row_of.update(zip(ids, rows.tolist()))
        self.size += len(ids)
        return rows

    def kill(self, rows: np.ndarray) -> None:
        """Turns live rows into tombstones."""
        for row in rows.tolist():
            del self.row_of[self.ids[row]]
        self.ids[rows] = None
        self.alive[rows] = False
        self.dead += len(rows)

    def live_rows(self, start: int = 0) -> np.ndarray:
        """Row numbers of the live rows at or after `start`."""
        return start + np.flatnonzero(self.alive[start : self.size])

    def ids_in_order(self) -> list[str]:
        rows = self.live_rows()
        return self.ids[rows[np.argsort(self.order[rows], kind="stable")]].tolist()

    def compact(self) -> None:
        """Drops the dead rows and sorts the live ones by insertion order."""
        rows = self.live_rows()
        rows = rows[np.argsort(self.order[rows], kind="stable")]
        self.vectors = np.ascontiguousarray(self.vectors[rows])
        self.ids = self.ids[rows]
        self.order = self.order[rows]
        self.alive = np.ones(len(rows), bool)
        self.size, self.dead = len(rows), 0
        self.row_of = dict(zip(self.ids.tolist(), range(len(rows))))

    def arrays(self) -> dict[str, np.ndarray]:
        """The rows in use as plain arrays (ids as unicode, "" on dead rows), for saving."""
        ids = self.ids[: self.size]
        names = ["" if i is None else i for i in ids.tolist()]
        return {
            "vectors": self.vectors[: self.size],
            "ids": np.array(names, dtype=str) if names else np.empty(0, "<U1"),
            "order": self.order[: self.size],
        }

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, ids: np.ndarray, order: np.ndarray) -> RowStore:
        """The inverse of `arrays()`."""
        store = cls(vectors.shape[1])
        store.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        store.ids = np.array([i if i else None for i in ids.tolist()], dtype=object)
        store.order = order.astype(np.int64)
        store.alive = ids != ""
        store.size = len(vectors)
        store.dead = int(store.size - store.alive.sum())
        live = np.flatnonzero(store.alive)
        store.row_of = dict(zip(store.ids[live].tolist(), live.tolist()))
        return store
