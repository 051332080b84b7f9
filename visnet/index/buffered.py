"""Indexes over a structure that is costly to change, kept current by a buffer and tombstones.

A ball tree or an HNSW graph is built over the rows that existed at the last build. Between
builds:

- rows added (or re-added by an update) since the build sit in a *buffer* searched exactly
  beside the structure;
- rows removed (or replaced by an update) stay in the structure as *tombstones*: the structure
  is asked for more than k neighbours and dead rows are dropped. If too many were dropped
  (or, for an exact structure, the last fetched neighbour ties with the k-th), the query
  fetches twice as many, and after a few doublings falls back to an exact scan, so a query
  always gets min(k, len) results;
- on the next search once the pending changes (buffered rows + tombstones) exceed
  `rebuild_fraction` of the index size, the structure is rebuilt (compacted, tombstones
  dropped, buffer folded in) — or, when the structure can grow in place (an HNSW graph, a
  trained IVF) and tombstones are under half that limit, the buffer is just added to it
  (`extensions`), so a stream of additions never waits for a full rebuild. `build()` rebuilds
  now. A rebuild runs inside the search that triggers it: minutes for a million-vector HNSW
  graph, so a service with many removals calls `build()` off-peak or raises the fraction.

Candidates from both sides are shortlisted on their preliminary scores and re-scored exactly
(`visnet.index.ranking`), so scores are exact cosine similarities and ties follow insertion
order. An exact structure (the ball tree) also fetches past any neighbour within
`SCORE_TOLERANCE` of the k-th, so its results equal an exhaustive search.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from visnet.index.base import VectorIndex
from visnet.index.ranking import SCORE_TOLERANCE, rerank, shortlist

# Doublings of the fetch size before a query falls back to an exact scan.
MAX_DOUBLINGS = 4


class BufferedIndex(VectorIndex):
    """Base class of indexes with a rebuildable search structure (see the module docstring).

    Subclasses implement `_build_structure(vectors)` and `_query_structure(queries, m)`.

    Args:
        dim: int or None. Vector dimension; None takes it from the first add.
        rebuild_fraction: float. Rebuild on the next search once pending changes exceed this
            fraction of the index size.
    """

    def __init__(self, dim: int | None = None, rebuild_fraction: float = 0.1):
        super().__init__(dim)
        if isinstance(rebuild_fraction, bool) or not isinstance(rebuild_fraction, (int, float)) or not (
                rebuild_fraction > 0):
            raise ValueError(f"rebuild_fraction must be > 0. Received: rebuild_fraction={rebuild_fraction!r}")
        self.rebuild_fraction = float(rebuild_fraction)
        self._structure: Any = None
        self._built = 0  # rows [0, _built) are in the structure
        self._stale = 0  # tombstones among them
        self.builds = 0  # how many times the structure was built
        self.extensions = 0  # how many times the buffer was added to the structure in place

    @property
    def pending(self) -> int:
        """Changes not in the structure yet: rows in the buffer plus tombstones in the structure."""
        return 0 if self._rows is None else (self._rows.size - self._built) + self._stale

    def _removed(self, rows: np.ndarray) -> None:
        self._stale += int(np.count_nonzero(rows < self._built))

    def build(self) -> None:
        """Rebuilds the structure now if anything changed since the last build."""
        if self.pending:
            self._rebuild()

    def _rebuild(self) -> None:
        self._rows.compact()
        self._structure = None
        if self._rows.size:
            self._structure = self._build_structure(self._rows.vectors[: self._rows.size])
        self._built, self._stale = self._rows.size, 0
        self.builds += 1

    def _maybe_rebuild(self) -> None:
        limit = self.rebuild_fraction * max(len(self), 1)
        if self.pending <= limit:
            return
        size = self._rows.size
        if (self._structure is not None and self._stale <= limit / 2
                and self._extend_structure(self._rows.vectors[self._built : size])):
            # Dead rows of the buffer were added too (row numbers stay aligned): now tombstones.
            self._stale += int(np.count_nonzero(~self._rows.alive[self._built : size]))
            self._built = size
            self.extensions += 1
        else:
            self._rebuild()

    def _extend_structure(self, vectors: np.ndarray) -> bool:
        """Adds rows built..size-1 to the structure in place if it can; False: rebuild instead."""
        return False

    @abc.abstractmethod
    def _build_structure(self, vectors: np.ndarray) -> Any:
        """Builds the structure over `vectors` (rows 0..n-1, L2-normalised)."""

    @abc.abstractmethod
    def _query_structure(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, approximate cosine scores), each (n, m), best first; row -1 where none was found."""

    def _fetch_size(self, k: int) -> int:
        """First fetch from the structure: enough for k live rows at the current tombstone rate."""
        live = self._built - self._stale
        m = k + (1 if self.exact else 0)  # one more, to see whether the k-th has a tie
        if self._stale:
            m = int(np.ceil(m * self._built / max(live, 1) * 1.25)) + 1
        return min(m, self._built)

    def _scores_per_query(self, k: int) -> int:
        return (self._rows.size - self._built) + self._fetch_size(k) if self._structure is not None else (
            self._rows.size)

    def _candidates(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Per query, live structure rows that hold its best k there, with preliminary scores.

        None marks a query the structure could not serve (an exact scan answers it).
        """
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
        live = self._built - self._stale
        if self._structure is None or live == 0:
            return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in out]
        need = min(k, live)
        alive = self._rows.alive
        todo, m = np.arange(len(queries)), self._fetch_size(k)
        for _ in range(MAX_DOUBLINGS + 1):
            rows, approx = self._query_structure(queries[todo], m)
            again = []
            for query, found, scores in zip(todo.tolist(), rows, approx):
                valid = found >= 0
                found, scores = found[valid], scores[valid]
                kept = alive[found]
                rows_live, scores_live = found[kept], scores[kept]
                if m < self._built and (
                        len(rows_live) < need
                        or (self.exact and scores[-1] >= scores_live[need - 1] - SCORE_TOLERANCE)):
                    again.append(query)  # too many tombstones, or a (near) tie at the k-th
                elif len(rows_live) >= need:
                    out[query] = (rows_live, scores_live)
                # else: too few live rows even when asked for all of them: left to a scan.
            if not again or m >= self._built:
                break
            todo, m = np.array(again), min(2 * m, self._built)
        return out

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._maybe_rebuild()
        candidates = self._candidates(queries, k)
        scan = [i for i, c in enumerate(candidates) if c is None]
        ranked = [i for i, c in enumerate(candidates) if c is not None]
        rows = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        if ranked:
            # Structure candidates (with the structure's scores) beside the buffer (scored here).
            buffer = self._rows.live_rows(self._built)
            width = max(len(candidates[i][0]) for i in ranked)
            found = np.full((len(ranked), width), -1, np.int64)
            first = np.full((len(ranked), width), -np.inf, np.float32)
            for j, i in enumerate(ranked):
                found[j, : len(candidates[i][0])], first[j, : len(candidates[i][0])] = candidates[i]
            q = queries[ranked]
            found = np.concatenate([found, np.broadcast_to(buffer, (len(ranked), len(buffer)))], axis=1)
            first = np.concatenate([first, q @ self._rows.vectors[buffer].T], axis=1)
            short = shortlist(first, k, SCORE_TOLERANCE)
            short = np.where(short >= 0, np.take_along_axis(found, np.maximum(short, 0), axis=1), -1)
            rows[ranked], scores[ranked] = rerank(self._rows.vectors, self._rows.order, q, short, k)
        if scan:
            rows[scan], scores[scan] = self._exact_search(queries[scan], k)
        return rows, scores

    # -- persistence ---------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rebuild_fraction": self.rebuild_fraction}

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "built": self._built, "stale": self._stale}

    def _read_structure(self, data_dir: str, state: dict[str, Any]) -> None:
        built, stale = state.get("built"), state.get("stale")
        size = 0 if self._rows is None else self._rows.size
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (built, stale)) or not 0 <= stale <= built <= size:
            from visnet.index.storage import IndexFileError

            raise IndexFileError(
                f"The manifest of {data_dir} has built={built!r}, stale={stale!r}; expected integers with "
                f"0 <= stale <= built <= {size} (the saved rows)."
            )
        self._built, self._stale = built, stale
        if self._built:
            self._structure = self._load_structure(data_dir)

    def _load_structure(self, data_dir: str) -> Any:
        """Default: build the structure again over rows [0, built), as it was when saved."""
        return self._build_structure(self._rows.vectors[: self._built])
