"""Contrastive loss on pairs (Hadsell, Chopra & LeCun 2006), as the Navee report writes it."""

from __future__ import annotations

import keras
from keras import ops

from visnet.losses.distances import DISTANCES, pairwise_distances, row_distances

LAYOUTS = ("halves", "all-pairs")


@keras.saving.register_keras_serializable(package="visnet")
class ContrastiveLoss(keras.losses.Loss):
    """`y * d + (1 - y) * max(0, m - d)`, y = 1 for a pair of the same class.

    Args:
        margin: float. m: negative pairs closer than this are pushed apart.
        distance: str. `euclidean` or `squared`.
        layout: str. `halves`: the batch is [first images; second images] and row i pairs with
            row i + B/2 (what `PairSampler` batches give); `all-pairs`: every pair of distinct
            rows of the batch (for P x K batches).

    `y_true` holds the class labels of the batch; y is derived from them.

    Reference: Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping", CVPR 2006.
    """

    def __init__(self, margin: float = 1.0, distance: str = "euclidean", layout: str = "halves",
                 name: str = "contrastive_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if margin <= 0:
            raise ValueError(f"margin must be > 0. Received: margin={margin}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}. Received: distance={distance!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}. Received: layout={layout!r}")
        self.margin, self.distance, self.layout = margin, distance, layout

    def call(self, y_true, y_pred):
        embeddings = ops.cast(y_pred, "float32")
        labels = ops.reshape(y_true, (-1,))
        if self.layout == "halves":
            first, second = ops.split(embeddings, 2, axis=0)
            label_a, label_b = ops.split(labels, 2, axis=0)
            d = row_distances(first, second, self.distance)
            same = ops.cast(ops.equal(label_a, label_b), "float32")
            return ops.mean(same * d + (1.0 - same) * ops.relu(self.margin - d))
        d = pairwise_distances(embeddings, distance=self.distance)
        same = ops.cast(ops.equal(ops.expand_dims(labels, 0), ops.expand_dims(labels, 1)), "float32")
        size = ops.shape(labels)[0]
        off_diagonal = 1.0 - ops.eye(size, dtype="float32")
        losses = (same * d + (1.0 - same) * ops.relu(self.margin - d)) * off_diagonal
        return ops.sum(losses) / ops.maximum(ops.sum(off_diagonal), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, distance=self.distance, layout=self.layout)
        return config
