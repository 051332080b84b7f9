"""Vectors in Milvus (the optional `visnet[milvus]` extra): Milvus Lite in a local file, or a Milvus
server or cluster by URI, with the same client code.

    index = visnet.index.get("milvus", uri="index/milvus.db")                  # Milvus Lite: a local file
    index = visnet.index.get("milvus", uri="http://milvus:19530", token="...")  # a server or cluster
    index = visnet.index.get("milvus:index/milvus.db")                          # the same, as one string

Unlike the other backends, the engine holds the vectors and is the store of record: this object
keeps no copy of them (a catalogue past one machine's memory is the point), only a client.
Consequences, stated:

- `save` writes a manifest naming the collection (and, in a `Gallery`, the catalogue), not the
  vectors; `load` reconnects and serves what the collection holds now. Snapshots of the
  vectors are the engine's business (Milvus backups); a `Gallery` reconciles its catalogue with
  the collection when it loads (`Gallery.load`).
- Writes are durable when acknowledged: Milvus logs an insert before it answers (measured with
  Milvus Lite: 4,309 of 4,309 acknowledged inserts present after kill -9, with no flush; a
  flush per write costs 27 ms against 2.3 ms, so none is made).
- The model the vectors came from is recorded on the collection (`visnet.model` property) at the
  first save; saving or loading with another model is a `ModelMismatchError`.
- Insertion order (the tie-break of equal scores) is the write's microsecond timestamp, kept by
  `update`; several writers of one collection order ties by their clocks.
- Reads use the `Session` consistency level: a client sees its own writes at once, other
  clients' within the engine's staleness bound (`consistency="Strong"` waits for the engine's
  time tick on every read: 615 ms per search on a Milvus 2.3 standalone, against 8 ms).
  `len` and `ids()` are always `Strong`.

Search asks the engine for a shortlist with the stored vectors (`limit` of max(2k, k + 16),
widened while the k-th score ties with the last one returned) and re-ranks it exactly in float64
by `visnet.index.ranking.rerank`, so scores equal every other backend's. A graph thinned by many
deletions can return fewer than k: the limit is widened, then the collection scanned exactly. `index_type` `FLAT` is
exact; `HNSW`, `HNSW_SQ`, `IVF_FLAT` and `IVF_SQ8` are approximate. Milvus Lite builds only these
five; `IVF_PQ`, `DISKANN`, `SCANN` and `AUTOINDEX` need a Milvus server (refused with Lite).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from visnet.index import storage
from visnet.index.base import VectorIndex, _check_positive_int
from visnet.index.ranking import SCORE_TOLERANCE, rerank

LITE_INDEX_TYPES = ("FLAT", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8")
SERVER_INDEX_TYPES = (*LITE_INDEX_TYPES, "IVF_PQ", "DISKANN", "SCANN", "AUTOINDEX")
MAX_ID_LENGTH = 2048
CONSISTENCY_LEVELS = ("Session", "Strong", "Bounded", "Eventually")
MODEL_PROPERTY = "visnet.model"
DEFAULT_URI_ENV = "VISNET_MILVUS_URI"
# Rows fetched per call when listing ids (Milvus' query window), and sent per insert call.
_PAGE = 10_000
_INSERT_ROWS = 10_000
# Milvus' largest search limit (topk).
_MAX_LIMIT = 16_384


def import_pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as error:
        raise ImportError(
            "The 'milvus' index needs pymilvus (and milvus-lite for a local file), an optional extra: "
            "pip install visnet[milvus] (or pip install pymilvus milvus-lite)."
        ) from error
    return pymilvus


def is_lite(uri: str) -> bool:
    """A file path means Milvus Lite; http(s)://, tcp:// or unix: URIs name a server."""
    return "://" not in uri and not uri.startswith("unix:")


class MilvusIndex(VectorIndex):
    """Cosine search in a Milvus collection (inner product on normalised vectors).

    Args:
        dim: int or None. Vector dimension; None takes it from the collection, or the first add.
        uri: str or None. A file path (Milvus Lite, created if absent) or a server URI such as
            `http://host:19530`. Default: $VISNET_MILVUS_URI, else `visnet-milvus.db`.
        collection: str. Collection name (created at the first add).
        token: str or None. A server's token (`user:password` or an API key); default $MILVUS_TOKEN.
            Never saved in a manifest.
        index_type: str. `FLAT` (exact), `HNSW`, `HNSW_SQ`, `IVF_FLAT`, `IVF_SQ8` (approximate);
            with a server also `IVF_PQ`, `DISKANN`, `SCANN`, `AUTOINDEX`.
        M, ef_construction: int. HNSW graph links per node and build-time candidates.
        ef_search: int. HNSW search-time candidates (at least the shortlist's size is used).
        nlist, nprobe: int. IVF cells, and cells visited per query.
        timeout: float. Seconds per engine call.
        consistency: str. What reads see. `Session` (default): this client's own writes at once,
            other clients' within the engine's staleness bound; `Strong`: every write, at the cost
            of waiting for the engine's time tick (measured on a Milvus 2.3 standalone: 615 ms per
            search against 8 ms with `Session`); `Bounded`, `Eventually`. Counting (`len`) and listing ids
            (`ids()`, which a `Gallery` uses to reconcile at load) are always `Strong`: a `Session`
            count misses this client's own deletes for a moment.
    """

    name = "milvus"
    live = True

    def __init__(self, dim: int | None = None, uri: str | None = None, collection: str = "visnet",
                 token: str | None = None, index_type: str = "HNSW", M: int = 16, ef_construction: int = 200,
                 ef_search: int = 64, nlist: int = 128, nprobe: int = 16, timeout: float = 30.0,
                 consistency: str = "Session"):
        pymilvus = import_pymilvus()
        super().__init__(None)
        uri = uri or os.environ.get(DEFAULT_URI_ENV) or "visnet-milvus.db"
        self.uri = uri if not is_lite(uri) else os.path.abspath(uri)
        self.collection = str(collection)
        self.index_type = str(index_type).upper()
        allowed = LITE_INDEX_TYPES if is_lite(self.uri) else SERVER_INDEX_TYPES
        if self.index_type not in allowed:
            more = (f"; {self.index_type} needs a Milvus server (uri=http://host:19530)"
                    if self.index_type in SERVER_INDEX_TYPES else "")
            raise ValueError(f"index_type must be one of {', '.join(allowed)} here{more}. "
                             f"Received: index_type={index_type!r}")
        self.M = _check_positive_int("M", M)
        self.ef_construction = _check_positive_int("ef_construction", ef_construction)
        self.ef_search = _check_positive_int("ef_search", ef_search)
        self.nlist = _check_positive_int("nlist", nlist)
        self.nprobe = _check_positive_int("nprobe", nprobe)
        self.timeout = float(timeout)
        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"consistency must be one of {', '.join(CONSISTENCY_LEVELS)}. Received: "
                             f"consistency={consistency!r}")
        self.consistency = consistency
        self._read = {"consistency_level": consistency}
        token = token or os.environ.get("MILVUS_TOKEN")
        self._lock = threading.Lock()
        self._last_order = 0
        if is_lite(self.uri):
            os.makedirs(os.path.dirname(self.uri) or ".", exist_ok=True)
        try:
            self._client = pymilvus.MilvusClient(uri=self.uri, token=token or "", timeout=self.timeout)
        except Exception as error:  # pymilvus raises its own exception types, and OSError for Lite files
            raise OSError(f"Could not connect to Milvus at {self.uri}: {error}") from None
        if self._client.has_collection(self.collection):
            self._client.load_collection(self.collection)  # a reopened collection starts released
            found = self._collection_dim()
            if dim is not None and _check_positive_int("dim", dim) != found:
                raise ValueError(f"The collection {self.collection!r} at {self.uri} holds dim={found} vectors. "
                                 f"Received: dim={dim}")
            self._dim = found
        elif dim is not None:
            self._set_dim(_check_positive_int("dim", dim))

    @property
    def exact(self) -> bool:  # type: ignore[override]
        return self.index_type == "FLAT"

    # -- the collection ------------------------------------------------------------------------

    def _collection_dim(self) -> int:
        for field in self._client.describe_collection(self.collection)["fields"]:
            if field["name"] == "vector":
                return int(field["params"]["dim"])
        raise storage.IndexFileError(f"The collection {self.collection!r} at {self.uri} has no 'vector' field.")

    def _index_params(self) -> dict:
        if self.index_type.startswith("HNSW"):
            return {"M": self.M, "efConstruction": self.ef_construction}
        if self.index_type.startswith("IVF"):
            return {"nlist": self.nlist, **({"m": 8} if self.index_type == "IVF_PQ" else {})}
        return {}

    def _search_params(self, limit: int) -> dict:
        if self.index_type.startswith("HNSW"):
            return {"metric_type": "IP", "params": {"ef": max(self.ef_search, limit)}}
        if self.index_type.startswith("IVF"):
            return {"metric_type": "IP", "params": {"nprobe": self.nprobe}}
        return {"metric_type": "IP", "params": {}}

    def _set_dim(self, dim: int) -> None:
        if self._dim is not None:
            return
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
        schema.add_field("order", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        params = self._client.prepare_index_params()
        params.add_index(field_name="vector", index_type=self.index_type, metric_type="IP",
                         params=self._index_params())
        self._client.create_collection(self.collection, schema=schema, index_params=params,
                                       consistency_level=self.consistency)
        self._dim = dim

    def _fetch(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict]:
        if self._dim is None or not ids:
            return {}
        found = self._client.get(self.collection, ids=list(ids), output_fields=list(fields), **self._read)
        return {row["id"]: row for row in found}

    # -- contents ------------------------------------------------------------------------------

    def __len__(self) -> int:
        if self._dim is None:
            return 0
        # Strong: a Session count(*) misses this client's own deletes for a moment (measured on Milvus 2.3).
        result = self._client.query(self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(result[0]["count(*)"])

    def __contains__(self, id: object) -> bool:
        return isinstance(id, str) and bool(id) and id in self._fetch([id], ["id"])

    def ids(self) -> list[str]:
        """Every id in insertion order (pages through the collection: O(n))."""
        if self._dim is None:
            return []
        rows = []
        iterator = self._client.query_iterator(self.collection, batch_size=_PAGE, filter="",
                                               output_fields=["id", "order"], consistency_level="Strong")
        try:
            while True:
                page = iterator.next()
                if not page:
                    break
                rows.extend((row["order"], row["id"]) for row in page)
        finally:
            iterator.close()
        return [id for _, id in sorted(rows)]

    def vector(self, id: str) -> np.ndarray:
        self._check_known([id])
        return np.asarray(self._fetch([id], ["vector"])[id]["vector"], np.float32)

    def _check_known(self, ids: Sequence[str]) -> None:
        found = self._fetch(ids, ["id"])
        for id in ids:
            if id not in found:
                raise KeyError(f"Unknown id: {id!r} is not in the index.")

    def _check_ids(self, ids) -> list[str]:
        ids = super()._check_ids(ids)
        for id in ids:
            if len(id.encode("utf-8")) > MAX_ID_LENGTH:
                raise ValueError(f"Ids must be at most {MAX_ID_LENGTH} bytes in Milvus. Received: {len(id)} characters")
        return ids

    # -- changes -------------------------------------------------------------------------------

    def _orders(self, n: int) -> list[int]:
        """Insertion numbers: microsecond timestamps, strictly increasing in this process."""
        with self._lock:
            start = max(self._last_order + 1, time.time_ns() // 1000)
            self._last_order = start + n - 1
        return list(range(start, start + n))

    def _insert(self, ids: list[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        self._set_dim(vectors.shape[1])
        known = self._fetch(ids, ["id"])
        for id in ids:
            if id in known:
                raise ValueError(f"Id {id!r} is already in the index; use update() to change its vector. "
                                 f"Received: id={id!r}")
        orders = self._orders(len(ids))
        for start in range(0, len(ids), _INSERT_ROWS):  # bounded requests; each is logged before it is answered
            self._client.insert(self.collection, [
                {"id": id, "order": order, "vector": vector}
                for id, order, vector in zip(ids[start : start + _INSERT_ROWS], orders[start : start + _INSERT_ROWS],
                                             vectors[start : start + _INSERT_ROWS])])

    def update(self, id: str, vector: Any) -> None:
        ids = self._check_ids([id])
        self._replace(ids, self._check_vectors(vector, ids, single=True))

    def update_batch(self, ids: Sequence[str], vectors: Any) -> None:
        ids = self._check_ids(ids)
        self._replace(ids, self._check_vectors(vectors, ids, single=False))

    def _replace(self, ids: list[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        old = self._fetch(ids, ["order"])
        self._check_known_in(ids, old)
        self._client.upsert(self.collection, [{"id": id, "order": old[id]["order"], "vector": vector.tolist()}
                                              for id, vector in zip(ids, vectors)])

    @staticmethod
    def _check_known_in(ids: Sequence[str], found: Mapping[str, Any]) -> None:
        for id in ids:
            if id not in found:
                raise KeyError(f"Unknown id: {id!r} is not in the index.")

    def remove_batch(self, ids: Sequence[str]) -> None:
        ids = self._check_ids(ids)
        if not ids:
            return
        self._check_known_in(ids, self._fetch(ids, ["id"]))
        self._client.delete(self.collection, ids=list(ids))

    def build(self, timeout: float = 3600.0) -> None:
        """Seals what was written (`flush`) and waits until the engine has indexed every row."""
        if self._dim is None:
            return
        self._client.flush(self.collection)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._client.describe_index(self.collection, "vector")
            if not state.get("pending_index_rows"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"Milvus had not indexed {self.collection!r} after {timeout:.0f} s.")

    # -- search --------------------------------------------------------------------------------

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError("MilvusIndex searches in _search_checked")  # never called

    def _search_checked(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One engine call in the common case (no count): the collection's size is asked for only when a
        query gets fewer than k hits (a small collection, or a graph thinned by deletions)."""
        n = len(queries)
        if self._dim is None:
            return np.empty((n, 0), object), np.empty((n, 0), np.float32)
        accepted: dict[int, list] = {}
        todo, limit, total = list(range(n)), min(max(2 * k, k + 16), _MAX_LIMIT), None
        while todo:
            hits = self._client.search(self.collection, data=queries[todo].tolist(), limit=limit,
                                       output_fields=["order", "vector"], search_params=self._search_params(limit),
                                       **self._read)
            again = []
            for query, found in zip(todo, hits):
                found = list(found)
                if len(found) < k:
                    total = len(self) if total is None else total
                    if len(found) < min(k, total):  # a graph thinned by deletions returned too few
                        if limit < min(total, _MAX_LIMIT):
                            again.append(query)
                            continue
                        found = self._scan(queries[query])
                elif len(found) == limit and limit < _MAX_LIMIT:
                    distances = [hit["distance"] for hit in found]
                    if distances[k - 1] - distances[-1] <= SCORE_TOLERANCE:
                        again.append(query)  # ties at the cut may go on past the shortlist
                        continue
                accepted[query] = found
            todo, limit = again, min(4 * limit, _MAX_LIMIT)
        kept = min(k, total) if total is not None else k
        ids, scores = np.empty((n, kept), object), np.empty((n, kept), np.float32)
        if kept == 0:
            return ids, scores
        for query, found in accepted.items():
            vectors = np.asarray([hit["entity"]["vector"] for hit in found], np.float32)
            order = np.asarray([hit["entity"]["order"] for hit in found], np.int64)
            rows, best = rerank(vectors, order, queries[query : query + 1], np.arange(len(found))[None], kept)
            ids[query] = [found[row]["id"] for row in rows[0]]
            scores[query] = best[0]
        return ids, scores

    def _scan(self, query: np.ndarray) -> list[dict]:
        """Every row as a search hit (the exact fallback when the engine's index returns too few)."""
        hits = []
        iterator = self._client.query_iterator(self.collection, batch_size=_PAGE, filter="",
                                               output_fields=["id", "order", "vector"], **self._read)
        try:
            while page := iterator.next():
                for row in page:
                    hits.append({"id": row["id"], "distance": float(np.dot(row["vector"], query)),
                                 "entity": {"order": row["order"], "vector": row["vector"]}})
        finally:
            iterator.close()
        return sorted(hits, key=lambda hit: -hit["distance"])

    # -- configuration and persistence ---------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {"dim": self._dim, "uri": self.uri, "collection": self.collection, "index_type": self.index_type,
                "M": self.M, "ef_construction": self.ef_construction, "ef_search": self.ef_search,
                "nlist": self.nlist, "nprobe": self.nprobe, "timeout": self.timeout, "consistency": self.consistency}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MilvusIndex:
        return cls(**config)  # a token is never saved: pass it again, or set it in the URI's environment

    def bind_model(self, model: Mapping[str, Any] | None) -> None:
        """Records the model on the collection at the first save; ModelMismatchError if another one is there."""
        if not model or self._dim is None:
            return
        recorded = self.model()
        if recorded is None:
            self._client.alter_collection_properties(self.collection, {MODEL_PROPERTY: json.dumps(dict(model))})
        elif {k: str(v) for k, v in recorded.items()} != {k: str(v) for k, v in dict(model).items()}:
            raise storage.ModelMismatchError(
                f"The collection {self.collection!r} at {self.uri} holds vectors of model {recorded}; "
                f"these come from {dict(model)}. Use another collection for another model."
            )

    def model(self) -> dict | None:
        """The model recorded on the collection (None before the first save)."""
        if self._dim is None:
            return None
        properties = self._client.describe_collection(self.collection).get("properties") or {}
        return json.loads(properties[MODEL_PROPERTY]) if MODEL_PROPERTY in properties else None

    def write_files(self, data_dir: str) -> dict[str, Any]:
        """The manifest fields: the collection's address and config; no data files (the engine has them)."""
        return {"backend": self.name, "config": self.get_config(), "dim": self._dim, "count": len(self),
                "state": {"next_order": 0, "live": True}}

    def save(self, directory: str, model: Mapping[str, Any] | None = None) -> dict:
        self.bind_model(model)
        return super().save(directory, model)

    @classmethod
    def _load_files(cls, manifest: Mapping[str, Any], data_dir: str) -> MilvusIndex:
        config = manifest.get("config")
        if not isinstance(config, Mapping):
            raise storage.IndexFileError(f"The manifest in {data_dir} has config={config!r}; expected a JSON object.")
        try:
            index = cls(**{key: value for key, value in config.items() if key != "dim"})
        except (TypeError, ValueError) as error:
            raise storage.IndexFileError(f"The manifest's milvus config is not usable: {error}") from None
        if manifest.get("dim") is not None and index.dim not in (None, manifest["dim"]):
            raise storage.IndexFileError(f"The collection {index.collection!r} holds dim={index.dim} vectors; "
                                         f"the manifest says dim={manifest['dim']}.")
        if manifest.get("dim") is not None and index.dim is None:
            raise storage.IndexFileError(f"The collection {index.collection!r} is gone from {index.uri}; the "
                                         f"manifest says it held {manifest.get('count')} vectors.")
        if manifest.get("model"):
            index.bind_model(manifest["model"])
        return index

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"MilvusIndex(uri={self.uri!r}, collection={self.collection!r}, index_type={self.index_type})"
