"""Small convolutional trunks: Koch et al.'s Siamese CNN, the Conv-4 of few-shot papers, a tiny test CNN."""

from __future__ import annotations

import keras
from keras import layers


def build_koch(input_shape, weights=None, width: int = 64):
    """The 4-layer CNN of Koch, Zemel & Salakhutdinov, "Siamese Neural Networks for One-shot Image
    Recognition" (2015): conv 10x10 (w) - pool - conv 7x7 (2w) - pool - conv 4x4 (2w) - pool -
    conv 4x4 (4w), ReLU. `width` w is 64 in the paper."""
    inputs = keras.Input(tuple(input_shape), name="image")
    x = inputs
    for n, (filters, kernel) in enumerate([(width, 10), (2 * width, 7), (2 * width, 4), (4 * width, 4)], start=1):
        x = layers.Conv2D(filters, kernel, padding="same", activation="relu", name=f"block{n}_conv")(x)
        if n < 4:
            x = layers.MaxPooling2D(2, name=f"block{n}_pool")(x)
    return keras.Model(inputs, x, name="koch")


def build_conv4(input_shape, weights=None, width: int = 64):
    """Four blocks of conv 3x3 (`width` filters) - batch norm - ReLU - max pool 2: the embedding
    network of prototypical networks (Snell et al. 2017) and MAML (Finn et al. 2017)."""
    inputs = keras.Input(tuple(input_shape), name="image")
    x = inputs
    for n in range(1, 5):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{n}_conv")(x)
        x = layers.BatchNormalization(name=f"block{n}_bn")(x)
        x = layers.ReLU(name=f"block{n}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{n}_pool")(x)
    return keras.Model(inputs, x, name="conv4")


def build_tiny(input_shape, weights=None, width: int = 8):
    """Two small conv blocks: for tests and smoke runs, not for results."""
    inputs = keras.Input(tuple(input_shape), name="image")
    x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu", name="block1_conv")(inputs)
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu", name="block2_conv")(x)
    return keras.Model(inputs, x, name="tiny")
