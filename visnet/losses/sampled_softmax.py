"""Sampled softmax: cross-entropy over the positive word and a few sampled negatives."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="visnet")
class SampledSoftmaxLoss(keras.losses.Loss):
    """`-log softmax(scale * scores)[positive]` over the sampled candidates of each image.

    Args:
        negatives: int. Negatives sampled per positive (the `WordScores` head draws them).
        close_negatives: int. How many of them are the positive's nearest words.
        scale: float. Inverse temperature of the softmax over cosine scores.

    `y_pred` holds the scores of [positive, negatives...] from `visnet.layers.WordScores`
    (accidental hits already masked) and `y_true` the column of the positive (0). With every
    vocabulary word among the candidates this is the full softmax cross-entropy of
    Joulin et al. 2015 (eq. 2.2 of Corbière's report); with a few, its negative-sampling estimate.
    """

    def __init__(self, negatives: int = 100, close_negatives: int = 0, scale: float = 16.0,
                 name: str = "sampled_softmax_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if negatives < 1:
            raise ValueError(f"negatives must be >= 1. Received: negatives={negatives}")
        if not 0 <= close_negatives <= negatives:
            raise ValueError(f"close_negatives must be in [0, negatives]. Received: close_negatives={close_negatives}")
        if scale <= 0:
            raise ValueError(f"scale must be > 0. Received: scale={scale}")
        self.negatives, self.close_negatives, self.scale = negatives, close_negatives, scale

    def call(self, y_true, y_pred):
        logits = self.scale * ops.cast(y_pred, "float32")
        column = ops.cast(ops.reshape(y_true, (-1, 1)), "int32")
        log_probs = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
        return -ops.mean(ops.take_along_axis(log_probs, column, axis=-1))

    def get_config(self):
        config = super().get_config()
        config.update(negatives=self.negatives, close_negatives=self.close_negatives, scale=self.scale)
        return config
