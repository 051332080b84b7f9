"""Approximate search with faiss (an optional extra): HNSW graphs or IVF inverted lists.

`import visnet.index` works without faiss; building a `FaissIndex` without it raises an
ImportError that says `pip install visnet[faiss]`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from visnet.index.base import _check_positive_int
from visnet.index.buffered import BufferedIndex

KINDS = ("hnsw", "ivf")
STRUCTURE_FILE = "faiss.index"
# faiss's k-means wants at least this many training vectors per list.
MIN_POINTS_PER_LIST = 39


def import_faiss() -> Any:
    """The faiss module, or an ImportError that says how to install it."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "The 'faiss' index needs the faiss library, an optional extra: pip install visnet[faiss] "
            "(or pip install faiss-cpu)."
        ) from error
    return faiss


class FaissIndex(BufferedIndex):
    """Approximate cosine search (inner product on normalised vectors) with faiss.

    Kinds:

    - `hnsw`: a hierarchical navigable small-world graph (`IndexHNSWFlat`), options `M`
      (links per node), `ef_construction` and `ef_search` (candidate list sizes when building
      and searching: larger is slower and more accurate).
    - `ivf`: inverted lists over k-means cells (`IndexIVFFlat`), options `nlist` (cells; None
      picks about 4 sqrt(n)) and `nprobe` (cells visited per query). Trained on every build.
      Too few vectors to train: a build uses at most n / 39 cells (faiss's k-means minimum of
      39 points per cell), and an exact flat index below 78 vectors; `structure` says which.

    Neither removes in place: removals and updates are tombstones and buffered rows
    (`visnet.index.buffered`). Buffered additions are added to the graph (or to a trained IVF
    until it has doubled) without a rebuild; tombstones are dropped by a lazy rebuild. Results
    are re-scored exactly. The default HNSW settings (M=32, ef_construction=100,
    ef_search=96) aim at 1M 128-d vectors in under 2 ms per query on one thread with
    recall@10 >= 0.95 on clustered data: on the mixture of `benchmarks/index_search.py` with
    1000 vectors per centre they gave recall@10 0.998 at 300k vectors in 0.4 ms (0.994 with
    ef_search=64). Saved with `faiss.write_index` (no pickle) beside the vectors.

    Args:
        dim: int or None. Vector dimension; None takes it from the first add.
        kind: str. "hnsw" or "ivf".
        M: int. HNSW links per node.
        ef_construction: int. HNSW build-time candidate list size.
        ef_search: int. HNSW search-time candidate list size (at least k is used).
        nlist: int or None. IVF cells (fewer while there are under 39 vectors per cell); None
            chooses about 4 sqrt(n) at each build.
        nprobe: int. IVF cells visited per query.
        rebuild_fraction: float. Rebuild on the next search once pending changes exceed this
            fraction of the index size.

    Example:

    >>> index = FaissIndex(kind="hnsw", M=16)
    >>> index.add_batch(["a", "b"], np.eye(2))
    >>> index.search([1.0, 0.0], k=1)
    [('a', 1.0)]
    """

    name = "faiss"
    exact = False
    structure_files = (STRUCTURE_FILE,)

    def __init__(self, dim: int | None = None, kind: str = "hnsw", M: int = 32, ef_construction: int = 100,
                 ef_search: int = 96, nlist: int | None = None, nprobe: int = 32,
                 rebuild_fraction: float = 0.1):
        self._faiss = import_faiss()
        super().__init__(dim, rebuild_fraction)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}. Received: kind={kind!r}")
        self.kind = kind
        self.M = _check_positive_int("M", M)
        self.ef_construction = _check_positive_int("ef_construction", ef_construction)
        self.ef_search = _check_positive_int("ef_search", ef_search)
        self.nlist = None if nlist is None else _check_positive_int("nlist", nlist)
        self.nprobe = _check_positive_int("nprobe", nprobe)
        self._trained = 0  # vectors the IVF was trained on

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kind": self.kind, "M": self.M, "ef_construction": self.ef_construction,
                "ef_search": self.ef_search, "nlist": self.nlist, "nprobe": self.nprobe}

    def _cells(self, n: int) -> int:
        """IVF cells for n vectors; 0 means too few to train (use a flat index)."""
        wanted = self.nlist if self.nlist is not None else round(4 * math.sqrt(n))
        cells = min(wanted, n // MIN_POINTS_PER_LIST)
        return cells if cells >= 2 else 0

    def _build_structure(self, vectors: np.ndarray) -> Any:
        faiss, dim = self._faiss, vectors.shape[1]
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
        else:
            cells = self._cells(len(vectors))
            if cells:
                index = faiss.index_factory(dim, f"IVF{cells},Flat", faiss.METRIC_INNER_PRODUCT)
                index.train(vectors)
            else:
                index = faiss.IndexFlatIP(dim)
            self._trained = len(vectors)
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._tune(index)
        return index

    def _extend_structure(self, vectors: np.ndarray) -> bool:
        """HNSW graphs grow in place; an IVF too while it keeps at least half its training size
        (then it is trained again); a flat fallback is rebuilt, to train an IVF if it can."""
        index = self._structure
        if self.kind == "ivf" and not (hasattr(index, "nlist") and 2 * self._trained >= index.ntotal + len(vectors)):
            return False
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return True

    def _tune(self, index: Any) -> None:
        """Applies the search-time options to a built or loaded faiss index."""
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = self.ef_search
        elif hasattr(index, "nprobe"):
            index.nprobe = self.nprobe

    @property
    def structure(self) -> str | None:
        """What was last built: "hnsw", "ivf<nlist>", "flat" (too few vectors for IVF) or None."""
        if self._structure is None:
            return None
        if self.kind == "hnsw":
            return "hnsw"
        if hasattr(self._structure, "nlist"):
            return f"ivf{self._structure.nlist}"
        return "flat"

    def _query_structure(self, queries: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self._structure.search(np.ascontiguousarray(queries, dtype=np.float32), m)
        return rows.astype(np.int64, copy=False), scores

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "trained": self._trained}

    def _read_structure(self, data_dir: str, state: dict[str, Any]) -> None:
        self._trained = int(state["trained"])
        super()._read_structure(data_dir, state)

    def _write_structure(self, data_dir: str) -> None:
        if self._structure is not None:
            self._faiss.write_index(self._structure, os.path.join(data_dir, STRUCTURE_FILE))

    def _load_structure(self, data_dir: str) -> Any:
        from visnet.index.storage import IndexFileError

        path = os.path.join(data_dir, STRUCTURE_FILE)
        if not os.path.isfile(path):
            raise IndexFileError(f"{path} is missing; the manifest says {self._built} rows were indexed.")
        index = self._faiss.read_index(path)
        if index.ntotal != self._built or index.d != self._dim:
            raise IndexFileError(
                f"{path} holds {index.ntotal} vectors of dim {index.d}; the manifest says {self._built} of dim {self._dim}."
            )
        self._tune(index)
        return index
