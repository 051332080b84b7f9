"""What baseline embedders share: turning batches into uint8 pixels and L2-normalising vectors."""

from __future__ import annotations

import numpy as np


def to_uint8(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Checks a (batch, height, width, 3) array of pixels in [0, 255] and rounds it to uint8."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or tuple(images.shape[1:3]) != tuple(size):
        raise ValueError(
            f"Expected images of shape (batch, {size[0]}, {size[1]}, 3). Received shape {images.shape}"
        )
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
