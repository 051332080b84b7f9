"""Triplet losses with online mining: FaceNet's triplet loss and VisNet's hinge."""

from __future__ import annotations

import keras
from keras import ops

from visnet.losses.distances import DISTANCES, pairwise_distances, row_distances
from visnet.losses.mining import miners, triplet_losses

MININGS = ("batch-all", "batch-hard", "semi-hard", "top-k", "none")


@keras.saving.register_keras_serializable(package="visnet")
class TripletLoss(keras.losses.Loss):
    """`[d(a, p) - d(a, n) + margin]+` over the triplets a miner picks in the batch.

    Args:
        margin: float. The margin m (> 0).
        distance: str. `euclidean` (FaceNet, VisNet) or `squared` (the capsule thesis).
        mining: str. `batch-all`, `batch-hard`, `semi-hard`, `top-k` (see
            `visnet.losses.mining`), or `none`: the batch is laid out as
            [anchors; positives; negatives] in thirds, one explicit triplet per row.
        top_k: float. Fraction of the largest triplet losses kept by `top-k` mining.

    `y_true` holds the class labels of the batch, `y_pred` the embeddings. With `batch-all` the
    loss averages the triplets whose loss is positive (Hermans et al.'s BA+); the other miners
    average every mined triplet. A batch with no valid triplet gives 0.

    Example:

    >>> loss = TripletLoss(margin=0.2, mining="batch-hard")
    >>> # anchors 0..3 take (p, n) = (1, 2), (0, 2), (3, 1), (2, 1): losses .1, .2, .9, .1
    >>> round(float(loss([0, 0, 1, 1], [[0.0, 0.0], [0.1, 0.0], [0.2, 0.0], [1.0, 0.0]])), 4)
    0.325

    Reference: Schroff et al., "FaceNet", CVPR 2015; Hermans et al., "In Defense of the Triplet
    Loss for Person Re-Identification", 2017.
    """

    def __init__(self, margin: float = 0.2, distance: str = "euclidean", mining: str = "semi-hard",
                 top_k: float = 0.2, name: str = "triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if margin <= 0:
            raise ValueError(f"margin must be > 0. Received: margin={margin}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}. Received: distance={distance!r}")
        if mining not in MININGS:
            raise ValueError(f"mining must be one of {MININGS}. Received: mining={mining!r}")
        if not 0 < top_k <= 1:
            raise ValueError(f"top_k must be in (0, 1]. Received: top_k={top_k}")
        self.margin, self.distance, self.mining, self.top_k = margin, distance, mining, top_k

    def call(self, y_true, y_pred):
        embeddings = ops.cast(y_pred, "float32")
        labels = ops.reshape(y_true, (-1,))
        if self.mining == "none":
            anchor, positive, negative = ops.split(embeddings, 3, axis=0)
            losses = ops.relu(row_distances(anchor, positive, self.distance)
                              - row_distances(anchor, negative, self.distance) + self.margin)
            return ops.mean(losses)
        distances = pairwise_distances(embeddings, distance=self.distance)
        mask = miners.lookup(self.mining)(distances, labels, self.margin, self.top_k)
        losses = ops.relu(triplet_losses(distances, self.margin)) * mask
        if self.mining == "batch-all":
            count = ops.sum(ops.cast(ops.greater(losses, 1e-16), "float32"))
        else:
            count = ops.sum(mask)
        return ops.sum(losses) / ops.maximum(count, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, distance=self.distance, mining=self.mining, top_k=self.top_k)
        return config


@keras.saving.register_keras_serializable(package="visnet")
class HingeLoss(TripletLoss):
    """VisNet's hinge loss `max(0, g + D(q, p) - D(q, n))` on Euclidean distances.

    The triplet loss with the gap g as margin (default 1, as in Wang et al.'s deep ranking).

    Args:
        gap: float. The gap g.
        mining: str. As in `TripletLoss`; `none` for explicit (q, p, n) triplets.

    Reference: Wang et al., "Learning Fine-grained Image Similarity with Deep Ranking", CVPR
    2014; Shankar et al., "Deep Learning based Large Scale Visual Recommendation and Search for
    E-Commerce" (VisNet), 2017.
    """

    def __init__(self, gap: float = 1.0, mining: str = "semi-hard", top_k: float = 0.2,
                 name: str = "hinge_loss", **kwargs):
        if "margin" in kwargs:  # the gap is the hinge's margin: accept either name
            gap = kwargs.pop("margin")
        distance = kwargs.pop("distance", "euclidean")
        if distance != "euclidean":
            raise ValueError(f"VisNet's hinge uses Euclidean distances. Received: distance={distance!r}")
        super().__init__(margin=gap, distance="euclidean", mining=mining, top_k=top_k, name=name, **kwargs)
        self.gap = gap

    def get_config(self):
        config = super().get_config()
        config["gap"] = config.pop("margin")
        config.pop("distance")
        return config
