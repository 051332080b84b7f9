"""Pieces every architecture shares: the trunk call, the embedding head, and fixed pathways side by
side with a learned embedding (HOG, ImageNet classes)."""

from __future__ import annotations

import math
import numbers

import keras
from keras import layers

from visnet.backbones import build_backbone


def trunk(inputs, backbone: str, weights, trainable, remove_top: int, options: dict | None):
    """Applies a backbone (as a nested model named `backbone`) to `inputs`."""
    model = build_backbone(backbone, tuple(inputs.shape[1:]), weights=weights, trainable=trainable,
                           remove_top=remove_top, **(options or {}))
    model.name = "backbone"
    return model(inputs)


#: How far each input normalisation is from [0, 255] pixels (what HOG and the ImageNet trunk take).
PIXEL_SCALE = {"none": 1.0, "unit": 255.0}


def check_share(share, name: str = "share") -> float:
    """`share` as a float in (0, 1); anything else is an error naming it."""
    if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0 < share < 1:
        raise ValueError(f"{name} must be a number in (0, 1). Received: {name}={share!r}")
    return float(share)


def pixel_scale(normalization: str, what: str) -> float:
    """The factor from a model's normalised input back to [0, 255] pixels; `what` names what needs them."""
    if normalization not in PIXEL_SCALE:
        raise ValueError(f"{what} needs pixels in [0, 255] or [0, 1]; a model whose input is normalised as "
                         f"{normalization!r} cannot feed it. Use a trunk with 'none' or 'unit' normalisation "
                         f"(efficientnet-lite0/1/2, resnet18, koch, conv4, tiny).")
    return PIXEL_SCALE[normalization]


def side_by_side(parts, shares, name: str = "embedding"):
    """Unit-length `parts` (tensors) concatenated, each scaled by the square root of its share of
    the squared distance (`shares` sum to 1), at unit length."""
    scaled = [layers.Rescaling(math.sqrt(share), name=f"{part_name}_weight")(part)
              for (part_name, part), share in zip(parts, shares, strict=True)]
    # Every part is a unit vector and the shares sum to 1, so the concatenation already has norm 1;
    # the final normalisation names the output and guards against rounding.
    return layers.UnitNormalization(name=name, dtype="float32")(layers.Concatenate(name="fused")(scaled))


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
