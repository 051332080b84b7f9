"""Retrieval indexes: product ids and vectors in, nearest ids out (NumPy, scikit-learn, SQLite).

`visnet.index.get("balltree", leaf_size=20)`; names: `brute` (exact, one matrix product),
`balltree` (exact, scikit-learn ball tree), `faiss` (approximate, `kind="hnsw"` or `"ivf"`;
the optional `visnet[faiss]` extra) — `get("faiss-hnsw")` is short for
`get("faiss", kind="hnsw")`. Every index has the `VectorIndex` interface and saves to a
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
from visnet.index.storage import IndexFileError, ModelMismatchError
from visnet.registry import Registry

indexes = Registry("index")
indexes.register(BruteForceIndex.name)(BruteForceIndex)
indexes.register(BallTreeIndex.name)(BallTreeIndex)
indexes.register(FaissIndex.name)(FaissIndex)


def get(identifier: Any, **kwargs: Any) -> VectorIndex:
    """An index from a name, a config dict (`{"name": ..., **options}`) or an instance.

    Args:
        identifier: "brute", "balltree", "faiss", "faiss-hnsw", "faiss-ivf", a dict or a VectorIndex.
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
    index = indexes.get(identifier, **kwargs)
    if not isinstance(index, VectorIndex):
        raise TypeError(f"Expected an index name, config dict or VectorIndex. Received: {identifier!r}")
    return index


__all__ = [
    "BallTreeIndex", "BruteForceIndex", "Catalogue", "FaissIndex", "Gallery", "IndexFileError",
    "ModelMismatchError", "VectorIndex", "get", "indexes",
]
