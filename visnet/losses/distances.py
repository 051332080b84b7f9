"""Pairwise distances in `keras.ops`, with gradients that stay finite at zero distance."""

from __future__ import annotations

from keras import ops

DISTANCES = ("euclidean", "squared")


def pairwise_squared(x, y=None):
    """Squared Euclidean distances between rows of `x` and rows of `y` (default `x`), >= 0."""
    y = x if y is None else y
    x_sq = ops.sum(ops.square(x), axis=-1)
    y_sq = ops.sum(ops.square(y), axis=-1)
    squared = ops.expand_dims(x_sq, -1) + ops.expand_dims(y_sq, 0) - 2.0 * ops.matmul(x, ops.transpose(y))
    return ops.maximum(squared, 0.0)


def safe_sqrt(squared, epsilon: float = 1e-12):
    """sqrt whose gradient at 0 is 0 instead of infinity (then NaN through the chain rule)."""
    positive = ops.greater(squared, epsilon)
    root = ops.sqrt(ops.where(positive, squared, ops.ones_like(squared)))
    return ops.where(positive, root, ops.zeros_like(squared))


def pairwise_distances(x, y=None, distance: str = "euclidean"):
    """Euclidean (`euclidean`) or squared Euclidean (`squared`) distances between rows."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}. Received: distance={distance!r}")
    squared = pairwise_squared(x, y)
    return safe_sqrt(squared) if distance == "euclidean" else squared


def row_distances(x, y, distance: str = "euclidean"):
    """Distance between row i of `x` and row i of `y`."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}. Received: distance={distance!r}")
    squared = ops.sum(ops.square(x - y), axis=-1)
    return safe_sqrt(squared) if distance == "euclidean" else squared
