"""`VectorIndex`: the one interface of every retrieval index (ids in, nearest ids out).

An index maps product ids (non-empty strings) to vectors of one dimension, fixed at
construction or by the first `add`. Vectors are L2-normalised on the way in, queries too, and
the score of a result is their cosine similarity. Results come best first; equal scores come
in insertion order (an `update` keeps the id's place). Asking for more results than the index
holds returns them all; searching an empty index returns nothing.

Indexes are not thread-safe (even a search may rebuild a structure); `visnet.index.Gallery`
wraps one in a lock.
"""

from __future__ import annotations

import abc
import collections
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from visnet.index import storage
from visnet.index.ranking import SCORE_TOLERANCE, rerank, shortlist
from visnet.index.rows import RowStore

# Scores held at once while a batch of queries is ranked (float32 cells): bounds memory.
_CHUNK_SCORES = 1 << 22


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1. Received: {name}={value!r}")
    return int(value)


NON_FINITE = "NaN or infinite values"
ZERO_NORM = "zero norm (it cannot be normalised)"
# How far from 1 the norm of a saved (normalised float32) vector may be; real ones are within 1e-6.
_UNIT_TOLERANCE = 1e-3
# Rows checked at once by `check_rows`.
_CHECK_ROWS = 1 << 16


def check_rows(array: np.ndarray) -> tuple[np.ndarray, tuple[int, str] | None]:
    """The float64 L2 norm of each row of a 2-D float array, and the first row no index may hold.

    The one check of vector values behind every write (`add`, `add_batch`, `update`,
    `update_batch` of every backend, hence `Gallery.add`/`add_many`/`update`), every query and
    every load (`from_files`, which also wants unit norms).

    Returns:
        (norms, None), or (norms, (row, problem)) for the first row with NaN or infinite values
        (`NON_FINITE`) or, failing that, the first with a zero norm (`ZERO_NORM`).
    """
    finite = np.empty(len(array), bool)
    norms = np.empty(len(array), np.float64)
    for start in range(0, len(array), _CHECK_ROWS):  # bounded float64 copies, even on a big load
        part = array[start : start + _CHECK_ROWS]
        finite[start : start + len(part)] = np.isfinite(part).all(axis=1)
        with np.errstate(invalid="ignore", over="ignore"):
            norms[start : start + len(part)] = np.linalg.norm(part.astype(np.float64), axis=1)
    for flags, problem in ((finite, NON_FINITE), (norms > 0, ZERO_NORM)):
        if not flags.all():
            return norms, (int(np.argmin(flags)), problem)
    return norms, None


def _manifest_int(manifest: Mapping[str, Any], key: str, where: str, minimum: int, optional: bool = False) -> Any:
    value = manifest.get(key) if isinstance(manifest, Mapping) else None
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise storage.IndexFileError(
            f"{where} has {key}={value!r}; expected an integer >= {minimum}{' or null' if optional else ''}."
        )
    return value


class VectorIndex(abc.ABC):
    """Abstract nearest-neighbour index over L2-normalised vectors (cosine similarity).

    Subclasses implement `_search` (and may react to changes with `_added`/`_removed`, and
    save a structure with `_write_structure`/`_read_structure`); validation, ids, insertion
    order, tombstones and persistence live here.

    Args:
        dim: int or None. Vector dimension; None takes it from the first `add`.

    Example:

    >>> index = visnet.index.get("brute")
    >>> index.add_batch(["a", "b"], np.array([[1.0, 0.0], [0.6, 0.8]]))
    >>> index.search([1.0, 0.1], k=1)
    [('a', 0.99503...)]
    """

    #: The name the index is registered under (and saved as).
    name: ClassVar[str] = ""
    #: Whether results equal an exhaustive search.
    exact: ClassVar[bool] = True
    #: Backend files `_read_structure` may open (beside the arrays); `from_files` opens none the
    #: manifest does not list.
    structure_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, dim: int | None = None):
        self._dim = None if dim is None else _check_positive_int("dim", dim)
        self._rows: RowStore | None = RowStore(self._dim) if self._dim else None
        self._next_order = 0

    # -- contents ---------------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        """The vector dimension (None until set by the constructor or the first add)."""
        return self._dim

    def __len__(self) -> int:
        return 0 if self._rows is None else len(self._rows)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, str) and self._rows is not None and id in self._rows.row_of

    def ids(self) -> list[str]:
        """The ids in insertion order."""
        return [] if self._rows is None else self._rows.ids_in_order()

    def vector(self, id: str) -> np.ndarray:
        """A copy of the (normalised) vector stored for `id`; KeyError when unknown."""
        self._check_known([id])
        return self._rows.vectors[self._rows.row_of[id]].copy()

    # -- validation ---------------------------------------------------------------------------

    def _check_ids(self, ids: Iterable[str]) -> list[str]:
        ids = list(ids) if not isinstance(ids, str) else [ids]
        seen = set()
        for id in ids:
            if not isinstance(id, str) or not id:
                raise ValueError(f"Ids must be non-empty strings. Received: id={id!r}")
            if id in seen:
                raise ValueError(f"Duplicate id in one call: {id!r}. Received: ids with {id!r} twice")
            seen.add(id)
        return ids

    def _check_known(self, ids: Sequence[str]) -> None:
        for id in ids:
            if id not in self:
                raise KeyError(f"Unknown id: {id!r} is not in the index.")

    def _check_vectors(self, vectors: Any, ids: Sequence[str] | None, single: bool) -> np.ndarray:
        """The input as float32 (n, dim) L2-normalised rows, or a ValueError naming the bad row."""
        array = np.asarray(vectors, dtype=np.float32)
        what = "vector" if single else "vectors"
        if single:
            if array.ndim != 1:
                raise ValueError(f"{what} must be 1-D. Received: shape={array.shape}")
            array = array[None]
        elif array.ndim != 2 or (ids is not None and len(array) != len(ids)):
            rows = "n" if ids is None else len(ids)
            raise ValueError(
                f"{what} must have shape ({rows}, dim){' (one row per id)' if ids is not None else ''}. "
                f"Received: shape={array.shape}"
            )
        width = array.shape[1]
        if width == 0 or (self._dim is not None and width != self._dim):
            expected = f"{self._dim}" if self._dim is not None else ">= 1"
            raise ValueError(f"{what} must have dim={expected} values. Received: dim={width}")
        norms, bad = check_rows(array)
        if bad is not None:
            row, problem = bad
            name = f"The vector of id {ids[row]!r}" if ids is not None else f"Query row {row}"
            raise ValueError(f"{name} has {problem}.")
        return (array / norms[:, None]).astype(np.float32)

    def check_vectors(self, ids: Sequence[str], vectors: Any, single: bool = False) -> None:
        """Raises the ValueError `add`/`update` (`single=True`, one vector) or `add_batch`/
        `update_batch` would raise for these ids' vectors (bad ids, shape, dimension, NaN or
        infinite values, zero norm), changing nothing. `Gallery` calls it before any change."""
        self._check_vectors(vectors, self._check_ids(ids), single)

    def _set_dim(self, dim: int) -> None:
        if self._dim is None:
            self._dim = dim
            self._rows = RowStore(dim)

    # -- changes ------------------------------------------------------------------------------

    def add(self, id: str, vector: Any) -> None:
        """Adds one vector. ValueError when the id is already in the index or the vector is bad."""
        ids = self._check_ids([id])
        self._insert(ids, self._check_vectors(vector, ids, single=True))

    def add_batch(self, ids: Sequence[str], vectors: Any) -> None:
        """Adds `vectors` (n, dim) under `ids` (n strings), all or none."""
        ids = self._check_ids(ids)
        self._insert(ids, self._check_vectors(vectors, ids, single=False))

    def _insert(self, ids: list[str], vectors: np.ndarray) -> None:
        for id in ids:
            if id in self:
                raise ValueError(f"Id {id!r} is already in the index; use update() to change its vector. Received: id={id!r}")
        if not ids:
            return
        self._set_dim(vectors.shape[1])
        order = np.arange(self._next_order, self._next_order + len(ids))
        self._next_order += len(ids)
        self._added(self._rows.append(ids, vectors, order))

    def update(self, id: str, vector: Any) -> None:
        """Replaces the vector of a known id (KeyError when unknown); the id keeps its insertion order."""
        ids = self._check_ids([id])
        self._check_known(ids)
        self._replace(ids, self._check_vectors(vector, ids, single=True))

    def update_batch(self, ids: Sequence[str], vectors: Any) -> None:
        """Replaces the vectors of known ids, all or none."""
        ids = self._check_ids(ids)
        self._check_known(ids)
        self._replace(ids, self._check_vectors(vectors, ids, single=False))

    def _replace(self, ids: list[str], vectors: np.ndarray) -> None:
        """Default: tombstone the old rows and append new ones with the same insertion order."""
        if not ids:
            return
        old = np.array([self._rows.row_of[id] for id in ids], np.int64)
        order = self._rows.order[old].copy()
        self._rows.kill(old)
        self._removed(old)
        self._added(self._rows.append(ids, vectors, order))

    def remove(self, id: str) -> None:
        """Removes a known id (KeyError when unknown)."""
        self.remove_batch([id])

    def remove_batch(self, ids: Sequence[str]) -> None:
        """Removes known ids, all or none."""
        ids = self._check_ids(ids)
        self._check_known(ids)
        if not ids:
            return
        rows = np.array([self._rows.row_of[id] for id in ids], np.int64)
        self._rows.kill(rows)
        self._removed(rows)

    def _added(self, rows: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Called after rows were appended."""

    def _removed(self, rows: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Called after rows became tombstones."""

    def build(self) -> None:  # noqa: B027 - optional hook
        """Brings any search structure up to date now (searches do it when needed)."""

    # -- search -------------------------------------------------------------------------------

    def search(self, vector: Any, k: int = 10) -> list[tuple[str, float]]:
        """The `k` nearest ids of one query as (id, cosine similarity) pairs, best first.

        Args:
            vector: array-like. (dim,) query; normalised here.
            k: int. How many results (>= 1); fewer when the index holds fewer.
        """
        k = _check_positive_int("k", k)
        ids, scores = self._search_checked(self._check_vectors(vector, None, single=True), k)
        return list(zip(ids[0].tolist(), scores[0].tolist()))

    def search_batch(self, vectors: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The `k` nearest ids of each query.

        Args:
            vectors: array-like. (n, dim) queries; normalised here.
            k: int. Results per query (>= 1); min(k, len(index)) are returned.

        Returns:
            (ids, scores): an (n, k') object array of id strings and an (n, k') float32 array
            of cosine similarities, best first, with k' = min(k, len(index)).
        """
        k = _check_positive_int("k", k)
        return self._search_checked(self._check_vectors(vectors, None, single=False), k)

    def _search_checked(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n, kept = len(queries), min(k, len(self))
        ids, scores = np.empty((n, kept), object), np.empty((n, kept), np.float32)
        if kept == 0:
            return ids, scores
        step = max(1, _CHUNK_SCORES // max(1, self._scores_per_query(kept)))
        for start in range(0, n, step):
            rows, found = self._search(queries[start : start + step], kept)
            ids[start : start + step] = self._rows.ids[rows]
            scores[start : start + step] = found
        return ids, scores

    def _scores_per_query(self, k: int) -> int:
        """Score cells one query of `_search` holds at once (sets the query chunk size)."""
        return self._rows.size

    @abc.abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the k best live rows of each normalised query, best first.

        k is at least 1 and at most the number of live rows.
        """

    def _exact_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exhaustive search over the live rows: one float32 matrix product, shortlist, exact rerank."""
        rows = self._rows
        scores = queries @ rows.vectors[: rows.size].T
        if rows.dead:
            scores[:, ~rows.alive[: rows.size]] = -np.inf
        return rerank(rows.vectors, rows.order, queries, shortlist(scores, k, SCORE_TOLERANCE), k)

    # -- configuration and persistence ----------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (without the registry name): `type(index)(**config)` rebuilds it empty."""
        return {"dim": self._dim}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VectorIndex:
        return cls(**config)

    def _state(self) -> dict[str, Any]:
        """JSON-able internal state saved in the manifest (subclasses extend it)."""
        return {"next_order": self._next_order}

    def bind_model(self, model: Mapping[str, Any] | None) -> None:  # noqa: B027 - optional hook
        """Called by `save` (and `Gallery.save`) with the model the vectors came from. An index whose
        vectors live in an engine records it there and refuses another (`MilvusIndex`); here, nothing."""

    #: True when the vectors live in an engine that is the store of record (`load` reconnects to what
    #: it holds now, not to a snapshot); a `Gallery` then reconciles its catalogue at load.
    live: ClassVar[bool] = False

    def _write_structure(self, data_dir: str) -> None:  # noqa: B027 - optional hook
        """Writes backend files (beside vectors.npy, ids.npy, order.npy) into `data_dir`."""

    def _read_structure(self, data_dir: str, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restores the backend's structure after the rows were loaded."""

    def write_files(self, data_dir: str) -> dict[str, Any]:
        """Writes the index's files into `data_dir`; returns its manifest fields.

        The building block of `save` (and of `Gallery.save`, which adds its catalogue).
        """
        arrays = self._rows.arrays() if self._rows is not None else {
            "vectors": np.empty((0, 0), np.float32), "ids": np.empty(0, "<U1"), "order": np.empty(0, np.int64)}
        for name, array in arrays.items():
            with open(os.path.join(data_dir, f"{name}.npy"), "wb") as handle:
                np.save(handle, array, allow_pickle=False)
        self._write_structure(data_dir)
        return {"backend": self.name, "config": self.get_config(), "dim": self._dim, "count": len(self),
                "state": self._state()}

    def save(self, directory: str, model: Mapping[str, Any] | None = None) -> dict:
        """Saves the index atomically (see `visnet.index.storage`); returns the manifest.

        Args:
            directory: str. Created if needed; a previous index there is replaced on success only.
            model: dict or None. What embedded the vectors, e.g. `{"name": "visnet", "version": "3"}`;
                `load(..., expected_model=...)` checks it.
        """
        return storage.write_snapshot(directory, lambda data_dir: {"kind": "index", **self.write_files(data_dir)},
                                      model)

    @classmethod
    def load(cls, directory: str, expected_model: str | Mapping[str, Any] | None = None) -> VectorIndex:
        """Loads a saved index, verifying every file's checksum.

        Args:
            directory: str. A directory written by `save`.
            expected_model: a model version string or a dict of model fields that must match
                the saved model info (ModelMismatchError otherwise); None skips the check.

        Returns:
            The index, of the saved backend (any backend when called on `VectorIndex`).
        """
        manifest, data_dir = storage.read_snapshot(directory, expected_model)
        return cls.from_files(manifest, data_dir)

    @classmethod
    def from_files(cls, manifest: Mapping[str, Any], data_dir: str) -> VectorIndex:
        """Rebuilds an index from checked data files and their manifest fields.

        Beyond the checksums (`storage.read_snapshot`), the contents are checked before anything
        is served: IndexFileError names the file and its first bad row when a vector has NaN or
        infinite values or is not of unit norm, or the arrays have the wrong shape, type or a
        repeated id.
        """
        from visnet.index import indexes

        backend = indexes.lookup(manifest["backend"])
        if not issubclass(backend, cls):
            raise ValueError(
                f"{data_dir} holds a {manifest['backend']!r} index, not a {cls.__name__}. "
                f"Load it with VectorIndex.load. Received: backend={manifest['backend']!r}"
            )
        return backend._load_files(manifest, data_dir)

    @classmethod
    def _load_files(cls, manifest: Mapping[str, Any], data_dir: str) -> VectorIndex:
        """`from_files` for this backend (one that keeps its vectors elsewhere overrides it)."""
        backend = cls
        where = os.path.join(os.path.dirname(os.path.normpath(data_dir)), storage.MANIFEST)
        config = manifest.get("config")
        if not isinstance(config, Mapping) or not all(isinstance(key, str) for key in config):
            raise storage.IndexFileError(f"{where} has config={config!r}; expected a JSON object.")
        try:
            index = backend.from_config(config)
        except (TypeError, ValueError) as error:
            raise storage.IndexFileError(
                f"{where} has a config the {manifest['backend']!r} index does not take: {error}"
            ) from None
        dim = _manifest_int(manifest, "dim", where, 1, optional=True)
        if index.dim is not None and index.dim != dim:
            raise storage.IndexFileError(f"{where} has dim={dim!r} but its config says dim={index.dim}.")
        count = _manifest_int(manifest, "count", where, 0)
        next_order = _manifest_int(manifest.get("state"), "next_order", f"{where} (state)", 0)
        arrays = {name: _load_array(data_dir, name, manifest) for name in ("vectors", "ids", "order")}
        if dim is not None:
            if arrays["vectors"].ndim != 2 or arrays["vectors"].shape[1:] != (dim,) or not (
                    arrays["ids"].ndim == arrays["order"].ndim == 1
                    and len(arrays["ids"]) == len(arrays["order"]) == len(arrays["vectors"])):
                raise storage.IndexFileError(
                    f"The arrays in {data_dir} do not match the manifest: vectors {arrays['vectors'].shape}, "
                    f"{len(arrays['ids'])} ids, dim={dim}."
                )
            _check_saved_rows(data_dir, arrays)
            index._set_dim(dim)
            index._rows = RowStore.from_arrays(arrays["vectors"], arrays["ids"], arrays["order"])
            if len(index._rows.row_of) != index._rows.size - index._rows.dead:
                repeated = collections.Counter(id for id in arrays["ids"].tolist() if id).most_common(1)[0][0]
                raise storage.IndexFileError(f"{os.path.join(data_dir, 'ids.npy')} holds the id {repeated!r} twice.")
        if len(index) != count:
            raise storage.IndexFileError(
                f"{data_dir} holds {len(index)} live vectors but the manifest says count={count}."
            )
        index._next_order = next_order
        for name in index.structure_files:
            if os.path.lexists(os.path.join(data_dir, name)):
                storage.require_listed(manifest, data_dir, name)
        index._read_structure(data_dir, manifest["state"])
        return index

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self._dim}, count={len(self)})"


# Kinds of numpy dtype each saved array may have (float, unicode string, integer).
_ARRAY_KINDS = {"vectors": ("f", "floating point"), "ids": ("U", "strings"), "order": ("iu", "integers")}


def _load_array(data_dir: str, name: str, manifest: Mapping[str, Any]) -> np.ndarray:
    """A saved array, refused (IndexFileError) unless the manifest vouches for it and its type is right."""
    path = storage.require_listed(manifest, data_dir, f"{name}.npy")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise storage.IndexFileError(f"Cannot read {path}: {error}") from None
    kinds, what = _ARRAY_KINDS[name]
    if not isinstance(array, np.ndarray) or array.dtype.kind not in kinds:
        raise storage.IndexFileError(f"{path} holds {getattr(array, 'dtype', type(array))} values, not {what}.")
    return array


def _check_saved_rows(data_dir: str, arrays: Mapping[str, np.ndarray]) -> None:
    """IndexFileError for the first saved row that is not a finite unit vector.

    Every row is checked, removed ones too: they stay in a backend's structure until it is rebuilt.
    """
    vectors, ids = arrays["vectors"], arrays["ids"]
    path = os.path.join(data_dir, "vectors.npy")

    def name(row: int) -> str:
        return f"id {str(ids[row])!r}" if ids[row] else "a removed vector"

    norms, bad = check_rows(vectors)
    if bad is not None and bad[1] == NON_FINITE:
        raise storage.IndexFileError(
            f"{path}: row {bad[0]} ({name(bad[0])}) has {NON_FINITE}. The file is corrupt or was changed after saving."
        )
    off = np.abs(norms - 1.0) > _UNIT_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise storage.IndexFileError(
            f"{path}: row {row} ({name(row)}) has norm {norms[row]:.6g}, not 1 (saved vectors are normalised). "
            "The file is corrupt or was changed after saving."
        )
