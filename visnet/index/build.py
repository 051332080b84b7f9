"""Fill a `Gallery` from dataset records through any embedder of encoded images (no TensorFlow here).

    gallery, skipped = build_gallery(ExportedModel("models/shop").embed, dataset.records, "balltree")
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from visnet.index.gallery import Gallery


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, bool)) or (isinstance(value, float) and math.isfinite(value))


def record_item(record: Any) -> dict[str, Any]:
    """A dataset `Record` as a catalogue item: id, image path, label, text, and its other columns as labels."""
    labels = {key: value for key, value in (record.meta or {}).items() if _plain(value)}
    if record.item_id:
        labels.setdefault("item_id", record.item_id)
    # The absolute path: the search service may run from another directory.
    return {"id": record.id, "image": os.path.abspath(record.path), "label": record.label, "text": record.text,
            "labels": labels}


def build_gallery(embed: Callable[[list[bytes]], tuple[np.ndarray, np.ndarray]], records: Sequence[Any],
                  index: Any = "brute", batch_size: int = 64, progress: bool = True) -> tuple[Gallery, list[str]]:
    """Embeds every record's image file and adds it to a new gallery.

    Args:
        embed: callable. Encoded images -> (embeddings (n, d), valid (n,)), e.g. `ExportedModel.embed`.
        records: sequence of `visnet.data.records.Record`.
        index: an index name, config dict or instance (`visnet.index.get`).
        batch_size: int. Images per call of `embed`.
        progress: bool. Show a progress bar.

    Returns:
        (gallery, skipped): `skipped` lists "id: reason" for files that could not be read or that
        the model flagged as invalid; they are left out, the rest is indexed.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    if not len(records):
        raise ValueError("There is nothing to index: the dataset has no records.")
    from tqdm.auto import tqdm

    gallery, skipped = Gallery(index), []
    bar = tqdm(total=len(records), unit="img", desc="indexing", disable=not progress)
    for start in range(0, len(records), batch_size):
        batch, data = [], []
        for record in records[start : start + batch_size]:
            try:
                with open(record.path, "rb") as handle:
                    data.append(handle.read())
                batch.append(record)
            except OSError as error:
                skipped.append(f"{record.id}: {error.strerror or error}")
        if batch:
            vectors, valid = embed(data)
            kept = [i for i in range(len(batch)) if valid[i]]
            skipped += [f"{batch[i].id}: not a usable image" for i in range(len(batch)) if not valid[i]]
            if kept:
                gallery.add_many([record_item(batch[i]) for i in kept], np.asarray(vectors)[kept])
        bar.update(len(records[start : start + batch_size]))
    bar.close()
    if not len(gallery):
        raise ValueError(f"None of the {len(records)} images could be indexed (first problem: {skipped[0]}).")
    return gallery, skipped
