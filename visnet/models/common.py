"""Pieces every architecture shares: the trunk call and the embedding head."""

from __future__ import annotations

import keras
from keras import layers

from visnet.backbones import build_backbone


def trunk(inputs, backbone: str, weights, trainable, remove_top: int, options: dict | None):
    """Applies a backbone (as a nested model named `backbone`) to `inputs`."""
    model = build_backbone(backbone, tuple(inputs.shape[1:]), weights=weights, trainable=trainable,
                           remove_top=remove_top, **(options or {}))
    model.name = "backbone"
    return model(inputs)


POOLINGS = ("avg", "max", "avgmax", "flatten")


def embedding_head(features, embedding_dim: int, dropout: float = 0.0, pooling: str = "avg", name: str = "embedding"):
    """Pool (if a feature map), dropout, a linear projection to `embedding_dim`, L2 normalisation.

    `pooling`: `avg` (global average), `max`, `avgmax` (both, concatenated) or `flatten` (keeps the
    spatial layout of the last feature map, as HOG's cell grid does).
    """
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1. Received: embedding_dim={embedding_dim}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
    x = features
    if len(x.shape) == 4:
        if pooling == "avg":
            x = layers.GlobalAveragePooling2D(name="pool")(x)
        elif pooling == "max":
            x = layers.GlobalMaxPooling2D(name="pool")(x)
        elif pooling == "avgmax":
            x = layers.Concatenate(name="pool")([layers.GlobalAveragePooling2D(name="avg_pool")(x),
                                                 layers.GlobalMaxPooling2D(name="max_pool")(x)])
        else:
            x = layers.Flatten(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(embedding_dim, name="projection")(x)
    # float32 output, also under mixed precision: distances and losses need it.
    return layers.UnitNormalization(name=name, dtype="float32")(x)


def image_input(input_shape) -> keras.KerasTensor:
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3). Received: input_shape={tuple(input_shape)}")
    return keras.Input(tuple(input_shape), name="image")


def embedding_model(model: keras.Model) -> keras.Model:
    """The image -> embedding part of a model (training heads and their extra inputs dropped)."""
    image = next((t for t in model.inputs if t.name.split(":")[0] == "image"), model.inputs[0])
    return keras.Model(image, model.get_layer("embedding").output, name=model.name)
