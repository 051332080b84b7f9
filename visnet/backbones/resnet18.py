"""ResNet-18 (He et al. 2016), written here: keras.applications has no ResNet-18."""

from __future__ import annotations

import keras
from keras import layers


def _basic_block(x, filters: int, stride: int, name: str):
    shortcut = x
    x = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.Conv2D(filters, 3, 1, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(name=f"{name}_bn2")(x)
    if stride != 1 or shortcut.shape[-1] != filters:
        # ResNet-D shortcut (He et al., "Bag of Tricks", 2019): average-pool, then a 1x1 conv. The
        # original strided 1x1 conv crashes TensorFlow 2.21's oneDNN kernels in training once its
        # input map is large (64x48 and up).
        if stride != 1:
            shortcut = layers.AveragePooling2D(stride, padding="same", name=f"{name}_down_pool")(shortcut)
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_down_conv")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}_down_bn")(shortcut)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)


def build_resnet18(input_shape, weights=None, width: int = 64):
    """ResNet-18: a 7x7 stem, then 4 stages of 2 basic blocks with `width` x (1, 2, 4, 8) filters,
    with ResNet-D down-sampling shortcuts (average pool + 1x1 conv).

    Args:
        input_shape: (height, width, 3).
        weights: None (ImageNet weights do not ship with Keras for ResNet-18).
        width: int. Filters of the first stage (64 in the paper; 32 trains 4x faster on a CPU).
    """
    if width < 1:
        raise ValueError(f"width must be >= 1. Received: width={width}")
    inputs = keras.Input(tuple(input_shape), name="image")
    x = layers.Conv2D(width, 7, 2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage in range(4):
        filters = width * 2**stage
        x = _basic_block(x, filters, 1 if stage == 0 else 2, f"stage{stage + 1}_block1")
        x = _basic_block(x, filters, 1, f"stage{stage + 1}_block2")
    return keras.Model(inputs, x, name="resnet18")
