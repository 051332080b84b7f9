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


def check_size(image_size, name: str = "image_size") -> tuple[int, int]:
    """(height, width) from a pair of positive integers, or a ValueError naming the value."""
    if (isinstance(image_size, (str, bytes)) or not hasattr(image_size, "__len__") or len(image_size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in image_size)):
        raise ValueError(f"{name} must be (height, width), two positive integers. Received: {name}={image_size!r}")
    return int(image_size[0]), int(image_size[1])


def check_int(value, name: str, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false. Received: {name}={value!r}")
    return bool(value)
