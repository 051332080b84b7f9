"""VisNet (Shankar et al., Flipkart 2017): a deep CNN path plus two shallow paths on down-sampled input.

The deep path sees object-level semantics; the shallow paths, on 4x and 8x down-sampled copies
of the image, keep the low-level colour and texture cues that make two products look alike.
"""

from __future__ import annotations

import keras
from keras import layers

from visnet.models.common import image_input, trunk


def _shallow_path(inputs, factor: int, filters: int, pool: int, pool_stride: int, name: str):
    x = layers.AveragePooling2D(factor, padding="same", name=f"{name}_downsample")(inputs)
    x = layers.Conv2D(filters, 8, strides=4, padding="same", activation="relu", name=f"{name}_conv")(x)
    x = layers.MaxPooling2D(pool, strides=pool_stride, padding="same", name=f"{name}_pool")(x)
    return layers.Flatten(name=f"{name}_flatten")(x)


def build_visnet(
    input_shape=(128, 96, 3),
    embedding_dim: int = 512,
    backbone: str = "vgg16",
    weights: str | None = None,
    trainable: str | int = "all",
    remove_top: int = 0,
    backbone_options: dict | None = None,
    deep_dim: int = 1024,
    shallow_filters: int = 96,
    dropout: float = 0.0,
) -> keras.Model:
    """VisNet deep ranking network.

    Args:
        input_shape: (height, width, 3). At least 32x32.
        embedding_dim: int. Size of the final L2-normalised embedding (Flipkart used 4096).
        backbone: str. The deep path's trunk (VGG16 in the paper).
        deep_dim: int. Width of the deep path's two fully connected layers (4096 in the paper,
            where they are VGG16's fc6/fc7).
        shallow_filters: int. Filters of each shallow path's 8x8 convolution (96 in the paper).
        dropout: float. Dropout after each deep fully connected layer.

    Deep path: trunk -> pool -> Dense(deep_dim) x 2 -> L2. Shallow paths: 4x and 8x average
    down-sampling -> conv 8x8/4 -> max pool (7/4 and 3/2) -> flatten, concatenated -> L2.
    Both are concatenated -> Dense(embedding_dim) -> L2.

    Reference: Shankar et al., "Deep Learning based Large Scale Visual Recommendation and Search
    for E-Commerce", 2017; Wang et al., "Learning Fine-grained Image Similarity with Deep
    Ranking", CVPR 2014.
    """
    if min(input_shape[0], input_shape[1]) < 32:
        raise ValueError(f"VisNet needs images of at least 32x32. Received: {input_shape[0]}x{input_shape[1]}")
    inputs = image_input(input_shape)
    deep = trunk(inputs, backbone, weights, trainable, remove_top, backbone_options)
    deep = layers.GlobalAveragePooling2D(name="deep_pool")(deep)
    for n in (1, 2):
        deep = layers.Dense(deep_dim, activation="relu", name=f"deep_fc{n}")(deep)
        if dropout:
            deep = layers.Dropout(dropout, name=f"deep_dropout{n}")(deep)
    deep = layers.UnitNormalization(name="deep_l2")(deep)
    shallow = layers.Concatenate(name="shallow_concat")([
        _shallow_path(inputs, 4, shallow_filters, 7, 4, "shallow4"),
        _shallow_path(inputs, 8, shallow_filters, 3, 2, "shallow8"),
    ])
    shallow = layers.UnitNormalization(name="shallow_l2")(shallow)
    x = layers.Concatenate(name="paths")([deep, shallow])
    x = layers.Dense(embedding_dim, name="projection")(x)
    outputs = layers.UnitNormalization(name="embedding", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="visnet")
