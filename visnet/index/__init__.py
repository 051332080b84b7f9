"""Retrieval indexes: product ids and vectors in, nearest ids out (NumPy, scikit-learn, SQLite).

`visnet.index.get("balltree", leaf_size=20)`; names: `brute` (exact, one matrix product),
`balltree` (exact, scikit-learn ball tree), `faiss` (approximate, `kind="hnsw"` or `"ivf"`;
the optional `visnet[faiss]` extra) — `get("faiss-hnsw")` is short for
`get("faiss", kind="hnsw")`; `milvus` (Milvus Lite in a local file, or a Milvus server or
cluster by URI; the optional `visnet[milvus]` extra) — `get("milvus:PATH_OR_URI")`. Every index has the `VectorIndex` interface and saves to a
checksummed, atomically committed directory (`visnet.index.storage`). A `Gallery` keeps an
index and a SQLite `Catalogue` of product records in step for the search service.

Nothing here imports Keras or TensorFlow.
"""

from typing import Any

from visnet.index.balltree import BallTreeIndex
from visnet.index.base import VectorIndex
from visnet.index.brute import BruteForceIndex
from visnet.index.catalogue import Catalogue
from visnet.index.faiss_index import FaissIndex
from visnet.index.gallery import Gallery
from visnet.index.milvus_index import MilvusIndex
from visnet.index.storage import IndexFileError, ModelMismatchError
from visnet.registry import Registry

indexes = Registry("index")
indexes.register(BruteForceIndex.name)(BruteForceIndex)
indexes.register(BallTreeIndex.name)(BallTreeIndex)
indexes.register(FaissIndex.name)(FaissIndex)
indexes.register(MilvusIndex.name)(MilvusIndex)


def get(identifier: Any, **kwargs: Any) -> VectorIndex:
    """An index from a name, a config dict (`{"name": ..., **options}`) or an instance.

    Args:
        identifier: "brute", "balltree", "faiss", "faiss-hnsw", "faiss-ivf", "milvus", "milvus:URI"
            (a Milvus Lite file or a server URI), a dict or a VectorIndex.
        **kwargs: constructor options used with a name or dict.

    Example:

    >>> get("faiss-hnsw", M=16).get_config()["kind"]
    'hnsw'
    """
    if isinstance(identifier, dict):
        config = dict(identifier)
        if "name" not in config:
            raise ValueError(f"An index config dict needs a 'name' key. Received: {identifier!r}")
        identifier = config.pop("name")
        kwargs = {**config, **kwargs}
    if isinstance(identifier, str) and identifier.lower().startswith("faiss-"):
        identifier, kwargs = "faiss", {"kind": identifier[len("faiss-"):].lower(), **kwargs}
    if isinstance(identifier, str) and identifier.lower().startswith("milvus:"):
        identifier, kwargs = "milvus", {"uri": identifier[len("milvus:"):], **kwargs}
    index = indexes.get(identifier, **kwargs)
    if not isinstance(index, VectorIndex):
        raise TypeError(f"Expected an index name, config dict or VectorIndex. Received: {identifier!r}")
    return index


#: Galleries smaller than this search exactly (`brute`) by default; larger ones use `faiss-hnsw`.
#: Measured (README, "Retrieval index"): 128-d, one thread, brute takes 0.3 ms per query at 10k
#: and 4 ms at 100k, exact; HNSW stays under 1 ms at recall@10 >= 0.999 from 10k to 1M, but
#: costs a build and is approximate. The ball tree is exact but slower than brute at every size
#: in 128 dimensions, so it is never the default.
AUTO_THRESHOLD = 100_000


def choose_backend(size: int) -> str:
    """The default index for a gallery of `size` vectors: `brute` below `AUTO_THRESHOLD`, else `faiss-hnsw`
    (`brute` again, with a note on stderr, when faiss is not installed)."""
    if size < AUTO_THRESHOLD:
        return "brute"
    try:
        import faiss  # noqa: F401
    except ImportError:
        import sys

        print(f"note: {size:,} vectors would use faiss-hnsw, but faiss is not installed "
              "(pip install 'visnet[faiss]'); using exact brute-force search.", file=sys.stderr)
        return "brute"
    return "faiss-hnsw"


__all__ = [
    "AUTO_THRESHOLD", "BallTreeIndex", "BruteForceIndex", "Catalogue", "FaissIndex", "Gallery", "IndexFileError", "MilvusIndex",
    "ModelMismatchError", "VectorIndex", "choose_backend", "get", "indexes",
]
