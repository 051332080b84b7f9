"""Normalised softmax: cross-entropy over cosine similarities to class proxies, with a temperature."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="visnet")
class NormSoftmaxLoss(keras.losses.Loss):
    """`-log softmax(scale * cos(z, w_y))`: pulls each embedding toward its class proxy.

    Args:
        scale: float. Inverse temperature applied to the cosine similarities (16 by default;
            Zhai & Wu use 1/0.05 = 20).

    `y_true` holds integer class ids, `y_pred` the cosine similarities from
    `visnet.layers.CosineClassifier`. Train with class-balanced P x K batches.

    Reference: Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019;
    Wang et al., "NormFace", 2017.
    """

    def __init__(self, scale: float = 16.0, name: str = "normsoftmax_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if scale <= 0:
            raise ValueError(f"scale must be > 0. Received: scale={scale}")
        self.scale = scale

    def call(self, y_true, y_pred):
        logits = self.scale * ops.cast(y_pred, "float32")
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        log_probs = logits - ops.logsumexp(logits, axis=-1, keepdims=True)
        return -ops.mean(ops.take_along_axis(log_probs, ops.expand_dims(labels, -1), axis=-1))

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config
