"""`Gallery`: a vector index and a product catalogue kept in step, saved as one snapshot.

The search API holds one gallery and calls it from several threads: every method takes the
gallery's lock, so a search never sees an item in the index but not yet in the catalogue,
and a save never copies a half-applied change.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from visnet.index import storage
from visnet.index.base import VectorIndex
from visnet.index.catalogue import Catalogue, check_fields
from visnet.index.expansion import Expansion, expand_queries

CATALOGUE_FILE = "catalogue.sqlite"


class Gallery:
    """Searchable products: vectors in a `VectorIndex`, records in a `Catalogue`.

    Args:
        index: a `VectorIndex`, or a name / config dict for `visnet.index.get` (default "brute").
        catalogue: Catalogue or None. A new in-memory catalogue when None. Must hold exactly
            the index's ids.

    Example:

    >>> gallery = Gallery("brute")
    >>> gallery.add({"id": "p1", "label": "dress", "text": "red dress"}, [1.0, 0.0])
    >>> gallery.add({"id": "p2", "label": "bag"}, [0.0, 1.0])
    >>> [(hit["id"], hit["label"]) for hit in gallery.search([0.9, 0.1], k=1)]
    [('p1', 'dress')]
    """

    def __init__(self, index: VectorIndex | str | Mapping[str, Any] = "brute", catalogue: Catalogue | None = None):
        from visnet.index import get

        self.index = get(index)
        self.catalogue = Catalogue() if catalogue is None else catalogue
        self._lock = threading.RLock()
        in_index, in_catalogue = set(self.index.ids()), set(self.catalogue.ids())
        if in_index != in_catalogue:
            only_index, only_catalogue = sorted(in_index - in_catalogue), sorted(in_catalogue - in_index)
            raise ValueError(
                f"The index and the catalogue hold different ids: {len(only_index)} only in the index "
                f"{only_index[:3]}, {len(only_catalogue)} only in the catalogue {only_catalogue[:3]}."
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self.index)

    def __contains__(self, id: object) -> bool:
        with self._lock:
            return id in self.index

    def ids(self) -> list[str]:
        """Every id, in insertion order."""
        with self._lock:
            return self.index.ids()

    def get(self, id: str) -> dict[str, Any] | None:
        """The catalogue record of `id`, or None when absent."""
        with self._lock:
            return self.catalogue.get(id)

    def add(self, item: Mapping[str, Any], vector: Any) -> None:
        """Adds a product: its record (a dict with "id", see `Catalogue.add`) and its vector.

        ValueError (nothing changed) when the record or the vector is bad: NaN or infinite
        values, zero norm or the wrong dimension.
        """
        self._add([item], vector, single=True)

    def add_many(self, items: Sequence[Mapping[str, Any]], vectors: Any) -> None:
        """Adds products and their (n, dim) vectors, all or none."""
        self._add(list(items), vectors, single=False)

    def _add(self, items: list[Mapping[str, Any]], vectors: Any, single: bool) -> None:
        with self._lock:
            ids = [row[0] for row in self.catalogue.check_items(items)]
            self.index.check_vectors(ids, vectors, single=single)  # both checked before any change
            self.catalogue.add_many(items)  # rejects known ids
            try:
                if single:
                    self.index.add(ids[0], vectors)
                else:
                    self.index.add_batch(ids, vectors)
            except BaseException:
                for id in ids:
                    self.catalogue.remove(id)
                raise

    def update(self, id: str, vector: Any = None, **fields: Any) -> dict[str, Any]:
        """Replaces the vector (when given) and some record fields of a known product.

        The fields and the vector are both checked before either changes: a refused update
        (ValueError, KeyError) leaves the product as it was.

        Returns:
            dict. The record as it is now.
        """
        check_fields(fields)
        with self._lock:
            if id not in self.index:
                raise KeyError(f"Unknown id: {id!r} is not in the gallery.")
            if vector is not None:
                self.index.check_vectors([id], vector, single=True)
            record = self.catalogue.update(id, **fields)
            if vector is not None:
                self.index.update(id, vector)
            return record

    def remove(self, id: str) -> None:
        """Removes a known product (KeyError when unknown)."""
        with self._lock:
            self.index.remove(id)
            self.catalogue.remove(id)

    def search(self, vector: Any, k: int = 10, expansion: Expansion | None = None) -> list[dict[str, Any]]:
        """The `k` nearest products, best first: dicts of id, score and the catalogue fields
        (`expansion`: see `search_batch`)."""
        return self.search_batch(np.asarray(vector, dtype=np.float32)[None], k, expansion)[0]

    def search_batch(self, vectors: Any, k: int = 10, expansion: Expansion | None = None) -> list[list[dict[str, Any]]]:
        """`search` for each row of (n, dim) `vectors`.

        `expansion` with `qe` > 0 searches twice: each query plus its `qe` nearest products
        (weights cos ** alpha, `visnet.index.expansion`), re-normalised, is the query of the second
        search, whose results and scores are returned. Database-side augmentation (`dba`) re-averages
        every stored vector and is refused here: a live gallery changes under it."""
        if expansion is not None and expansion.dba > 1:
            raise ValueError(f"A gallery expands queries only (qe); database-side augmentation re-averages every "
                             f"stored vector and is for a fixed gallery (visnet.index.expansion). Received: {expansion}")
        with self._lock:
            if expansion is not None and expansion.qe > 0:
                vectors = np.asarray(vectors, dtype=np.float32)
                near_ids, near_scores = self.index.search_batch(vectors, expansion.qe)
                if near_ids.size:  # an empty gallery has no neighbours to add
                    neighbours = np.array([[self.index.vector(i) for i in row] for row in near_ids.tolist()],
                                          np.float32)
                    vectors = expand_queries(vectors, neighbours, near_scores, expansion.alpha)
            ids, scores = self.index.search_batch(vectors, k)
            records = self.catalogue.get_many(ids.ravel().tolist())
        return [[{"id": id, "score": score, **{name: value for name, value in records[id].items() if name != "id"}}
                 for id, score in zip(row_ids, row_scores)]
                for row_ids, row_scores in zip(ids.tolist(), scores.tolist())]

    def _write_files(self, data_dir: str) -> dict[str, Any]:
        fields = self.index.write_files(data_dir)
        self.catalogue.backup(os.path.join(data_dir, CATALOGUE_FILE))
        return {"kind": "gallery", **fields, "catalogue": {"file": CATALOGUE_FILE, "count": len(self.catalogue)}}

    def save(self, directory: str, model: Mapping[str, Any] | None = None) -> dict:
        """Saves the index and a backup of the catalogue as one atomic snapshot; returns the manifest.

        Args:
            directory: str. Created if needed; a previous gallery there is replaced on success only.
            model: dict or None. What embedded the vectors, e.g. `{"name": "visnet", "version": "3"}`.
        """
        with self._lock:
            self.index.bind_model(model)
            return storage.write_snapshot(directory, self._write_files, model)

    @classmethod
    def load(cls, directory: str, expected_model: str | Mapping[str, Any] | None = None,
             catalogue_path: str = ":memory:") -> Gallery:
        """Loads a saved gallery, verifying every checksum.

        Args:
            directory: str. A directory written by `Gallery.save`.
            expected_model: a model version string or dict of model fields that must match.
            catalogue_path: str. Where the restored catalogue lives (":memory:" by default; a
                file there is overwritten); the snapshot's own file is only read.
        """
        manifest, data_dir = storage.read_snapshot(directory, expected_model)
        if "catalogue" not in manifest:
            raise storage.IndexFileError(
                f"{directory!r} holds an index without a catalogue; load it with VectorIndex.load."
            )
        index = VectorIndex.from_files(manifest, data_dir)
        name = manifest["catalogue"].get("file") if isinstance(manifest["catalogue"], dict) else None
        path = storage.require_listed(manifest, data_dir, name, what=f"The catalogue file {name!r}")
        catalogue = None
        try:
            catalogue = Catalogue.restore(path, catalogue_path)
            catalogue.verify()
            if index.live:
                cls._reconcile(index, catalogue)
            return cls(index, catalogue)
        except (ValueError, sqlite3.DatabaseError) as error:
            if catalogue is not None:
                catalogue.close()
            raise storage.IndexFileError(f"{path}: {error}") from None

    @staticmethod
    def _reconcile(index: VectorIndex, catalogue: Catalogue) -> None:
        """A live engine (`index.live`) against the catalogue of the last save: what a crash left half
        done is finished the way the last acknowledged state says. Vectors of ids the catalogue lacks
        were written but never saved (so never acknowledged): removed. Records whose vector is gone
        were being removed: removed too. Counts go to stderr."""
        in_index, in_catalogue = set(index.ids()), set(catalogue.ids())
        unsaved, removed = sorted(in_index - in_catalogue), sorted(in_catalogue - in_index)
        if unsaved:
            index.remove_batch(unsaved)
        for id in removed:
            catalogue.remove(id)
        if unsaved or removed:
            import sys

            print(f"note: reconciled the gallery with {index!r}: {len(unsaved)} vectors written after the last "
                  f"save removed, {len(removed)} records whose vectors were removed dropped.", file=sys.stderr)

    def __repr__(self) -> str:
        return f"Gallery(index={self.index!r}, items={len(self)})"
