"""Prototypical network (Snell, Swersky & Zemel 2017): an embedding trained on N-way K-shot episodes."""

from __future__ import annotations

import keras
from keras import layers

from visnet.models.common import image_input, trunk


def build_protonet(
    input_shape=(128, 96, 3),
    embedding_dim: int = 0,
    backbone: str = "conv4",
    weights: str | None = None,
    trainable: str | int = "all",
    remove_top: int = 0,
    backbone_options: dict | None = None,
) -> keras.Model:
    """Backbone -> flatten (the paper's embedding), or -> Dense(embedding_dim) when it is > 0.

    The embedding is not normalised: the prototypical loss works on squared Euclidean distances.
    """
    inputs = image_input(input_shape)
    x = layers.Flatten(name="flatten")(trunk(inputs, backbone, weights, trainable, remove_top, backbone_options))
    if embedding_dim:
        x = layers.Dense(embedding_dim, name="projection")(x)
    outputs = layers.Activation("linear", name="embedding", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="protonet")
