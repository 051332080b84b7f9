"""Prototypical loss (Snell, Swersky & Zemel 2017) on an episode laid out as a batch."""

from __future__ import annotations

import keras
from keras import ops

from visnet.losses.distances import pairwise_squared


@keras.saving.register_keras_serializable(package="visnet")
class PrototypicalLoss(keras.losses.Loss):
    """Softmax over negative squared distances from each query to the class prototypes.

    Args:
        shots: int. In each class of the batch, the first `shots` images (in batch order) are
            the support set and the rest are queries. A P x K batch from `PKSampler` with
            K = shots + queries is a P-way episode.

    The prototype of a class is the mean of its support embeddings. A class with no query
    image in the batch still competes as a prototype; a batch with no query gives 0.

    Reference: Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
    """

    def __init__(self, shots: int = 1, name: str = "prototypical_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if shots < 1:
            raise ValueError(f"shots must be >= 1. Received: shots={shots}")
        self.shots = shots

    def call(self, y_true, y_pred):
        embeddings = ops.cast(y_pred, "float32")
        labels = ops.reshape(y_true, (-1,))
        size = ops.shape(labels)[0]
        same = ops.cast(ops.equal(ops.expand_dims(labels, 0), ops.expand_dims(labels, 1)), "float32")
        earlier = ops.tril(ops.ones((size, size), "float32"), k=-1)  # [i, j] = 1 if j < i
        rank = ops.sum(same * earlier, axis=1)  # occurrences of i's class before i
        support = ops.cast(ops.less(rank, self.shots), "float32")
        first = ops.cast(ops.equal(rank, 0.0), "float32")  # one row stands for each class
        members = same * ops.expand_dims(support, 0)  # [class of row r, support row j]
        prototypes = ops.matmul(members, embeddings) / ops.maximum(ops.sum(members, axis=1, keepdims=True), 1.0)
        logits = -pairwise_squared(embeddings, prototypes)  # [query i, class row r]
        logits = ops.where(ops.expand_dims(first, 0) > 0, logits, -1e9)
        target = same * ops.expand_dims(first, 0)  # one-hot on the row standing for i's class
        log_probs = logits - ops.logsumexp(logits, axis=1, keepdims=True)
        per_row = -ops.sum(target * log_probs, axis=1)
        query = 1.0 - support
        return ops.sum(per_row * query) / ops.maximum(ops.sum(query), 1.0)

    def get_config(self):
        config = super().get_config()
        config["shots"] = self.shots
        return config
