"""Running any embedder over a dataset's images through the tf.data pipeline."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from visnet.data.image_spec import ImageSpec
from visnet.data.records import Dataset, SkipReport

Embedder = Callable[[np.ndarray], np.ndarray]


def embed_dataset(
    embedder: Embedder,
    dataset: Dataset,
    spec: ImageSpec | None = None,
    batch_size: int = 64,
    progress: bool = True,
    description: str = "embedding",
) -> tuple[Dataset, np.ndarray]:
    """Embeds every image of `dataset`.

    Args:
        embedder: callable from a batch of images (numpy, as the pipeline's `spec` prepares
            them) to a (batch, dim) array. A Keras model's `predict_on_batch` works.
        dataset: `Dataset`.
        spec: `ImageSpec` or None. Defaults to `embedder.image_spec`.
        batch_size: int.
        progress: bool. Show a progress bar.
        description: str. Progress bar label.

    Returns:
        The records that were embedded (images that fail to decode are skipped and added to
        the report) and their float32 vectors, row i for record i.
    """
    from tqdm import tqdm

    from visnet.data.pipeline import image_dataset

    spec = spec or getattr(embedder, "image_spec", None)
    if spec is None:
        raise ValueError("embed_dataset() needs an ImageSpec: pass spec=, or give the embedder an image_spec.")
    pipeline = image_dataset(dataset.paths, None, spec, batch_size=batch_size, ignore_errors=True)
    vectors, indices = [], []
    with tqdm(total=len(dataset), desc=description, unit="img", disable=not progress) as bar:
        for batch in pipeline:
            images = batch["image"].numpy()
            out = np.asarray(embedder(images), dtype=np.float32)
            if out.ndim != 2 or len(out) != len(images):
                raise ValueError(
                    f"The embedder returned shape {out.shape} for a batch of {len(images)} images; "
                    "expected (batch, dim)."
                )
            vectors.append(out)
            indices.append(batch["index"].numpy())
            bar.update(len(images))
    kept = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    report = SkipReport(dataset.report.examples).extend(dataset.report)
    lost = np.setdiff1d(np.arange(len(dataset)), kept)
    for i in lost:
        report.add("failed to decode", dataset.records[i].path)
    records = [dataset.records[i] for i in kept]
    out = Dataset(records, name=dataset.name, report=report, allow_empty=True)
    if not len(out):
        raise ValueError(f"No image of {dataset.name} could be embedded ({report}).")
    return out, np.concatenate(vectors)


def embed_parts(predict, records, spec, progress: bool = True, description: str = "embedding"):
    """(records kept, [arrays]) of `records`, where `predict` maps a batch of images to a list of
    (batch, width) arrays (a model's outputs); unreadable photos are skipped (and counted in the
    kept records' report)."""
    widths: list[int] = []

    def joined(images):
        parts = [np.asarray(part) for part in predict(images)]
        widths[:] = [part.shape[1] for part in parts]
        return np.concatenate(parts, axis=1)

    kept, out = embed_dataset(joined, records, spec=spec, progress=progress, description=description)
    return kept, np.split(out, np.cumsum(widths)[:-1], axis=1)
