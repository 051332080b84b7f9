"""Triplet capsule network (Kınlı, Özcan & Kıraç, "Fashion Image Retrieval with Capsule Networks", 2019)."""

from __future__ import annotations

import keras
from keras import layers

from visnet.layers import ClassCapsules, PrimaryCapsules
from visnet.models.common import image_input

FEATURE_BLOCKS = ("sc", "rc")


def _conv_unit(x, filters: int, strides: int, name: str):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=0.1, name=f"{name}_lrelu")(x)


def _features(x, block: str, filters):
    for n, f in enumerate(filters, start=1):
        if block == "sc":  # stacked convolutions
            x = _conv_unit(x, f, 2, f"sc{n}a")
            x = _conv_unit(x, f, 1, f"sc{n}b")
        else:  # the same units connected as residual blocks
            # Average-pool then 1x1 conv (the ResNet-D shortcut): a strided 1x1 convolution on a
            # large feature map crashes TensorFlow 2.21's oneDNN kernels in training.
            shortcut = layers.AveragePooling2D(2, padding="same", name=f"rc{n}_shortcut_pool")(x)
            shortcut = layers.Conv2D(f, 1, use_bias=False, name=f"rc{n}_shortcut")(shortcut)
            y = _conv_unit(x, f, 2, f"rc{n}a")
            y = _conv_unit(y, f, 1, f"rc{n}b")
            x = layers.Add(name=f"rc{n}_add")([shortcut, y])
    return x


def build_capsule(
    input_shape=(128, 96, 3),
    embedding_dim: int = 128,
    features: str = "rc",
    filters=(32, 64, 128),
    primary_capsules: int = 16,
    primary_dim: int = 8,
    capsule_dim: int = 8,
    routings: int = 3,
) -> keras.Model:
    """Feature block -> primary capsules -> class capsules (dynamic routing) -> flattened, L2-normalised.

    Args:
        input_shape: (height, width, 3).
        embedding_dim: int. The embedding is the class capsules' outputs, flattened:
            embedding_dim / capsule_dim capsules of `capsule_dim`.
        features: str. `sc` (stacked convolutions with LeakyReLU + batch norm) or `rc` (the same
            as residual blocks), the thesis's two feature-extraction recipes.
        filters: sequence of int. Filters of each stage (each halves the resolution).
        primary_capsules, primary_dim: capsule types per position and their length.
        capsule_dim: int. Length of each class capsule.
        routings: int. Routing-by-agreement iterations.
    """
    if features not in FEATURE_BLOCKS:
        raise ValueError(f"features must be one of {FEATURE_BLOCKS}. Received: features={features!r}")
    if embedding_dim % capsule_dim:
        raise ValueError(f"embedding_dim must be a multiple of capsule_dim. Received: {embedding_dim}, {capsule_dim}")
    scale = 2 ** (len(filters) + 1)
    if min(input_shape[0], input_shape[1]) < scale:
        raise ValueError(f"The capsule network with {len(filters)} stages needs images of at least "
                         f"{scale}x{scale}. Received: {input_shape[0]}x{input_shape[1]}")
    inputs = image_input(input_shape)
    x = _features(inputs, features, filters)
    x = PrimaryCapsules(primary_capsules, primary_dim, kernel_size=3, strides=2, name="primary_capsules")(x)
    x = ClassCapsules(embedding_dim // capsule_dim, capsule_dim, routings, name="class_capsules")(x)
    x = layers.Flatten(name="capsule_vectors")(x)
    outputs = layers.UnitNormalization(name="embedding", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="capsule")
