"""A classifier of cosine similarities to learned class proxies, for normalised-softmax training."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="visnet")
class CosineClassifier(keras.layers.Layer):
    """Cosine similarity of each (L2-normalised) embedding to each class proxy.

    Args:
        classes: int. Number of training classes (one proxy each).

    Input (batch, d) -> output (batch, classes) in [-1, 1]. Used only while training (the
    proxies are thrown away with the head); `NormSoftmaxLoss` turns the similarities into a
    tempered softmax.

    Reference: Zhai & Wu, "Classification is a Strong Baseline for Deep Metric Learning", BMVC 2019.
    """

    def __init__(self, classes: int, **kwargs):
        super().__init__(**kwargs)
        if classes < 2:
            raise ValueError(f"classes must be >= 2. Received: classes={classes}")
        self.classes = classes

    def build(self, input_shape):
        self.proxies = self.add_weight(name="proxies", shape=(input_shape[-1], self.classes),
                                       initializer="glorot_uniform")
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        x = x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-12)
        w = ops.cast(self.proxies, "float32")
        w = w / ops.sqrt(ops.sum(ops.square(w), axis=0, keepdims=True) + 1e-12)
        return ops.matmul(x, w)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.classes)

    def get_config(self):
        config = super().get_config()
        config["classes"] = self.classes
        return config
